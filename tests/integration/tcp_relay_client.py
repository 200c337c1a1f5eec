#!/usr/bin/env python3
"""tcp_relay_client.py: RFC 6062 checks with turnlib's client, for test_tcp_relay.sh.

    tcp_relay_client.py TURN_PORT connect-echo PEER_PORT N   Connect to a TCP echo peer,
        ConnectionBind a data connection, N bytes there and back: prints "ok echoed=N"
    tcp_relay_client.py TURN_PORT connect-denied HOST PORT   a Connect to a forbidden peer:
        prints "code=<error>"
    tcp_relay_client.py TURN_PORT incoming                   a peer connects to the relayed
        address without a permission (refused: no ConnectionAttempt), then with one (bound,
        echoed): prints "refused-without ok-with"
    tcp_relay_client.py TURN_PORT many N BYTES      N peers connect to the relayed address,
        N ConnectionAttempts, N data connections (each a new TCP connection: with several
        workers many land on a worker other than the allocation's), all open at once, BYTES
        through each and back: prints "ok conns=N"
    tcp_relay_client.py TURN_PORT hold PEER_PORT SECONDS   Connect to the echo peer, 200 kB
        through and back, then 16 MB sent without reading any of the echo (both directions
        stall), prints "ready", holds the connections SECONDS (for the QoS view) and exits
    tcp_relay_client.py TURN_PORT halfclose PEER_PORT        half-close both ways: the client
        sends 300 kB and shuts its side (FIN), and still gets the whole echo back, then EOF;
        a peer that connected in sends 100 kB and shuts its side, the client gets it and EOF,
        then sends 200 kB the other way, which the peer gets, then EOF: prints
        "ok client-fin echoed=300000 eof peer-fin got=100000 eof back=200000 eof"
"""
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import turnlib as t  # noqa: E402

CONNECT, CONNECTION_BIND, CONNECTION_ATTEMPT = 0x00A, 0x00B, 0x01C
A_CONNECTION_ID = 0x002A
HOST = "127.0.0.1"


def control(port):
    c = t.Client(HOST, port, "alice", "wonderland", realm="tern.test", tcp=True)
    typ, a = c.request(t.ALLOCATE, [(t.A_TRANSPORT, bytes([6, 0, 0, 0]))])
    if typ & 0x0110 != 0x0100:
        sys.exit(f"TCP Allocate failed: {t.error_code(a)}")
    return c, t.parse_xor_addr(a[t.A_RELAYED])


def bind(port, ctl, cid):
    """A data connection bound to cid, signed with the control connection's nonce."""
    d = t.Client(HOST, port, "alice", "wonderland", realm="tern.test", tcp=True)
    d.nonce, d.realm = ctl.nonce, ctl.realm
    typ, a = d.request(CONNECTION_BIND, [(A_CONNECTION_ID, struct.pack("!I", cid))])
    if typ & 0x0110 != 0x0100:
        sys.exit(f"ConnectionBind failed: {t.error_code(a)}")
    return d


