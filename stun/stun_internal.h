/* stun_internal.h: byte-order helpers and the attribute table shared by the codec files. */
#ifndef TERN_STUN_INTERNAL_H
#define TERN_STUN_INTERNAL_H

#include <stdint.h>
#include <stddef.h>

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

/* What the codec knows about an attribute type: its name and the value lengths allowed. */
struct stun_attr_spec {
    const char *name;
    uint16_t min, max; /* inclusive bounds on the value length */
    uint8_t align;     /* value length must be a multiple of this (1, 2, 4) */
    uint8_t addr;      /* 1: an address attribute (value 8 or 20 bytes) */
};
/* NULL for a type the codec does not know. */
const struct stun_attr_spec *stun_attr_spec(uint16_t type);

#endif
