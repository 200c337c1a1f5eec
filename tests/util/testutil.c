/* testutil.c: guard-page placement of test inputs, hex parsing, RTP packets. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testutil.h"

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t data_pages(size_t len)
{
    size_t ps = page_size();
    return (len + ps - 1) / ps + (len == 0);
}

uint8_t *guard_place(const void *data, size_t len)
{
    size_t ps = page_size(), n = data_pages(len);
    uint8_t *map =
        mmap(NULL, (n + 1) * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) abort();
    if (mprotect(map + n * ps, ps, PROT_NONE)) abort();
    uint8_t *p = map + n * ps - len;
    if (len) memcpy(p, data, len);
    return p;
}

void guard_free(uint8_t *p, size_t len)
{
    size_t ps = page_size(), n = data_pages(len);
    uint8_t *map = p + len - n * ps;
    munmap(map, (n + 1) * ps);
}

int hex_parse(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (; *hex; hex++) {
        if (isspace((unsigned char)*hex)) continue;
        if (!isxdigit((unsigned char)*hex)) return -1;
        int v =
            isdigit((unsigned char)*hex) ? *hex - '0' : (tolower((unsigned char)*hex) - 'a' + 10);
        if (hi < 0) {
            hi = v;
        } else {
            if (n == cap) return -1;
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    return hi < 0 ? (int)n : -1;
}

size_t rtp_build(uint8_t *b, uint8_t pt, uint16_t seq, uint32_t ts, uint32_t ssrc, size_t payload)
{
    b[0] = 0x80;
    b[1] = pt;
    b[2] = (uint8_t)(seq >> 8);
    b[3] = (uint8_t)seq;
    for (int i = 0; i < 4; i++) {
        b[4 + i] = (uint8_t)(ts >> (24 - 8 * i));
        b[8 + i] = (uint8_t)(ssrc >> (24 - 8 * i));
    }
    memset(b + 12, 0xab, payload);
    return 12 + payload;
}
