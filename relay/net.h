/* net.h: socket address helpers shared by the relay's I/O code. */
#ifndef TERN_NET_H
#define TERN_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "stun.h"

#define ADDR_STRLEN 56 /* "[ffff:...:ffff%scope]:65535" */

/* "192.0.2.1:3478" or "[2001:db8::1]:3478". Returns buf. */
const char *addr_str(const union stun_addr *a, char buf[ADDR_STRLEN]);
socklen_t addr_len(const union stun_addr *a);
unsigned addr_port(const union stun_addr *a);
void addr_set_port(union stun_addr *a, unsigned port);
/* Copy a kernel sockaddr (as recvmsg gives it) into a stun_addr; false if not IPv4/IPv6. */
bool addr_from_sockaddr(union stun_addr *out, const struct sockaddr *sa, socklen_t len);

#endif
