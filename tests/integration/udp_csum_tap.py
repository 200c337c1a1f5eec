#!/usr/bin/python3
"""udp_csum_tap.py IFNAME STOPFILE: count the UDP checksums of what arrives on IFNAME.

An AF_PACKET socket sees every frame the interface receives (outgoing ones are skipped), as the
wire carried it, before the stack decides whether to verify it. Every IPv4 or IPv6 UDP datagram
sent by the relay (a source address of 10.210.x.1 or fd00:210:x::1, tests/integration/
test_offload.sh) has its checksum recomputed from scratch (RFC 768, the IPv6 pseudo-header of
RFC 8200; an IPv4 checksum of 0 means none) and compared. Runs until STOPFILE exists, then
prints "udp_csum ok=N bad=N" (test_offload.sh: the kernel path's rewrites, whatever checksum
state the receiving skb had)."""
import os
import socket
import struct
import sys


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def sum16(b):
    if len(b) % 2:
        b += b"\0"
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))


def main():
    ifname, stop = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((ifname, 0))
    s.settimeout(0.1)
    ok = bad = 0
    while not os.path.exists(stop):
        try:
            f, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] == socket.PACKET_OUTGOING or len(f) < 14:
            continue
        et = struct.unpack("!H", f[12:14])[0]
        if et == 0x0800 and len(f) >= 34 and f[14] == 0x45 and f[23] == 17:
            src, dst = f[26:30], f[30:34]
            if not (src[0] == 10 and src[1] == 210 and src[3] == 1):
                continue
            tot = struct.unpack("!H", f[16:18])[0]
            udp = f[34 : 14 + tot]
            if struct.unpack("!H", udp[6:8])[0] == 0:
                continue
            pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
        elif et == 0x86DD and len(f) >= 62 and f[20] == 17:
            src, dst = f[22:38], f[38:54]
            if src[:4] != bytes([0xFD, 0, 2, 0x10]) or src[8:] != bytes(7) + b"\x01":
                continue
            plen = struct.unpack("!H", f[18:20])[0]
            udp = f[54 : 54 + plen]
            pseudo = src + dst + struct.pack("!IxxxB", len(udp), 17)
        else:
            continue
        if fold(sum16(pseudo) + sum16(udp)) == 0xFFFF:
            ok += 1
        else:
            bad += 1
    print("udp_csum ok=%d bad=%d" % (ok, bad), flush=True)


if __name__ == "__main__":
    main()