def echo_through(d, n):
    payload = os.urandom(n)
    d.s.sendall(d.rx + payload if False else payload)
    got = d.rx
    d.rx = b""
    while len(got) < n:
        b = d.s.recv(65536)
        if not b:
            break
        got += b
    return got == payload


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    ctl, relayed = control(port)
    if mode == "connect-denied":
        typ, a = ctl.request(CONNECT, [(t.A_PEER, t.xor_addr(sys.argv[3], int(sys.argv[4])))])
        print(f"code={t.error_code(a)}")
    elif mode == "connect-echo":
        n = int(sys.argv[4])
        typ, a = ctl.request(CONNECT, [(t.A_PEER, t.xor_addr(HOST, int(sys.argv[3])))])
        if typ & 0x0110 != 0x0100:
            sys.exit(f"Connect failed: {t.error_code(a)}")
        cid = struct.unpack("!I", a[A_CONNECTION_ID])[0]
        d = bind(port, ctl, cid)
        print(f"ok echoed={n}" if echo_through(d, n) else "echo mismatch")
    elif mode == "hold":
        import threading
        import time
        typ, a = ctl.request(CONNECT, [(t.A_PEER, t.xor_addr(HOST, int(sys.argv[3])))])
        if typ & 0x0110 != 0x0100:
            sys.exit(f"Connect failed: {t.error_code(a)}")
        d = bind(port, ctl, struct.unpack("!I", a[A_CONNECTION_ID])[0])
        if not echo_through(d, 200000):
            sys.exit("echo mismatch")

        def flood():
            try:
                d.s.sendall(os.urandom(16 << 20))
            except OSError:
                pass

        threading.Thread(target=flood, daemon=True).start()
        time.sleep(1.5)
        print("ready", flush=True)
        time.sleep(float(sys.argv[4]))
    elif mode == "halfclose":
        out = ["ok"]
        typ, a = ctl.request(CONNECT, [(t.A_PEER, t.xor_addr(HOST, int(sys.argv[3])))])
        if typ & 0x0110 != 0x0100:
            sys.exit(f"Connect failed: {t.error_code(a)}")
        d = bind(port, ctl, struct.unpack("!I", a[A_CONNECTION_ID])[0])
        payload = os.urandom(300000)
        d.s.settimeout(10)
        d.s.sendall(payload)
        d.s.shutdown(socket.SHUT_WR)
        got = d.rx
        while True:
            b = d.s.recv(65536)
            if not b:
                break
            got += b
        out += ["client-fin", f"echoed={len(got)}" if got == payload else f"mismatch={len(got)}", "eof"]
        ctl.permit(HOST, 0)
        p = socket.create_connection(relayed, timeout=10)
        while True:
            typ, _, a = t.parse(ctl.recv())
            if typ == CONNECTION_ATTEMPT:
                break
        d = bind(port, ctl, struct.unpack("!I", a[A_CONNECTION_ID])[0])
        d.s.settimeout(10)
        down, up = os.urandom(100000), os.urandom(200000)
        p.sendall(down)
        p.shutdown(socket.SHUT_WR)
        got = d.rx
        while True:
            b = d.s.recv(65536)
            if not b:
                break
            got += b
        out += ["peer-fin", f"got={len(got)}" if got == down else f"mismatch={len(got)}", "eof"]
        d.s.sendall(up)
        d.s.shutdown(socket.SHUT_WR)
        back = b""
        while True:
            b = p.recv(65536)
            if not b:
                break
            back += b
        out += [f"back={len(back)}" if back == up else f"mismatch={len(back)}", "eof"]
        print(" ".join(out))
    elif mode == "many":
        n, size = int(sys.argv[3]), int(sys.argv[4])
        ctl.permit(HOST, 0)
        peers = [socket.create_connection(relayed, timeout=5) for _ in range(n)]
        cids = []
        while len(cids) < n:
            typ, _, a = t.parse(ctl.recv())
            if typ == CONNECTION_ATTEMPT:
                cids.append(struct.unpack("!I", a[A_CONNECTION_ID])[0])
        datas = [bind(port, ctl, cid) for cid in cids]
        by_port = {}
        for p in peers:
            by_port[p.getsockname()[1]] = p
        bad = 0
        for d in datas:  # the data connections and peers pair up in some order: find each's
            payload = os.urandom(size)
            d.s.sendall(payload)
            first = None
            while first is None:
                for p in peers:
                    p.setblocking(False)
                    try:
                        b = p.recv(65536)
                    except BlockingIOError:
                        continue
                    finally:
                        p.setblocking(True)
                    first = (p, b)
                    break
            p, got = first
            p.settimeout(5)
            while len(got) < size:
                got += p.recv(65536)
            p.sendall(got)
            back = b""
            d.s.settimeout(5)
            while len(back) < size:
                back += d.s.recv(65536)
            bad += back != payload
        print(f"ok conns={n}" if not bad else f"{bad} of {n} mismatched")
    elif mode == "incoming":
        out = []
        p = socket.create_connection(relayed, timeout=3)
        p.settimeout(2)
        try:
            refused = p.recv(1) == b""
        except ConnectionResetError:
            refused = True
        except socket.timeout:
            refused = False
        ctl.s.settimeout(0.5)
        try:
            ctl.recv()
            refused = False  # a ConnectionAttempt came: it was not refused
        except socket.timeout:
            pass
        ctl.s.settimeout(3)
        out.append("refused-without" if refused else "accepted-without")
        ctl.permit(HOST, 0)
        p = socket.create_connection(relayed, timeout=3)
        while True:
            typ, _, a = t.parse(ctl.recv())
            if typ == CONNECTION_ATTEMPT:
                break
        cid = struct.unpack("!I", a[A_CONNECTION_ID])[0]
        d = bind(port, ctl, cid)
        payload = os.urandom(5000)
        d.s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += p.recv(65536)
        p.sendall(got)
        back = b""
        while len(back) < len(payload):
            back += d.s.recv(65536)
        out.append("ok-with" if back == payload else "mismatch-with")
        print(" ".join(out))


main()
