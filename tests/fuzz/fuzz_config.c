/* fuzz_config.c: libFuzzer target: cfg_parse on the input as YAML text, then cfg_free. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok)
{
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    if (!devnull) {
        devnull = fopen("/dev/null", "w");
        if (!devnull) abort();
    }
    /* Exactly size bytes, not NUL-terminated: cfg_parse takes a length. */
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data, size);
    struct tern_config cfg;
    int rc = cfg_parse(&cfg, "fuzz.yaml", text, size, devnull);
    require(rc == 0 || rc == -1);
    if (rc == 0) {
        require(cfg.realm != NULL && cfg.software != NULL);
        require(cfg.nlisten == 0 || cfg.listen != NULL);
        require(cfg.nusers == 0 || cfg.users != NULL);
        require(cfg.nsecrets == 0 || cfg.secrets != NULL);
        for (size_t i = 0; i < cfg.nusers; i++)
            require(cfg.users[i].name != NULL && cfg.users[i].password != NULL);
        for (size_t i = 0; i < cfg.nsecrets; i++)
            require(cfg.secrets[i] != NULL);
        for (size_t i = 0; i < cfg.nlisten; i++)
            require(cfg.listen[i].addr.sa.sa_family == AF_INET ||
                    cfg.listen[i].addr.sa.sa_family == AF_INET6);
        require(cfg.port_min <= cfg.port_max);
        require(strlen(cfg.software) <= STUN_MAX_TEXT_BYTES &&
                strlen(cfg.realm) <= STUN_MAX_TEXT_BYTES);
    } else {
        /* Failure leaves the struct empty. */
        require(cfg.realm == NULL && cfg.listen == NULL && cfg.users == NULL);
    }
    cfg_free(&cfg);
    free(text);
    return 0;
}
