/* test_credcache_oom.c: out of memory while ternd reads the credential database into its
 * snapshot (relay/credcache.c, tern_mem.h): credcache_open runs with its nth allocation failing
 * for n = 1, 2, ... until a run sees no failure. Every failure must refuse the snapshot (NULL,
 * never a partial copy) and leak nothing (ASan); the run that succeeds finds every user. Then a
 * reload that runs out of memory keeps serving the last good copy, and the next one succeeds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "credcache.h"
#include "store.h"
#include "tern_mem.h"

#define NUSERS 100 /* more than one growth of the user array (64 at first) */

static void snapshot_under_oom(void **state)
{
    (void)state;
    char dir[] = "/tmp/tern-credcache-oom.XXXXXX", path[80], err[STORE_ERR_LEN];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tern.db", dir);
    struct store *st = store_open(path, STORE_CREATE, err);
    assert_non_null(st);
    char name[32];
    for (int i = 0; i < NUSERS; i++) {
        snprintf(name, sizeof name, "user%03d", i);
        assert_int_equal(store_user_add(st, "cc.test", name, "pw", 0, 0, err), STORE_OK);
    }
    for (int i = 0; i < 10; i++) { /* more than one growth of the secret array (8 at first) */
        char secret[32];
        int64_t id;
        snprintf(secret, sizeof secret, "secret-%d", i);
        assert_int_equal(store_secret_add(st, secret, &id, err), STORE_OK);
    }
    store_close(st);

    struct tern_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.realm = "cc.test";
    cfg.database = path;
    struct auth_users statics = {0};
    struct credcache *c = NULL;
    unsigned long n, refused = 0;
    for (n = 1;; n++) {
        tern_mem_fail_nth(n);
        c = credcache_open(&cfg, &statics);
        bool failed = tern_mem_failed();
        tern_mem_fail_nth(0);
        if (!failed) break;
        assert_null(c); /* a refused snapshot, never a partial one */
        refused++;
    }
    assert_non_null(c);
    assert_true(refused >= 5); /* cache, snapshot, users twice, secrets twice, two indexes */
    struct auth_creds cr = credcache_creds(c);
    struct auth_user u;
    for (int i = 0; i < NUSERS; i++) {
        snprintf(name, sizeof name, "user%03d", i);
        assert_int_equal(cr.lookup(cr.ctx, (const uint8_t *)name, strlen(name), false, &u), 0);
    }

    /* A commit, and the refresher's reload fails: the old snapshot stays. The refresher polls
     * every second; the waits below allow 30 (a loaded machine), they end as soon as it ran. */
    tern_mem_fail_nth(1);
    st = store_open(path, STORE_EXISTING, err);
    assert_non_null(st);
    assert_int_equal(store_user_add(st, "cc.test", "newcomer", "pw", 0, 0, err), STORE_OK);
    store_close(st);
    for (int i = 0; i < 300 && !tern_mem_failed(); i++)
        usleep(100 * 1000);
    assert_true(tern_mem_failed());
    tern_mem_fail_nth(0);
    assert_int_equal(cr.lookup(cr.ctx, (const uint8_t *)"user007", 7, false, &u), 0);
    int rc = -1;
    for (int i = 0; i < 300 && rc != 0; i++) {
        rc = cr.lookup(cr.ctx, (const uint8_t *)"newcomer", 8, false, &u);
        if (rc) usleep(100 * 1000);
    }
    assert_int_equal(rc, 0); /* the next reload took it in */
    assert_int_equal(cr.lookup(cr.ctx, (const uint8_t *)"user007", 7, false, &u), 0);
    credcache_close(c);
    unlink(path);
    char side[96];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(snapshot_under_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
