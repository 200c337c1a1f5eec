#!/usr/bin/env python3
"""selfloop_client.py: a minimal TURN client (RFC 8656) for test_selfloop.sh: allocates, then
for each target peer tries CreatePermission, ChannelBind, a Send indication and ChannelData
whose payload is a STUN Binding request (a relay listener reached through the relay answers
it), and reports every answer code and every datagram that came back, one key=value per line.

A control peer (a UDP socket of this process) shows the relaying works; a second allocation
(--peer-alloc) is the target of relayed-port probes ("@B" in a target stands for its port)."""
import argparse
import hashlib
import hmac
import os
import random
import select
import socket
import struct
import sys
import time

COOKIE = 0x2112A442
ALLOCATE, PERMISSION, CHANNEL_BIND, SEND = 0x003, 0x008, 0x009, 0x006
A_USERNAME, A_MI, A_ERROR, A_CHANNEL, A_PEER, A_DATA = 0x0006, 0x0008, 0x0009, 0x000C, 0x0012, 0x0013
A_REALM, A_NONCE, A_RELAYED, A_FAMILY, A_TRANSPORT = 0x0014, 0x0015, 0x0016, 0x0017, 0x0019


def msg_type(method, cls):
    return (method & 0xF) | ((method & 0x70) << 1) | ((method & 0xF80) << 2) | ((cls & 1) << 4) | ((cls & 2) << 7)


def attr(t, v):
    return struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)


def xor_addr(host, port, tid):
    ip = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    key = struct.pack("!I", COOKIE) + tid
    x = bytes(a ^ b for a, b in zip(ip, key))
    return struct.pack("!BBH", 0, 1 if len(ip) == 4 else 2, port ^ (COOKIE >> 16)) + x


def parse_xor_addr(v, tid):
    fam, port = v[1], struct.unpack("!H", v[2:4])[0] ^ (COOKIE >> 16)
    key = struct.pack("!I", COOKIE) + tid
    ip = bytes(a ^ b for a, b in zip(v[4:], key))
    return socket.inet_ntop(socket.AF_INET if fam == 1 else socket.AF_INET6, ip), port


def build(method, cls, attrs, key=None, tid=None):
    tid = tid or os.urandom(12)
    body = b"".join(attrs)
    if key is not None:
        hdr = struct.pack("!HHI", msg_type(method, cls), len(body) + 24, COOKIE) + tid
        body += attr(A_MI, hmac.new(key, hdr + body, hashlib.sha1).digest())
    return struct.pack("!HHI", msg_type(method, cls), len(body), COOKIE) + tid + body, tid


def parse(buf):
    """(type, tid, {attr: [values]}) or None when not STUN."""
    if len(buf) < 20 or buf[0] & 0xC0 or struct.unpack("!I", buf[4:8])[0] != COOKIE:
        return None
    t, n = struct.unpack("!HH", buf[:4])
    attrs, p = {}, 20
    while p + 4 <= 20 + n:
        at, al = struct.unpack("!HH", buf[p:p + 4])
        attrs.setdefault(at, []).append(buf[p + 4:p + 4 + al])
        p += 4 + al + (-al % 4)
    return t, buf[8:20], attrs


class Conn:
    """One client transport to the server: UDP, or TCP with STUN/ChannelData framing."""

    def __init__(self, host, port, tcp):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.tcp = tcp
        self.s = socket.socket(fam, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        self.s.connect((host, port))
        self.buf = b""

    def send(self, b):
        if self.tcp:
            self.s.sendall(b + b"\0" * (-len(b) % 4 if b[0] & 0xC0 == 0x40 else 0))
        else:
            self.s.send(b)

    def recv(self, timeout):
        """One message, or None when nothing arrives within timeout seconds."""
        end = time.monotonic() + timeout
        while True:
            if self.tcp and len(self.buf) >= 4:
                n = struct.unpack("!H", self.buf[2:4])[0]
                full = 20 + n if self.buf[0] & 0xC0 == 0 else 4 + n + (-n % 4)
                if len(self.buf) >= full:
                    m, self.buf = self.buf[:full], self.buf[full:]
                    return m
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.s], [], [], left)[0]:
                return None
            data = self.s.recv(65536)
            if not self.tcp:
                return data
            if not data:
                return None
            self.buf += data


class Client:
    def __init__(self, args, family):
        self.c = Conn(args.server, args.port, args.tcp)
        self.user, self.realm = args.user, args.realm
        self.key = hashlib.md5(f"{args.user}:{args.realm}:{args.password}".encode()).digest()
        self.nonce = None
        self.datagrams = []  # Data indications and ChannelData that came back
        fam = [attr(A_FAMILY, b"\x02\0\0\0")] if family == 6 else []
        code, attrs = self.request(ALLOCATE, [attr(A_TRANSPORT, b"\x11\0\0\0")] + fam)
        if code != 200:
            sys.exit(f"allocate failed: {code}")
        self.relayed = parse_xor_addr(attrs[A_RELAYED][0], self.last_tid)

    def request(self, method, attrs):
        """Send a request (authenticating after a 401/438); (code, attributes), code 0: no
        answer."""
        for _ in range(3):
            auth = []
            if self.nonce:
                auth = [attr(A_USERNAME, self.user.encode()), attr(A_REALM, self.realm.encode()),
                        attr(A_NONCE, self.nonce)]
            m, tid = build(method, 0, attrs + auth, self.key if self.nonce else None)
            self.last_tid = tid
            self.c.send(m)
            p = self.answer(tid)
            if p is None:
                return 0, {}
            t, _, a = p
            if t & 0x0110 == 0x0100:
                return 200, a
            ev = a.get(A_ERROR, [b"\0\0\0\0"])[0]
            code = ev[2] * 100 + ev[3]
            if code not in (401, 438) or A_NONCE not in a:
                return code, a
            self.nonce = a[A_NONCE][0]  # and try again, authenticated
        return 0, {}

    def answer(self, tid):
        """The answer to transaction tid (other messages are kept as data); None: none in 3 s."""
        end = time.monotonic() + 3
        while True:
            got = self.c.recv(max(0.0, end - time.monotonic()))
            if got is None:
                return None
            p = parse(got)
            if p is not None and p[1] == tid:
                return p
            self.datagrams.append(got)

    def drain(self, secs):
        end = time.monotonic() + secs
        while True:
            got = self.c.recv(max(0.0, end - time.monotonic()))
            if got is None:
                return
            self.datagrams.append(got)


