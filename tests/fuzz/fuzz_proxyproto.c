/* fuzz_proxyproto.c: libFuzzer target: proxy_decode (relay/proxyproto.c), the PROXY protocol
 * v1/v2 header decoder, on the input whole and split at every length up to it: the decoder is
 * stateless, so a header arriving in pieces must give the same answer once it is complete. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok)
{
    if (!ok) abort();
}

static void check(const struct proxy_result *r, size_t len)
{
    switch (r->status) {
    case PROXY_DONE:
        require(r->consumed > 0 && r->consumed <= len);
        require(r->version == 1 || r->version == 2);
        require(r->version != 1 || r->consumed <= PROXY_V1_MAX);
        require(r->version != 2 || r->consumed >= PROXY_V2_FIXED);
        if (!r->local) {
            require(r->src.sa.sa_family == AF_INET || r->src.sa.sa_family == AF_INET6);
            require(r->dst.sa.sa_family == r->src.sa.sa_family);
        }
        break;
    case PROXY_NEED_MORE:
        require(r->need == 0 || (r->need > len && r->need <= PROXY_V2_MAXLEN));
        require(r->version != 1 || len < PROXY_V1_MAX);
        break;
    case PROXY_INVALID:
        require(r->reason > PROXY_R_NONE && r->reason < PROXY_R_COUNT);
        require(proxy_reason_name(r->reason)[0] != '?');
        break;
    default:
        require(false);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    struct proxy_result whole;
    proxy_decode(buf, size, &whole);
    check(&whole, size);
    /* Every prefix, in its own exact-size copy (a read past it is caught). */
    size_t upto = size < 300 ? size : 300;
    for (size_t k = 0; k < upto; k++) {
        uint8_t *p = malloc(k ? k : 1);
        if (!p) break;
        memcpy(p, buf, k);
        struct proxy_result r;
        proxy_decode(p, k, &r);
        free(p);
        check(&r, k);
        if (whole.status == PROXY_DONE) {
            /* Before the header is complete: more is needed; after: the same header. */
            if (k < whole.consumed)
                require(r.status == PROXY_NEED_MORE);
            else
                require(r.status == PROXY_DONE && r.consumed == whole.consumed &&
                        r.local == whole.local && memcmp(&r.src, &whole.src, sizeof(r.src)) == 0);
        }
        /* Once refused, more bytes never make it valid. */
        if (r.status == PROXY_INVALID) require(whole.status == PROXY_INVALID);
    }
    free(buf);
    return 0;
}
