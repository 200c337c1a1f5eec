#!/usr/bin/env python3
"""slowloris.py: slow HTTP clients for test_ops_slowloris.sh (loopback only).

slowloris.py hold PORT N SECONDS [FIRST_IP [PERIOD]]: open N connections to 127.0.0.1:PORT, each
from its own loopback source address (FIRST_IP, FIRST_IP+1, ...; default 127.0.1.1), reopening
any the server closes, and trickle one header byte every PERIOD seconds (default 3) on each;
runs SECONDS, then prints the connections opened in all.
slowloris.py perip PORT N SOURCE_IP: open N connections from SOURCE_IP, send a partial request
line on each, wait 1.5 s, print how many the server still holds open.
"""
import ipaddress
import select
import socket
import sys
import time


def connect(port, src):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(2)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    return s


def alive(s):
    """False once the server closed (EOF or reset); data it sends (an error reply) counts too."""
    try:
        r, _, _ = select.select([s], [], [], 0)
        if not r:
            return True
        return False
    except OSError:
        return False


def hold(port, n, secs, first, period):
    base = ipaddress.IPv4Address(first)
    srcs = [str(base + i) for i in range(n)]
    socks = [None] * n
    opened = 0
    end = time.monotonic() + secs
    next_byte = time.monotonic() + period
    while time.monotonic() < end:
        for i in range(n):
            if socks[i] is not None and not alive(socks[i]):
                socks[i].close()
                socks[i] = None
            if socks[i] is None:
                try:
                    socks[i] = connect(port, srcs[i])
                    opened += 1
                except OSError:
                    socks[i] = None
        if time.monotonic() >= next_byte:
            next_byte += period
            for s in socks:
                if s is not None:
                    try:
                        s.send(b"X")
                    except OSError:
                        pass
        time.sleep(0.1)
    print(opened, flush=True)


def perip(port, n, src):
    socks = []
    for _ in range(n):
        try:
            socks.append(connect(port, src))
        except OSError:
            pass
    time.sleep(1.5)
    print(sum(1 for s in socks if alive(s)), flush=True)


if __name__ == "__main__":
    mode, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode == "hold":
        hold(port, n, float(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else "127.0.1.1",
             float(sys.argv[6]) if len(sys.argv) > 6 else 3.0)
    else:
        perip(port, n, sys.argv[4])
