#!/usr/bin/env python3
"""tcp_echo_peer.py: a TCP echo peer for the RFC 6062 tests (turnutils_peer has no TCP mode).

    tcp_echo_peer.py ADDRESS PORT [--connect HOST:PORT --send N]

Listens on ADDRESS:PORT (0: any free port; the port is printed on the first line) and echoes
every byte on every connection it accepts. With --connect it instead connects to HOST:PORT
(a relayed TCP address), sends N bytes, and prints what came back ("echoed=<n>") or the
error ("refused: ..."), for the tests of peers connecting in."""
import socket
import sys
import threading


def echo(conn):
    with conn:
        while True:
            try:
                b = conn.recv(65536)
            except OSError:
                return
            if not b:
                return
            try:
                conn.sendall(b)
            except OSError:
                return


def serve(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(128)
    print(s.getsockname()[1], flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def connect(target, n):
    host, port = target.rsplit(":", 1)
    try:
        c = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        c.settimeout(3)
        c.sendall(b"x" * n)
        got = 0
        while got < n:
            b = c.recv(65536)
            if not b:
                break
            got += len(b)
        print(f"echoed={got}")
    except OSError as e:
        print(f"refused: {e}")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[3] == "--connect":
        connect(sys.argv[4], int(sys.argv[6]) if len(sys.argv) > 6 else 100)
    else:
        serve(sys.argv[1], int(sys.argv[2]))