def binding_request():
    return build(0x001, 0, [])[0]


def split(target):
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--family", type=int, default=4)
    ap.add_argument("--user", default="alice")
    ap.add_argument("--password", default="wonderland")
    ap.add_argument("--realm", default="tern.test")
    ap.add_argument("--control", help="address of a control peer socket to open (e.g. 127.0.0.1)")
    ap.add_argument("--peer-alloc", action="store_true",
                    help="a second allocation, permitting --b-permit, targets use @B for its port")
    ap.add_argument("--b-permit", default="", help="comma-separated IPs B permits")
    ap.add_argument("--wait", type=float, default=1.0, help="seconds to collect late datagrams")
    ap.add_argument("targets", nargs="*")
    args = ap.parse_args()

    a = Client(args, args.family)
    print(f"relayed={a.relayed[0]}:{a.relayed[1]}")
    b = None
    if args.peer_alloc:
        b = Client(args, args.family)
        print(f"b_relayed={b.relayed[0]}:{b.relayed[1]}")
        for ip in filter(None, args.b_permit.split(",")):
            code = request_peer(b, PERMISSION, ip, 9, [])
            if code != 200:
                print(f"b_permit={ip} code={code}")
    channel = 0x4000
    if args.control:
        fam = socket.AF_INET6 if ":" in args.control else socket.AF_INET
        peer = socket.socket(fam, socket.SOCK_DGRAM)
        # Not a kernel-chosen port: the ephemeral range (32768-60999) overlaps the relay's port
        # range, which the test's specific configs refuse on the relay's own addresses, so
        # the control peer would sometimes be refused as the relay itself.
        for _ in range(100):
            try:
                peer.bind((args.control, random.randint(20000, 32000)))
                break
            except OSError:
                continue
        host, port = peer.getsockname()[:2]
        got = probe(a, host, port, channel)
        channel += 1
        n = 0
        while select.select([peer], [], [], 1.0)[0]:
            peer.recv(65536)
            n += 1
            if n == 2:
                break
        print(f"control={host}:{port} perm={got[0]} bind={got[1]} received={n}")
    for t in args.targets:
        if b:
            t = t.replace("@B", str(b.relayed[1]))
        host, port = split(t)
        perm, bind = probe(a, host, port, channel)
        channel += 1
        print(f"target={t} perm={perm} bind={bind}")
    a.drain(args.wait)
    print(f"a_data={len(a.datagrams)}")
    if b:
        b.drain(0.2)
        print(f"b_data={len(b.datagrams)}")


def probe(cl, host, port, channel):
    """CreatePermission, ChannelBind, Send and ChannelData to host:port; the two codes."""
    # XOR-PEER-ADDRESS depends on the transaction id: build each request's attribute with it.
    perm = request_peer(cl, PERMISSION, host, port, [])
    bind = request_peer(cl, CHANNEL_BIND, host, port, [attr(A_CHANNEL, struct.pack("!HH", channel, 0))])
    tid = os.urandom(12)
    m, _ = build(SEND, 1, [attr(A_PEER, xor_addr(host, port, tid)), attr(A_DATA, binding_request())],
                 tid=tid)
    cl.c.send(m)
    if bind == 200:
        data = binding_request()
        cl.c.send(struct.pack("!HH", channel, len(data)) + data)
    return perm, bind


def request_peer(cl, method, host, port, extra):
    """A request carrying XOR-PEER-ADDRESS, built per attempt with that attempt's tid."""
    for _ in range(3):
        tid = os.urandom(12)
        attrs = [attr(A_PEER, xor_addr(host, port, tid))] + extra
        auth = [attr(A_USERNAME, cl.user.encode()), attr(A_REALM, cl.realm.encode()),
                attr(A_NONCE, cl.nonce)]
        m, _ = build(method, 0, attrs + auth, cl.key, tid=tid)
        cl.c.send(m)
        p = cl.answer(tid)
        if p is None:
            return 0
        t, _, a = p
        if t & 0x0110 == 0x0100:
            return 200
        ev = a.get(A_ERROR, [b"\0\0\0\0"])[0]
        code = ev[2] * 100 + ev[3]
        if code != 438 or A_NONCE not in a:
            return code
        cl.nonce = a[A_NONCE][0]  # stale nonce: again with the new one
    return 0


if __name__ == "__main__":
    main()
