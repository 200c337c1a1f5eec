#!/usr/bin/env python3
"""tos_peer.py: a UDP echo peer that reports the IP TOS / IPv6 traffic class of every datagram
it receives (IP_RECVTOS / IPV6_RECVTCLASS) and echoes each back with a TOS of its own, so a test
can see what a relay carries in both directions (RFC 8656 14).

Usage: tos_peer.py ADDRESS PORT ECHO_TOS LOG   (ECHO_TOS like 0x8b; -1: do not echo)
Writes one line per datagram to LOG: "rx tos=0xNN len=N"; prints "ready" when bound."""
import socket
import sys

addr, port, echo_tos, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0), sys.argv[4]
v6 = ":" in addr
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
if v6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
    if echo_tos >= 0:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, echo_tos)
else:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    if echo_tos >= 0:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, echo_tos)
s.bind((addr, port))
print("ready", flush=True)
with open(log, "a", buffering=1) as out:
    while True:
        data, anc, _flags, src = s.recvmsg(65535, 256)
        tos = -1
        for level, kind, val in anc:
            if (level, kind) == (socket.IPPROTO_IP, socket.IP_TOS):
                tos = val[0]
            elif (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_TCLASS):
                tos = int.from_bytes(val[:4], sys.byteorder)
        out.write("rx tos=0x%02x len=%d\n" % (tos & 0xFF, len(data)))
        if echo_tos >= 0:
            s.sendto(data, src)
