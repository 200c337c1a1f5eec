/* wire.h: wire integers (big-endian, read and written byte by byte) and FNV-1a hashing:
 * the one home every module uses for both. */
#ifndef TERN_WIRE_H
#define TERN_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* Wire integers are read and written byte by byte: never through a cast pointer, so
 * alignment and aliasing never matter. */
static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

/* FNV-1a, 64 bits: start from FNV64_INIT (or a previous result to chain fields). Unkeyed:
 * every table hashed with it is per worker or per allocation and keyed by what a client
 * controls only for itself, so colliding chains cost the attacker its own traffic. */
#define FNV64_INIT 0xcbf29ce484222325ull
static inline uint64_t fnv1a64(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

#endif
