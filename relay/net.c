/* net.c: socket address helpers. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "net.h"

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
