/* tern_mem.c: libc's allocator behind the failure hook of tern_mem.h. Atomics because the
 * credential refresher allocates on its own thread; disarmed, the cost is one relaxed load. */
#include "tern_mem.h"

#include <stdatomic.h>
#include <stdlib.h>

static _Atomic unsigned long fail_at; /* 0: disarmed */
static _Atomic unsigned long seen;
static atomic_bool failed;

void tern_mem_fail_nth(unsigned long nth)
{
    atomic_store(&fail_at, 0);
    atomic_store(&seen, 0);
    atomic_store(&failed, false);
    atomic_store(&fail_at, nth);
}

bool tern_mem_failed(void)
{
    return atomic_load(&failed);
}

static bool fail_this(void)
{
    unsigned long at = atomic_load_explicit(&fail_at, memory_order_relaxed);
    if (!at || atomic_fetch_add(&seen, 1) + 1 != at) return false;
    atomic_store(&failed, true);
    return true;
}

void *tern_malloc(size_t size)
{
    return fail_this() ? NULL : malloc(size);
}

void *tern_calloc(size_t n, size_t size)
{
    return fail_this() ? NULL : calloc(n, size);
}

void *tern_realloc(void *p, size_t size)
{
    return fail_this() ? NULL : realloc(p, size);
}

void tern_free(void *p)
{
    free(p);
}
