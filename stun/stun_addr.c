/* stun_addr.c: transport-address helpers (addr.h). */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "wire.h"

const char *addr_ip_str(const union stun_addr *a, char buf[ADDR_STRLEN])
{
    if (a->sa.sa_family == AF_INET)
        inet_ntop(AF_INET, &a->v4.sin_addr, buf, ADDR_STRLEN);
    else if (a->sa.sa_family == AF_INET6)
        inet_ntop(AF_INET6, &a->v6.sin6_addr, buf, ADDR_STRLEN);
    else
        snprintf(buf, ADDR_STRLEN, "-");
    return buf;
}

const char *addr_str(const union stun_addr *a, char buf[ADDR_STRLEN])
{
    char ip[INET6_ADDRSTRLEN];
    if (a->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->v4.sin_addr, ip, sizeof(ip));
        snprintf(buf, ADDR_STRLEN, "%s:%u", ip, ntohs(a->v4.sin_port));
    } else if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->v6.sin6_addr, ip, sizeof(ip));
        snprintf(buf, ADDR_STRLEN, "[%s]:%u", ip, ntohs(a->v6.sin6_port));
    } else {
        snprintf(buf, ADDR_STRLEN, "-");
    }
    return buf;
}

socklen_t addr_len(const union stun_addr *a)
{
    return a->sa.sa_family == AF_INET6 ? sizeof(a->v6) : sizeof(a->v4);
}

unsigned addr_port(const union stun_addr *a)
{
    return ntohs(a->sa.sa_family == AF_INET6 ? a->v6.sin6_port : a->v4.sin_port);
}

void addr_set_port(union stun_addr *a, unsigned port)
{
    if (a->sa.sa_family == AF_INET6)
        a->v6.sin6_port = htons((uint16_t)port);
    else
        a->v4.sin_port = htons((uint16_t)port);
}

bool addr_from_sockaddr(union stun_addr *out, const struct sockaddr *sa, socklen_t len)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        memcpy(&out->v4, sa, sizeof(out->v4));
        return true;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        memcpy(&out->v6, sa, sizeof(out->v6));
        return true;
    }
    return false;
}

bool addr_parse(const char *ip, unsigned port, union stun_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, ip, &out->v4.sin_addr) == 1)
        out->v4.sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &out->v6.sin6_addr) == 1)
        out->v6.sin6_family = AF_INET6;
    else
        return false;
    addr_set_port(out, port);
    return true;
}

bool addr_ip_equal(const union stun_addr *a, const union stun_addr *b)
{
    if (a->sa.sa_family != b->sa.sa_family) return false;
    if (a->sa.sa_family == AF_INET) return a->v4.sin_addr.s_addr == b->v4.sin_addr.s_addr;
    if (a->sa.sa_family == AF_INET6)
        return memcmp(&a->v6.sin6_addr, &b->v6.sin6_addr, sizeof(a->v6.sin6_addr)) == 0;
    return false;
}

bool addr_equal(const union stun_addr *a, const union stun_addr *b)
{
    if (!addr_ip_equal(a, b)) return false;
    return a->sa.sa_family == AF_INET ? a->v4.sin_port == b->v4.sin_port
                                      : a->v6.sin6_port == b->v6.sin6_port;
}

bool addr_is_wildcard(const union stun_addr *a)
{
    static const uint8_t zero[16];
    if (a->sa.sa_family == AF_INET) return a->v4.sin_addr.s_addr == 0;
    return a->sa.sa_family == AF_INET6 && memcmp(&a->v6.sin6_addr, zero, 16) == 0;
}

uint64_t addr_hash(uint64_t h, const union stun_addr *a)
{
    if (a->sa.sa_family == AF_INET) {
        h = fnv1a64(h, &a->v4.sin_addr, 4);
        return fnv1a64(h, &a->v4.sin_port, 2);
    }
    h = fnv1a64(h, &a->v6.sin6_addr, 16);
    return fnv1a64(h, &a->v6.sin6_port, 2);
}
