/* tern_mem.h: the allocator of the control plane (allocation/, relay/credcache.c): libc's, with
 * a hook so that a test can fail the nth allocation and walk every out-of-memory branch: loop
 * n = 1, 2, ... until the operation completes with no failure, checking that each failure was
 * clean (the pattern of re's testcase_oom). The data path does not allocate, so pays nothing. */
#ifndef TERN_MEM_H
#define TERN_MEM_H

#include <stdbool.h>
#include <stddef.h>

void *tern_malloc(size_t size);
void *tern_calloc(size_t n, size_t size);
void *tern_realloc(void *p, size_t size); /* on failure p is untouched, as with realloc */
void tern_free(void *p);

/* Tests: count allocations from now on and fail the nth (1: the next one) only; 0 disarms. */
void tern_mem_fail_nth(unsigned long nth);
/* Whether the armed failure has happened since the last tern_mem_fail_nth. */
bool tern_mem_failed(void);

#endif
