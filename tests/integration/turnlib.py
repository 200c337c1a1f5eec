# turnlib.py: a minimal TURN client (RFC 8656 over RFC 8489, long-term credentials) for the
# integration tests that need many allocations or hand-made streams: Allocate, CreatePermission,
# Send and Data indications, over UDP or a TCP socket.
import hashlib
import hmac
import os
import socket
import struct

COOKIE = 0x2112A442
ALLOCATE, REFRESH, SEND, DATA, CREATE_PERMISSION, BINDING = 0x003, 0x004, 0x016, 0x017, 0x008, 0x001
A_USERNAME, A_MI, A_ERROR, A_REALM, A_NONCE = 0x0006, 0x0008, 0x0009, 0x0014, 0x0015
A_PEER, A_DATA, A_RELAYED, A_TRANSPORT = 0x0012, 0x0013, 0x0016, 0x0019


def pad4(n):
    return (n + 3) & ~3


def attr(t, v):
    return struct.pack("!HH", t, len(v)) + v + b"\0" * (pad4(len(v)) - len(v))


def xor_addr(host, port):
    ip = socket.inet_aton(host)
    x = bytes(a ^ b for a, b in zip(ip, struct.pack("!I", COOKIE)))
    return struct.pack("!BBH", 0, 1, port ^ (COOKIE >> 16)) + x


def parse_xor_addr(v):
    port = struct.unpack("!H", v[2:4])[0] ^ (COOKIE >> 16)
    ip = bytes(a ^ b for a, b in zip(v[4:8], struct.pack("!I", COOKIE)))
    return socket.inet_ntoa(ip), port


def message(mtype, attrs, key=None, txid=None):
    txid = txid or os.urandom(12)
    body = b"".join(attr(t, v) for t, v in attrs)
    if key is not None:
        hdr = struct.pack("!HHI", mtype, len(body) + 24, COOKIE) + txid
        mac = hmac.new(key, hdr + body, hashlib.sha1).digest()
        body += attr(A_MI, mac)
    return struct.pack("!HHI", mtype, len(body), COOKIE) + txid + body


def parse(buf):
    mtype, length, _ = struct.unpack("!HHI", buf[:8])
    attrs, off = {}, 20
    while off + 4 <= 20 + length:
        t, n = struct.unpack("!HH", buf[off:off + 4])
        attrs.setdefault(t, buf[off + 4:off + 4 + n])
        off += 4 + pad4(n)
    return mtype, buf[8:20], attrs


def error_code(attrs):
    v = attrs.get(A_ERROR)
    return v[2] * 100 + v[3] if v else 0


class Client:
    """One TURN client over UDP (sock_type DGRAM) or TCP (a stream: 2-byte-aligned framing)."""

    def __init__(self, host, port, user, password, realm="tern", tcp=False, src="127.0.0.1",
                 timeout=3.0):
        self.tcp = tcp
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        self.s.settimeout(timeout)
        self.s.bind((src, 0))
        self.s.connect((host, port))
        self.user, self.realm = user.encode(), realm.encode()
        self.key = hashlib.md5(self.user + b":" + self.realm + b":" + password.encode()).digest()
        self.nonce = None
        self.rx = b""

    def recv(self):
        if not self.tcp:
            return self.s.recv(65536)
        while True:
            if len(self.rx) >= 4:
                n = struct.unpack("!H", self.rx[2:4])[0]
                flen = 20 + n if self.rx[0] < 0x40 else 4 + pad4(n)
                if len(self.rx) >= flen:
                    f, self.rx = self.rx[:flen], self.rx[flen:]
                    return f
            b = self.s.recv(65536)
            if not b:
                raise ConnectionError("closed")
            self.rx += b

    def request(self, mtype, attrs):
        """Send a request (authenticating once a nonce is known); the answer's (class, attrs)."""
        for _ in range(3):
            auth = [(A_USERNAME, self.user), (A_REALM, self.realm), (A_NONCE, self.nonce)] \
                if self.nonce else []
            txid = os.urandom(12)
            self.s.send(message(mtype, attrs + auth, self.key if self.nonce else None, txid))
            while True:
                t, tid, a = parse(self.recv())
                if tid == txid:
                    break
            code = error_code(a)
            if code in (401, 438) and A_NONCE in a:
                self.nonce, self.realm = a[A_NONCE], a.get(A_REALM, self.realm)
                continue
            return t, a
        return t, a

    def allocate(self):
        """0 and the relayed (host, port), or the error code and None."""
        t, a = self.request(ALLOCATE, [(A_TRANSPORT, bytes([17, 0, 0, 0]))])
        if t & 0x0110 == 0x0100:
            return 0, parse_xor_addr(a[A_RELAYED])
        return error_code(a) or -1, None

    def permit(self, host, port):
        t, a = self.request(CREATE_PERMISSION, [(A_PEER, xor_addr(host, port))])
        return t & 0x0110 == 0x0100

    def send(self, host, port, data):
        self.s.send(message(SEND, [(A_PEER, xor_addr(host, port)), (A_DATA, data)]))

    def data(self):
        """The payload of the next Data indication."""
        while True:
            t, _, a = parse(self.recv())
            if t == DATA:
                return a.get(A_DATA)


def echo_once(peer):
    """Answer one datagram on the peer socket with the same bytes."""
    b, src = peer.recvfrom(65536)
    peer.sendto(b, src)


def relays(client, peer):
    """True when a Send indication reaches the peer and its echo comes back as Data."""
    host, port = peer.getsockname()
    payload = os.urandom(16)
    client.send(host, port, payload)
    echo_once(peer)
    return client.data() == payload
