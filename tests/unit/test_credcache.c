/* test_credcache.c: credentials from the database as ternd's workers see them (the snapshot
 * and its hash indexes): with thousands of users every name and every USERHASH is found, with
 * its own keys and limits; unknown names, a disabled user, and a wrong-length USERHASH are not;
 * static users are found besides the database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "credcache.h"
#include "store.h"

#define NUSERS 3000

static void many_users(void **state)
{
    (void)state;
    char dir[] = "/tmp/tern-credcache.XXXXXX", path[64], err[STORE_ERR_LEN];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tern.db", dir);
    struct store *st = store_open(path, STORE_CREATE, err);
    assert_non_null(st);
    char name[32];
    for (int i = 0; i < NUSERS; i++) {
        snprintf(name, sizeof name, "user%05d", i);
        assert_int_equal(
            store_user_add(st, "cc.test", name, "pw", (uint32_t)(i % 7), (uint64_t)i, err),
            STORE_OK);
    }
    assert_int_equal(store_user_add(st, "other.realm", "user00001x", "pw", 0, 0, err), STORE_OK);
    assert_int_equal(store_user_set_disabled(st, "cc.test", "user00042", true, err), STORE_OK);
    store_close(st);

    struct tern_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.realm = "cc.test";
    cfg.database = path;
    struct auth_users statics = {0};
    struct credcache *c = credcache_open(&cfg, &statics);
    assert_non_null(c);
    struct auth_creds cr = credcache_creds(c);
    struct auth_user u;
    for (int i = 0; i < NUSERS; i++) {
        snprintf(name, sizeof name, "user%05d", i);
        int rc = cr.lookup(cr.ctx, (const uint8_t *)name, strlen(name), false, &u);
        if (i == 42) {
            assert_int_equal(rc, -1); /* disabled: unknown to authentication */
            continue;
        }
        assert_int_equal(rc, 0);
        assert_string_equal(u.name, name);
        assert_int_equal(u.max_allocations, (uint32_t)(i % 7));
        assert_int_equal(u.bandwidth_bps, (uint64_t)i);
        uint8_t hash[STUN_USERHASH_LEN];
        assert_int_equal(auth_userhash(name, strlen(name), "cc.test", 7, hash), 0);
        struct auth_user v;
        assert_int_equal(cr.lookup(cr.ctx, hash, sizeof hash, true, &v), 0);
        assert_string_equal(v.name, name);
        assert_memory_equal(v.key_sha256, u.key_sha256, sizeof u.key_sha256);
        assert_int_equal(cr.lookup(cr.ctx, hash, sizeof hash - 1, true, &v), -1);
    }
    static const char *const unknown[] = {"",          "user",      "user0300", "user030000",
                                          "USER00001", "user00001x" /* another realm's */};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        assert_int_equal(
            cr.lookup(cr.ctx, (const uint8_t *)unknown[i], strlen(unknown[i]), false, &u), -1);
    credcache_close(c);
    unlink(path);
    char side[80];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(many_users),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
