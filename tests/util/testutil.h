/* testutil.h: helpers for tests: inputs placed against a PROT_NONE guard page, hex parsing,
 * RTP packets. */
#ifndef TERN_TESTUTIL_H
#define TERN_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Copy len bytes into a fresh mapping so that the last byte sits right before a PROT_NONE
 * page: any read past the end faults. Free with guard_free. */
uint8_t *guard_place(const void *data, size_t len);
void guard_free(uint8_t *p, size_t len);

/* Parse hex (whitespace ignored) into out; returns the byte count or -1. */
int hex_parse(const char *hex, uint8_t *out, size_t cap);

/* An RTP packet (version 2, no padding, extension or CSRC) of payload type pt into b, followed
 * by payload bytes of 0xab; returns its length (12 + payload). */
size_t rtp_build(uint8_t *b, uint8_t pt, uint16_t seq, uint32_t ts, uint32_t ssrc, size_t payload);

#endif
