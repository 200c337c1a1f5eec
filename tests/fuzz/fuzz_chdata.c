/* fuzz_chdata.c: libFuzzer target: stun_chdata_decode in datagram and stream modes,
 * stun_frame_length, re-encoding, and consuming the input as a stream of frames. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FRAMES 256

static uint8_t encoded[STUN_CHDATA_HEADER_LEN + 65536];

static void require(bool ok)
{
    if (!ok) abort();
}

static size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

static uint8_t touch(const uint8_t *p, size_t n)
{
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++)
        x ^= p[i];
    return x;
}

/* Decode buf as one ChannelData message and check what the decoder claims. */
static void check_one(const uint8_t *buf, size_t len, bool stream)
{
    uint16_t ch = 0, dlen = 0;
    const uint8_t *d = NULL;
    int rc = stun_chdata_decode(buf, len, stream, &ch, &d, &dlen);
    if (rc <= 0) {
        require(rc == STUN_E_TRUNCATED || rc == STUN_E_NOT_CHANNELDATA || rc == STUN_E_BAD_LENGTH);
        require(rc != STUN_E_TRUNCATED || len < STUN_CHDATA_HEADER_LEN || (buf[0] & 0xC0) == 0x40);
        return;
    }
    size_t frame = (size_t)rc;
    require(ch >= STUN_CHANNEL_MIN && ch <= STUN_CHANNEL_MAX);
    require(d == buf + STUN_CHDATA_HEADER_LEN);
    require(STUN_CHDATA_HEADER_LEN + (size_t)dlen <= frame && frame <= len);
    if (stream)
        require(frame == STUN_CHDATA_HEADER_LEN + pad4(dlen));
    else
        require(frame == len && len - STUN_CHDATA_HEADER_LEN - dlen <= 3);
    (void)touch(d, dlen);
    require(stun_frame_length(buf, len) == (int)(STUN_CHDATA_HEADER_LEN + pad4(dlen)));

    /* Re-encode: same header and data; stream padding is zeros. */
    int n = stun_chdata_encode(encoded, sizeof(encoded), ch, d, dlen, stream);
    require(n == (int)(STUN_CHDATA_HEADER_LEN + (stream ? pad4(dlen) : dlen)));
    require(memcmp(encoded, buf, STUN_CHDATA_HEADER_LEN + (size_t)dlen) == 0);
    for (size_t i = STUN_CHDATA_HEADER_LEN + dlen; i < (size_t)n; i++)
        require(encoded[i] == 0);
    /* Too small by one byte: refused. */
    require(stun_chdata_encode(encoded, (size_t)n - 1, ch, d, dlen, stream) == STUN_E_NO_SPACE);
}

/* A copy of exactly len bytes, so that a read past the frame is caught. */
static uint8_t *dup_exact(const uint8_t *p, size_t len)
{
    uint8_t *c = malloc(len);
    if (c && len) memcpy(c, p, len);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size);
    if (!buf) return 0;
    memcpy(buf, data, size);

    check_one(buf, size, false);
    check_one(buf, size, true);

    int fl = stun_frame_length(buf, size);
    if (size < 4)
        require(fl == 0);
    else if ((buf[0] & 0xC0) == 0x40)
        require(fl >= STUN_CHDATA_HEADER_LEN && fl % 4 == 0);
    else if ((buf[0] & 0xC0) == 0x00)
        require(fl == STUN_E_NOT_STUN || (fl >= STUN_HEADER_LEN && fl % 4 == 0));
    else
        require(fl == STUN_E_NOT_STUN);

    /* The input as a TCP byte stream: frame after frame until one is incomplete or bad. */
    size_t off = 0;
    for (int frames = 0; frames < MAX_FRAMES; frames++) {
        size_t left = size - off;
        int n = stun_frame_length(buf + off, left);
        if (n <= 0 || (size_t)n > left) break;
        uint8_t *f = dup_exact(buf + off, (size_t)n);
        if (!f) break;
        if ((f[0] & 0xC0) == 0x40) {
            uint16_t ch, dlen;
            const uint8_t *d;
            require(stun_chdata_decode(f, (size_t)n, true, &ch, &d, &dlen) == n);
            require(stun_chdata_decode(buf + off, left, true, &ch, &d, &dlen) == n);
            /* The same bytes as a datagram: at most 3 bytes of padding, so accepted. */
            require(stun_chdata_decode(f, (size_t)n, false, &ch, &d, &dlen) == n);
        } else {
            /* A STUN frame: the header's length matches, so only the cookie or the
             * attributes can be wrong. */
            struct stun_msg m;
            int rc = stun_decode(&m, f, (size_t)n);
            require(rc != STUN_E_TRUNCATED && rc != STUN_E_BAD_LENGTH && rc != STUN_E_NOT_STUN);
        }
        free(f);
        off += (size_t)n;
    }
    free(buf);
    return 0;
}
