/* stun_internal.h: the attribute table shared by the codec files (wire integers: wire.h). */
#ifndef TERN_STUN_INTERNAL_H
#define TERN_STUN_INTERNAL_H

#include <stdint.h>
#include <stddef.h>

#include "wire.h"

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
