#!/usr/bin/env python3
"""dtls_flood.py: a DTLS handshake flood for test_dtls.sh, written from RFC 6347 (no TLS library).

    dtls_flood.py HOST PORT COUNT [--verified] [--batch N]

Sends COUNT DTLS 1.2 ClientHellos, each from its own UDP source port, BATCH sockets at a time.
Without --verified it never answers the HelloVerifyRequest (the spoofed-source / pre-cookie
flood: a relay must keep nothing); with --verified every source echoes its cookie in a second
ClientHello and then goes silent, so each becomes a half-open handshake on the relay (the
handshake cap and timeout must bound them). Prints one line:
    sent=N hello_verify=N server_hello=N
"""
import os
import select
import socket
import struct
import sys


def client_hello(cookie: bytes, msg_seq: int, rec_seq: int) -> bytes:
    exts = b""
    groups = struct.pack("!HHH", 4, 0x001D, 0x0017)
    exts += struct.pack("!HH", 0x000A, len(groups)) + groups
    exts += struct.pack("!HH", 0x000B, 2) + b"\x01\x00"
    sigs = struct.pack("!HHHH", 6, 0x0403, 0x0804, 0x0401)
    exts += struct.pack("!HH", 0x000D, len(sigs)) + sigs
    exts += struct.pack("!HH", 0x0017, 0)  # extended_master_secret
    suites = [0xC02B, 0xC02F, 0xC02C, 0xC030]
    body = b"\xfe\xfd" + os.urandom(32) + b"\x00"
    body += bytes([len(cookie)]) + cookie
    body += struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites)
    body += b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    n = len(body)
    hs = bytes([1]) + n.to_bytes(3, "big") + struct.pack("!H", msg_seq) + b"\x00\x00\x00"
    hs += n.to_bytes(3, "big") + body
    rec = bytes([22]) + b"\xfe\xff" + b"\x00\x00" + rec_seq.to_bytes(6, "big")
    return rec + struct.pack("!H", len(hs)) + hs


def main() -> int:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    verified = "--verified" in sys.argv
    batch = 200
    if "--batch" in sys.argv:
        batch = int(sys.argv[sys.argv.index("--batch") + 1])
    source = sys.argv[sys.argv.index("--source") + 1] if "--source" in sys.argv else None
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sent = hvr = sh = 0
    while sent < count:
        socks = []
        for _ in range(min(batch, count - sent)):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setblocking(False)
            if source:
                s.bind((source, 0))
            s.connect((host, port))
            s.send(client_hello(b"", 0, 0))
            socks.append(s)
            sent += 1
        pending = {s.fileno(): s for s in socks}
        stage = {s.fileno(): 0 for s in socks}
        while pending:
            r, _, _ = select.select(list(pending.values()), [], [], 0.3)
            if not r:
                break
            for s in r:
                try:
                    d = s.recv(4096)
                except OSError:
                    pending.pop(s.fileno(), None)
                    continue
                if len(d) >= 28 and d[0] == 22 and d[13] == 3 and stage[s.fileno()] == 0:
                    hvr += 1
                    stage[s.fileno()] = 1
                    if verified:
                        clen = d[27]
                        s.send(client_hello(d[28:28 + clen], 1, 1))
                        continue
                elif len(d) >= 14 and d[0] == 22 and d[13] == 2:
                    sh += 1
                pending.pop(s.fileno(), None)
        for s in socks:
            s.close()
    print(f"sent={sent} hello_verify={hvr} server_hello={sh}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
