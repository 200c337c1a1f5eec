/* addr.h: transport-address helpers (union stun_addr): compare, hash, ports, text, and the
 * copy from a kernel sockaddr. The one home every module uses; pure (no I/O). */
#ifndef TERN_ADDR_H
#define TERN_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "stun.h"

#define ADDR_STRLEN 56 /* "[ffff:...:ffff%scope]:65535" */

/* "192.0.2.1:3478" or "[2001:db8::1]:3478" ("-" for neither family). Returns buf. */
const char *addr_str(const union stun_addr *a, char buf[ADDR_STRLEN]);
/* The IP alone: "192.0.2.1" or "2001:db8::1". Returns buf. */
const char *addr_ip_str(const union stun_addr *a, char buf[ADDR_STRLEN]);
socklen_t addr_len(const union stun_addr *a);
unsigned addr_port(const union stun_addr *a);
void addr_set_port(union stun_addr *a, unsigned port);
/* Copy a kernel sockaddr (as recvmsg gives it) into a stun_addr; false if not IPv4/IPv6. */
bool addr_from_sockaddr(union stun_addr *out, const struct sockaddr *sa, socklen_t len);
/* Same family and IP (the port ignored); false for neither family. */
bool addr_ip_equal(const union stun_addr *a, const union stun_addr *b);
/* Same family, IP and port. */
bool addr_equal(const union stun_addr *a, const union stun_addr *b);
/* 0.0.0.0 or :: */
bool addr_is_wildcard(const union stun_addr *a);
/* An IPv4 or IPv6 literal ("192.0.2.1", "2001:db8::1") and a port into out; false (out
 * zeroed) if ip is neither. */
bool addr_parse(const char *ip, unsigned port, union stun_addr *out);
/* FNV-1a (wire.h) of the IP and port, chained from h. */
uint64_t addr_hash(uint64_t h, const union stun_addr *a);

#endif
