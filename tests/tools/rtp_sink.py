#!/usr/bin/env python3
"""rtp_sink.py: a UDP receiver of RTP that reports, when it has heard nothing for IDLE seconds
(or after it got SIGTERM), what arrived: packets received and expected (from the sequence
numbers), loss, and the RFC 3550 interarrival jitter in milliseconds at CLOCK Hz.

Usage: rtp_sink.py ADDRESS PORT CLOCK IDLE OUT [SENT]   (OUT gets one JSON line; prints "ready").
SENT: how many packets were sent, sequence numbers 0..SENT-1 (else the span seen)."""
import json
import signal
import socket
import sys
import time

addr, port, clock, idle, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
sent = int(sys.argv[6]) if len(sys.argv) > 6 else None
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
s.settimeout(idle)
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
seqs, jitter, prev, started = set(), 0.0, None, False
while not stop:
    try:
        data = s.recv(65535)
    except socket.timeout:
        if started:
            break
        continue
    except InterruptedError:
        continue
    started = True
    arrival = time.monotonic() * clock
    if len(data) < 12 or data[0] >> 6 != 2:
        continue
    seq = data[2] << 8 | data[3]
    ts = int.from_bytes(data[4:8], "big")
    seqs.add(seq)
    transit = arrival - ts
    if prev is not None:  # RFC 3550 A.8
        jitter += (abs(transit - prev) - jitter) / 16
    prev = transit
received = len(seqs)
expected = sent if sent is not None else ((max(seqs) - min(seqs) + 1) if seqs else 0)
with open(out, "w") as f:
    f.write(json.dumps({"received": received, "expected": expected,
                        "lost": expected - received,
                        "loss_ratio": (expected - received) / expected if expected else None,
                        "jitter_ms": jitter * 1000 / clock}) + "\n")
