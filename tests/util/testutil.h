/* testutil.h: helpers for tests: inputs placed against a PROT_NONE guard page, hex parsing. */
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

#endif
