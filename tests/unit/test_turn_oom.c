/* test_turn_oom.c: out of memory in the server core (tern_mem.h): srv_init, Allocate,
 * CreatePermission and ChannelBind run with their nth allocation failing, for n = 1, 2, ...
 * until a run sees no failure. Every failure must be clean: the right answer (508, or success
 * when only an optional copy failed), nothing half-made, the fake's books balanced, no leak
 * (ASan). One test alone: pass its name (a glob) as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>

#include "tern_mem.h"
#include "turn_fixture.h"

/* Arm the nth allocation to fail; disarm and say whether it did. */
static void oom_arm(unsigned long n)
{
    tern_mem_fail_nth(n);
}

static bool oom_disarm(void)
{
    bool failed = tern_mem_failed();
    tern_mem_fail_nth(0);
    return failed;
}

static void test_oom_srv_init(void **state)
{
    struct fixture *fx = *state;
    unsigned long n;
    for (n = 1;; n++) {
        oom_arm(n);
        int rc = fx_try_start(fx);
        if (!oom_disarm()) {
            assert_int_equal(rc, 0);
            break;
        }
        assert_int_equal(rc, -1); /* and nothing leaked (ASan) */
        assert_false(fx->started);
    }
    assert_true(n > 1); /* srv_init allocates: some failure was seen */
    fx_finish(fx);
}

static void test_oom_allocate(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    unsigned refused = 0;
    for (unsigned long n = 1;; n++) {
        struct req q;
        struct reply r;
        req_allocate(&c, &q);
        oom_arm(n);
        send_signed(&c, &q, &r);
        bool failed = oom_disarm();
        check_books(fx);
        if (!failed) {
            EXPECT_OK(&r);
            assert_non_null(cl_alloc(&c));
            break;
        }
        if (r.code == 0) {
            /* Only what the answer can do without failed (the copy kept for late
             * retransmissions): a whole allocation. Delete it and go on. */
            assert_non_null(cl_alloc(&c));
            cl_refresh(&c, 0, &r);
            EXPECT_OK(&r);
        } else {
            EXPECT_ERR(&r, 508, true);
            assert_int_equal(D(&r, allocations_created), 0);
            refused++;
        }
        assert_null(cl_alloc(&c));
        check_books(fx);
    }
    assert_true(refused >= 1);
    fx_finish(fx);
}

static void test_oom_create_permission(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    union stun_addr peer = mkaddr("8.8.8.8", 9);
    unsigned refused = 0;
    for (unsigned long n = 1;; n++) {
        struct reply r;
        oom_arm(n);
        cl_permit(&c, &peer, 1, &r);
        bool failed = oom_disarm();
        check_books(fx);
        if (!failed) {
            EXPECT_OK(&r);
            break;
        }
        EXPECT_ERR(&r, 508, true);
        assert_false(alloc_permitted(a, &peer, fx->io.now_ms));
        refused++;
    }
    assert_true(refused >= 1);
    assert_true(alloc_permitted(a, &peer, fx->io.now_ms));
    fx_finish(fx);
}

/* A ChannelBind success promises the channel and the permission (RFC 8656 11.2). */
static void test_oom_channel_bind(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    union stun_addr peer = mkaddr("8.8.8.8", 4000);
    unsigned refused = 0;
    for (unsigned long n = 1;; n++) {
        struct reply r;
        oom_arm(n);
        cl_bind(&c, 0x4000, &peer, &r);
        bool failed = oom_disarm();
        check_books(fx);
        if (!failed) {
            EXPECT_OK(&r);
            break;
        }
        if (r.code == 0) {
            assert_true(alloc_permitted(a, &peer, fx->io.now_ms));
            assert_non_null(alloc_channel(a, 0x4000, fx->io.now_ms));
        } else {
            EXPECT_ERR(&r, 508, true);
            refused++;
        }
    }
    assert_true(refused >= 1);
    assert_true(alloc_permitted(a, &peer, fx->io.now_ms));
    assert_non_null(alloc_channel(a, 0x4000, fx->io.now_ms));
    fx_finish(fx);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_oom_srv_init),
        T(test_oom_allocate),
        T(test_oom_create_permission),
        T(test_oom_channel_bind),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
