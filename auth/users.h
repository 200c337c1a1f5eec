/* users.h: credential lookup for the request handler, and the static user table behind it. */
#ifndef TERN_USERS_H
#define TERN_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stun.h"

/* What the handler needs to know about one user: the long-term keys, never the password. */
struct auth_user {
    char name[STUN_MAX_USERNAME + 1]; /* NUL-terminated copy */
    size_t namelen;
    uint8_t key_md5[16];
    uint8_t key_sha256[32];
    uint8_t userhash[STUN_USERHASH_LEN];
    uint32_t max_allocations; /* 0: the configured allocation.max_per_user */
    uint64_t bandwidth_bps;   /* 0: unlimited */
};

/* The lookup interface: by USERNAME, or by USERHASH (name is then the 32-byte hash). Fills
 * *out and returns 0, or -1 for an unknown (or disabled) user. each_secret calls fn with every
 * REST secret held beside the configured ones (NULL: none) until fn returns non-zero, and
 * returns that value. Both must be safe to call from any worker. */
struct auth_creds {
    int (*lookup)(void *ctx, const uint8_t *name, size_t len, bool userhash, struct auth_user *out);
    int (*each_secret)(void *ctx, int (*fn)(void *arg, const char *secret), void *arg);
    /* A number that changes whenever the credentials change (NULL: they never do). */
    uint64_t (*generation)(void *ctx);
    void *ctx;
};

/* A fixed table of users (auth.users in the config), keys derived once at start. */
struct auth_users {
    struct auth_user *v;
    size_t n;
};

/* Derive every user's keys for realm. Returns 0, or the 1-based index of the first user whose
 * name or password SASLprep refuses (nothing is kept then). Passwords are not stored. */
int auth_users_init(struct auth_users *u, const char *realm, const char *const *names,
                    const char *const *passwords, size_t n);
void auth_users_free(struct auth_users *u);
/* An auth_creds reading this table. */
struct auth_creds auth_users_creds(const struct auth_users *u);

#endif
