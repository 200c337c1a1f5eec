/* test_alloc.c: the allocation's permission and channel lookups. Past ALLOC_SCAN_MAX entries
 * they go through hash indexes; every answer must equal a plain scan in index order (the
 * semantics the TURN replay suite pins down), whatever sequence of permits, binds, expiries
 * and family removals came before. */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* One of a small set of peers, so keys repeat: v4 and v6, a few ports. */
static union stun_addr peer(uint32_t r)
{
    union stun_addr a;
    memset(&a, 0, sizeof a);
    if (r & 1) {
        a.v4.sin_family = AF_INET;
        a.v4.sin_addr.s_addr = htonl(0xC6336400u + ((r >> 1) % 200)); /* 198.51.100.x */
        a.v4.sin_port = htons((uint16_t)(40000 + (r >> 9) % 3));
    } else {
        a.v6.sin6_family = AF_INET6;
        a.v6.sin6_addr.s6_addr[0] = 0x20;
        a.v6.sin6_addr.s6_addr[1] = 0x01;
        a.v6.sin6_addr.s6_addr[15] = (uint8_t)((r >> 1) % 200);
        a.v6.sin6_port = htons((uint16_t)(40000 + (r >> 9) % 3));
    }
    return a;
}

static bool scan_permitted(const struct allocation *a, const union stun_addr *p, uint64_t now)
{
    for (unsigned i = 0; i < a->nperms; i++)
        if (a->perms[i].expires_ms > now && addr_ip_equal(&a->perms[i].ip, p)) return true;
    return false;
}

static const struct alloc_chan *scan_channel(const struct allocation *a, uint16_t num, uint64_t now)
{
    for (unsigned i = 0; i < a->nchans; i++)
        if (a->chans[i].num == num) return a->chans[i].expires_ms > now ? &a->chans[i] : NULL;
    return NULL;
}

static const struct alloc_chan *scan_channel_of(const struct allocation *a,
                                                const union stun_addr *p, uint64_t now)
{
    for (unsigned i = 0; i < a->nchans; i++)
        if (a->chans[i].expires_ms > now && addr_equal(&a->chans[i].peer, p)) return &a->chans[i];
    return NULL;
}

static void lookups_equal_scans(void **state)
{
    (void)state;
    struct srv_tuple t;
    memset(&t, 0, sizeof t);
    t.client.v4.sin_family = AF_INET;
    struct alloc_table tab;
    assert_int_equal(alloc_table_init(&tab, 0), 0);
    size_t indexed = 0, checks = 0;
    for (int round = 0; round < 20; round++) {
        struct allocation *a = alloc_new(&tab, &t, 0);
        assert_non_null(a);
        uint64_t now = 1000;
        for (int op = 0; op < 3000; op++) {
            uint32_t r = rnd();
            union stun_addr p = peer(rnd());
            switch (r % 10) {
            case 0:
            case 1:
            case 2:
            case 3:
                alloc_permit(a, &p, now);
                break;
            case 4:
            case 5:
            case 6: {
                union stun_addr ip = p;
                alloc_bind(a, (uint16_t)(0x4000 + rnd() % 300), &p, now);
                alloc_permit(a, &ip, now);
                break;
            }
            case 7:
                now += rnd() % 200000;
                break; /* up to 200 s: some expire, some hold */
            case 8:
                if (rnd() % 50 == 0) alloc_forget_family(a, (rnd() & 1) ? AF_INET : AF_INET6);
                break;
            default:
                break;
            }
            indexed += a->index != NULL;
            for (int k = 0; k < 8; k++) {
                union stun_addr q = peer(rnd());
                uint16_t num = (uint16_t)(0x4000 + rnd() % 300);
                assert_int_equal(alloc_permitted(a, &q, now), scan_permitted(a, &q, now));
                assert_ptr_equal(alloc_channel(a, num, now), scan_channel(a, num, now));
                assert_ptr_equal(alloc_channel_of(a, &q, now), scan_channel_of(a, &q, now));
                checks++;
            }
        }
        assert_true(a->nperms <= ALLOC_MAX_PERMISSIONS && a->nchans <= ALLOC_MAX_CHANNELS);
        alloc_destroy(a);
    }
    alloc_table_free(&tab);
    /* Most of the time the lists were long enough to be indexed. */
    assert_true(indexed > 20 * 3000 / 2);
    print_message("%zu lookups checked, %zu ops ran indexed\n", checks * 3, indexed);
}

/* Few entries: no index is made (memory stays small), and lookups scan. */
static void short_lists_have_no_index(void **state)
{
    (void)state;
    struct srv_tuple t;
    memset(&t, 0, sizeof t);
    struct alloc_table tab;
    assert_int_equal(alloc_table_init(&tab, 0), 0);
    struct allocation *a = alloc_new(&tab, &t, 0);
    for (uint32_t i = 0; i < ALLOC_SCAN_MAX; i++) {
        union stun_addr p = peer(2 * i + 1);
        assert_int_equal(alloc_permit(a, &p, 0), 0);
        assert_int_equal(alloc_bind(a, (uint16_t)(0x4000 + i), &p, 0), ALLOC_BIND_OK);
    }
    assert_null(a->index);
    union stun_addr p = peer(2 * ALLOC_SCAN_MAX + 1);
    assert_int_equal(alloc_permit(a, &p, 0), 0);
    assert_non_null(a->index);
    assert_true(alloc_permitted(a, &p, 1));
    alloc_forget_family(a, AF_INET);
    assert_null(a->index);
    assert_false(alloc_permitted(a, &p, 1));
    alloc_destroy(a);
    alloc_table_free(&tab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lookups_equal_scans),
        cmocka_unit_test(short_lists_have_no_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
