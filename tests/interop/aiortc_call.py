#!/usr/bin/python3
"""aiortc_call.py: one WebRTC call between two aiortc peers relayed by a TURN server.

Two RTCPeerConnections in one asyncio process, each with the TURN server as its only ICE
server and relay candidates only (aioice's TransportPolicy.RELAY, plus an SDP filter that
keeps `typ relay` candidates). A sends Opus audio and VP8 video to B, B sends Opus audio to A.
With --loss P, A drops a fraction P of its outgoing audio RTP before SRTP (after a warm-up, so
the stream's first packets, which a relay needs to confirm the stream, all arrive): real
sequence gaps that every observer downstream must count as lost.

After --duration seconds the senders pause (the tracks stop yielding frames; ICE consent and
RTCP continue), and after --quiet seconds, when no RTP is in flight any more, the receivers'
getStats() are read and one JSON object is printed on stdout:

  {"connected": true, "peers": {"A": PEER, "B": PEER}, "sender_dropped": {ssrc: n}, ...}
  PEER = {"relayed": "ip:port" (the selected pair's local relayed candidate),
          "selected_pair": {"local_type", "remote_type", "local", "remote"},
          "inbound_rtp": [{"ssrc", "kind", "packetsReceived", "packetsLost", "jitter"
                           (seconds, as getStats), "jitter_rtp_units", "clock_rate"}],
          "outbound_ssrcs": {kind: ssrc},
          "candidate_pair": {"currentRoundTripTime", "totalRoundTripTime",
                             "responsesReceived", "rtts"}}

aiortc 1.4 has no candidate-pair stats, so they are measured here the way libwebrtc does:
each ICE connectivity or consent check sent on the selected pair, from its first send to the
arrival of its response; a check that was retransmitted gives no sample (Karn).

With --b-netns NS (a network namespace name, /run/netns/NS), B runs inside that namespace
with host candidates only and no TURN server, while A stays relay-only in the namespace the
process started in: the media goes client -> relay -> B and back through one allocation (A's),
so a relay's kernel fast path can carry both directions (tests/integration/
test_offload_aiortc.sh). Its sockets are made inside NS (setns(2) around B's gathering; a
socket keeps the namespace it was made in), everything else runs in one event loop as before.
Then PEER B's "relayed" is its host address and its selected pair is host to relay.

Then it holds the call up (so the relay's allocations can be inspected) until SIGUSR1, SIGTERM,
or --hold seconds, and closes both peers. Exit 0 on success, 2 when the call does not connect
or a selected pair is not relay-to-relay, 3 when aiortc is missing.
"""
import argparse
import asyncio
import ctypes
import os
import json
import random
import signal
import struct
import sys
import time
import urllib.request

try:
    import aioice.ice
    import aioice.stun
    import aiortc.rtcicetransport
    import aiortc.rtp
    from av import VideoFrame
    from aiortc import (
        RTCConfiguration,
        RTCIceServer,
        RTCPeerConnection,
        RTCSessionDescription,
    )
    from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
    from aiortc.rtcdtlstransport import RTCDtlsTransport
except ImportError as exc:  # the test reports this as a failure, never as a skip
    print(json.dumps({"connected": False, "error": "aiortc missing: %s" % exc}))
    sys.exit(3)


# --- relay-only ICE -------------------------------------------------------------------------
_orig_kwargs = aiortc.rtcicetransport.connection_kwargs


def _relay_only_kwargs(servers):
    kw = _orig_kwargs(servers)
    if "turn_server" in kw:  # B with --b-netns has no TURN server: its host candidates
        kw["transport_policy"] = aioice.ice.TransportPolicy.RELAY
    return kw


aiortc.rtcicetransport.connection_kwargs = _relay_only_kwargs


def relay_only_sdp(sdp):
    """Keep only `typ relay` candidate lines (belt and braces over TransportPolicy.RELAY)."""
    lines = sdp.split("\r\n")
    return "\r\n".join(
        ln for ln in lines if not ln.startswith("a=candidate:") or " typ relay" in ln
    )


# --- B in another network namespace (--b-netns) ---------------------------------------------
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetNs:
    """with NetNs(name): the calling thread in /run/netns/name, back where it was after."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open("/run/netns/%s" % self.name, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns %s" % self.name)
        finally:
            os.close(fd)

    def __exit__(self, *exc):
        try:
            if _libc.setns(self.home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(self.home)


# --- aiortc 1.4 bug (aiortc/aiortc#745): on a bundled transport one header-extension map
# serves audio and video, so audio's one-byte ssrc-audio-level element can carry the id video
# negotiated for abs-send-time (3 bytes) and parsing the packet raises; the receiver's DTLS
# transport then dies at the first audio packet. Drop only such misfitting elements.
_orig_ext_get = aiortc.rtp.HeaderExtensionsMap.get


def _ext_get(self, profile, value):
    try:
        return _orig_ext_get(self, profile, value)
    except struct.error:
        ast = self._HeaderExtensionsMap__ids.abs_send_time
        kept = [
            (i, v)
            for i, v in aiortc.rtp.unpack_header_extensions(profile, value)
            if not (i == ast and len(v) != 3)
        ]
        return _orig_ext_get(self, *aiortc.rtp.pack_header_extensions(kept))


aiortc.rtp.HeaderExtensionsMap.get = _ext_get


# --- candidate-pair RTT, measured like libwebrtc (first send to response, Karn) -------------
_first_send = {}  # transaction id -> monotonic time of the first send
_sends = {}  # transaction id -> number of sends
_answered = {}  # transaction id -> monotonic time of the response's arrival
RTT_SAMPLES = {}  # (protocol id, remote addr) -> list of (rtt seconds, karn-clean)

_orig_send_stun = aioice.ice.StunProtocol.send_stun
_orig_request = aioice.ice.StunProtocol.request
_orig_response_received = aioice.stun.Transaction.response_received


def _send_stun(self, message, addr):
    tid = message.transaction_id
    if message.message_class == aioice.stun.Class.REQUEST:
        _first_send.setdefault(tid, time.monotonic())
        _sends[tid] = _sends.get(tid, 0) + 1
    return _orig_send_stun(self, message, addr)


def _response_received(self, message, addr):
    _answered.setdefault(message.transaction_id, time.monotonic())
    return _orig_response_received(self, message, addr)


async def _request(self, request, addr, integrity_key=None, retransmissions=None):
    tid = request.transaction_id
    try:
        return await _orig_request(self, request, addr, integrity_key, retransmissions)
    finally:
        t0, t1, n = _first_send.pop(tid, None), _answered.pop(tid, None), _sends.pop(tid, 0)
        if request.message_method == aioice.stun.Method.BINDING and t0 and t1:
            RTT_SAMPLES.setdefault((id(self), tuple(addr)), []).append((t1 - t0, n == 1))


aioice.ice.StunProtocol.send_stun = _send_stun
aioice.ice.StunProtocol.request = _request
aioice.stun.Transaction.response_received = _response_received


# --- sender-side ground truth and impairment: every RTP packet handed to SRTP is counted per
# SSRC; a fraction of the chosen SSRCs' packets is dropped instead of sent ------------------
class Impairment:
    def __init__(self, loss, warmup, seed):
        self.loss, self.warmup, self.rng = loss, warmup, random.Random(seed)
        self.ssrcs = set()
        self.seen = {}
        self.dropped = {}


IMPAIR = Impairment(0.0, 0, 0)
_orig_send_rtp = RTCDtlsTransport._send_rtp


async def _send_rtp(self, data):
    # RTP, not RTCP (RFC 5761: payload types 64-95 after the marker bit are RTCP)
    if len(data) >= 12 and not 192 <= data[1] <= 223:
        ssrc = struct.unpack("!I", data[8:12])[0]
        n = IMPAIR.seen[ssrc] = IMPAIR.seen.get(ssrc, 0) + 1
        if ssrc in IMPAIR.ssrcs and n > IMPAIR.warmup and IMPAIR.rng.random() < IMPAIR.loss:
            IMPAIR.dropped[ssrc] = IMPAIR.dropped.get(ssrc, 0) + 1
            return
    await _orig_send_rtp(self, data)


RTCDtlsTransport._send_rtp = _send_rtp


# --- tracks that can pause (the sender's loop waits; the connection stays up) ---------------
class Pausable:
    def __init__(self):
        self.running = asyncio.Event()
        self.running.set()


class PausableAudio(AudioStreamTrack):
    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    async def recv(self):
        await self.gate.running.wait()
        return await super().recv()


class PausableVideo(VideoStreamTrack):
    """VideoStreamTrack's 30 fps green frames at 320x240 instead of 640x480: the VP8 encoder
    shares the GIL with the event loop, and every ms it holds it lands in aiortc's arrival
    times and RTT samples (the receive-path noise this test must tolerate)."""

    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    async def recv(self):
        await self.gate.running.wait()
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=320, height=240)
        for p in frame.planes:
            p.update(bytes(p.buffer_size))
        frame.pts, frame.time_base = pts, time_base
        return frame


async def consume(track):
    try:
        while True:
            await track.recv()
    except (MediaStreamError, asyncio.CancelledError):
        pass


def ice_connection(pc):
    """The aioice Connection and DTLS transport of the (bundled) transport in use."""
    for t in pc.getTransceivers():
        dtls = t.receiver.transport
        if dtls is not None and dtls.transport.state == "completed":
            return dtls.transport.iceGatherer._connection, dtls
    return None, None


def selected_pair(pc):
    conn, _ = ice_connection(pc)
    if conn is None or not conn._nominated:
        return None
    pair = conn._nominated[min(conn._nominated)]
    lc, rc = pair.local_candidate, pair.remote_candidate
    return {
        "pair": pair,
        "local_type": lc.type,
        "remote_type": rc.type,
        "local": "%s:%d" % (lc.host, lc.port),
        "remote": "%s:%d" % (rc.host, rc.port),
    }


async def inbound(pc):
    """inbound-rtp per SSRC. aiortc names every SSRC of one receiver with the same stats id,
    so getStats() keeps only the last; each receiver's per-SSRC statistics are read directly
    and the one getStats() kept is checked against them."""
    out = []
    for t in pc.getTransceivers():
        rcv = t.receiver
        report = await rcv.getStats()
        streams = getattr(rcv, "_RTCRtpReceiver__remote_streams", {})
        for st in report.values():
            if st.type != "inbound-rtp":
                continue
            s = streams.get(st.ssrc)
            if s is not None and (s.packets_received, s.jitter) != (
                st.packetsReceived,
                st.jitter,
            ):
                raise RuntimeError("getStats and the receiver disagree for %d" % st.ssrc)
        for ssrc, s in streams.items():
            rate = s._clockrate
            out.append(
                {
                    "ssrc": ssrc,
                    "kind": t.kind,
                    "packetsReceived": s.packets_received,
                    "packetsLost": s.packets_lost,
                    # getStats' jitter is in RTP timestamp units in aiortc 1.4; the W3C field
                    # is seconds: converted with the codec's clock rate
                    "jitter": s.jitter / rate,
                    "jitter_rtp_units": s.jitter,
                    "clock_rate": rate,
                }
            )
    return out


def pair_stats(sel):
    pair = sel["pair"]
    samples = RTT_SAMPLES.get((id(pair.protocol), tuple(pair.remote_addr)), [])
    clean = [r for r, ok in samples if ok]
    return {
        "currentRoundTripTime": clean[-1] if clean else None,
        "totalRoundTripTime": sum(clean),
        "responsesReceived": len(samples),
        "rtts": clean,
    }


def fetch_relay(api):
    """GET /api/v1/allocations and every allocation's detail (blocking; run in a thread)."""

    def get(path):
        with urllib.request.urlopen(api + path, timeout=5) as r:
            return json.load(r)

    t0 = time.monotonic()
    lst = get("/api/v1/allocations")
    details = {e["id"]: get("/api/v1/allocations/%s" % e["id"]) for e in lst["allocations"]}
    return {"list": lst, "details": details, "fetch_seconds": time.monotonic() - t0}


async def live_snapshot(api, pa, pb):
    """Mid-call, media flowing: both receivers' inbound-rtp, then at once the relay's API.
    The difference is what was in flight or arrived during the fetch (fetch_seconds)."""
    t0 = time.monotonic()
    stats = {"A": await inbound(pa), "B": await inbound(pb)}
    t1 = time.monotonic()
    relay = await asyncio.get_running_loop().run_in_executor(None, fetch_relay, api)
    relay["stats_seconds"] = t1 - t0
    return {"inbound_rtp": stats, "relay": relay}


async def loop_lag(out, period=0.005):
    """The event loop's own noise: how late each 5 ms sleep wakes up. aiortc stamps RTP
    arrivals and STUN responses from this loop, so this lateness is in its jitter and RTT."""
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(period)
        out.append(loop.time() - t - period)


async def wait_connected(pcs, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        states = [pc.connectionState for pc in pcs]
        if all(s == "connected" for s in states):
            return True
        if any(s in ("failed", "closed") for s in states):
            return False
        await asyncio.sleep(0.05)
    return False


async def run(args):
    IMPAIR.loss, IMPAIR.warmup, IMPAIR.rng = args.loss, args.warmup, random.Random(args.seed)
    server = RTCIceServer(
        urls="turn:%s?transport=udp" % args.server, username=args.user, credential=args.password
    )
    cfg = RTCConfiguration(iceServers=[server])
    b_host = bool(args.b_netns)
    pa = RTCPeerConnection(cfg)
    # B in its namespace: host candidates only (an empty server list, not None, which would
    # make aiortc add its default STUN server)
    pb = RTCPeerConnection(RTCConfiguration(iceServers=[]) if b_host else cfg)
    gate = Pausable()
    a_audio, a_video, b_audio = PausableAudio(gate), PausableVideo(gate), PausableAudio(gate)
    consumers = []
    result = {"connected": False, "server": args.server, "duration": args.duration}
    hold = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, hold.set)

    def on_track(track):
        consumers.append(asyncio.ensure_future(consume(track)))

    pa.on("track", on_track)
    pb.on("track", on_track)
    try:
        pa.addTrack(a_audio)
        pa.addTrack(a_video)

        async def negotiate():
            await pa.setLocalDescription(await pa.createOffer())
            offer = relay_only_sdp(pa.localDescription.sdp)
            if b_host:
                # B's transports (and their sockets) are made here, its host addresses
                # enumerated and its sockets bound in its namespace; nothing of A's runs
                # meanwhile (A gathered before the offer, its checks start with the answer)
                with NetNs(args.b_netns):
                    await pb.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
                    pb.addTrack(b_audio)
                    await pb.setLocalDescription(await pb.createAnswer())
                answer = "\r\n".join(
                    ln
                    for ln in pb.localDescription.sdp.split("\r\n")
                    if not ln.startswith("a=candidate:") or (" typ host" in ln and ":" not in ln.split()[4])
                )
            else:
                await pb.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
                pb.addTrack(b_audio)
                await pb.setLocalDescription(await pb.createAnswer())
                answer = relay_only_sdp(pb.localDescription.sdp)
            await pa.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            return offer, answer

        try:  # gathering allocates on the TURN server: a refusal raises here
            offer, answer = await asyncio.wait_for(negotiate(), args.timeout)
        except asyncio.TimeoutError:
            result["error"] = "TURN allocation and offer/answer not done within %.0f s" % (
                args.timeout
            )
            return result, 2
        except Exception as exc:  # noqa: BLE001 (reported, exit 2)
            result["error"] = "offer/answer with TURN candidates failed: %s: %s" % (
                type(exc).__name__,
                exc,
            )
            return result, 2
        result["offer_relay_candidates"] = offer.count(" typ relay")
        result["answer_relay_candidates"] = answer.count(" typ relay")

        if not await wait_connected((pa, pb), args.timeout):
            result["error"] = "call did not connect within %.0f s (states %s, %s)" % (
                args.timeout,
                pa.connectionState,
                pb.connectionState,
            )
            return result, 2
        t_connected = time.monotonic()
        sels = {"A": selected_pair(pa), "B": selected_pair(pb)}
        want = {"A": ("relay", "host"), "B": ("host", "relay")} if b_host else {
            "A": ("relay", "relay"),
            "B": ("relay", "relay"),
        }
        result["b_host"] = b_host
        for name, sel in sels.items():
            if sel is None or (sel["local_type"], sel["remote_type"]) != want[name]:
                result["error"] = "peer %s: selected pair is not %s-to-%s: %s" % (
                    name,
                    want[name][0],
                    want[name][1],
                    {k: v for k, v in (sel or {}).items() if k != "pair"},
                )
                return result, 2
        result["connected"] = True
        out_ssrcs = {"A": {}, "B": {}}
        for name, pc in (("A", pa), ("B", pb)):
            for t in pc.getTransceivers():
                if t.sender.track is not None:
                    out_ssrcs[name][t.kind] = t.sender._ssrc
        if args.loss > 0:
            IMPAIR.ssrcs.add(out_ssrcs["A"]["audio"])

        lags = []
        lag_task = asyncio.ensure_future(loop_lag(lags))
        if args.api:
            await asyncio.sleep(args.duration / 2)
            result["live"] = await live_snapshot(args.api, pa, pb)
            await asyncio.sleep(args.duration / 2)
        else:
            await asyncio.sleep(args.duration)
        gate.running.clear()  # senders stop after their current frame
        lag_task.cancel()
        steps = [abs(b - a) for a, b in zip(lags, lags[1:])]
        lags.sort()
        result["loop_lag"] = {
            "samples": len(lags),
            "p50": lags[len(lags) // 2] if lags else None,
            "p99": lags[int(len(lags) * 0.99)] if lags else None,
            "max": lags[-1] if lags else None,
            # mean |lag(k) - lag(k-1)|: what this noise adds to a jitter-like estimator
            "mean_step": sum(steps) / len(steps) if steps else None,
        }
        await asyncio.sleep(args.quiet)

        result["media_seconds"] = round(time.monotonic() - t_connected - args.quiet, 3)
        result["peers"] = {}
        for name, pc in (("A", pa), ("B", pb)):
            sel = sels[name]
            result["peers"][name] = {
                "relayed": sel["local"],
                "selected_pair": {k: v for k, v in sel.items() if k != "pair"},
                "inbound_rtp": await inbound(pc),
                "outbound_ssrcs": out_ssrcs[name],
                "candidate_pair": pair_stats(sel),
            }
        result["impaired_ssrcs"] = sorted(IMPAIR.ssrcs)
        result["sender_dropped"] = {str(k): v for k, v in IMPAIR.dropped.items()}
        result["sender_sent"] = {
            str(k): n - IMPAIR.dropped.get(k, 0) for k, n in IMPAIR.seen.items()
        }
        print(json.dumps(result), flush=True)
        try:
            await asyncio.wait_for(hold.wait(), args.hold)
        except asyncio.TimeoutError:
            pass
        return result, 0
    finally:
        for c in consumers:
            c.cancel()
        for pc in (pa, pb):
            try:
                await asyncio.wait_for(pc.close(), 10)
            except Exception as exc:  # noqa: BLE001 (a hung close must not hang the test)
                print("closing a peer connection: %r" % exc, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True, help="TURN server HOST:PORT (UDP)")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds of media")
    ap.add_argument("--quiet", type=float, default=1.5, help="seconds paused before stats")
    ap.add_argument("--loss", type=float, default=0.0, help="fraction of A's audio RTP dropped")
    ap.add_argument("--warmup", type=int, default=50, help="packets never dropped at start")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds to connect")
    ap.add_argument("--api", help="ops API base URL: also take a live snapshot mid-call")
    ap.add_argument("--hold", type=float, default=30.0, help="max seconds to hold after stats")
    ap.add_argument("--b-netns", help="run B in this network namespace, host candidates only")
    args = ap.parse_args()
    result, rc = asyncio.run(run(args))
    if rc != 0:
        print(json.dumps(result), flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
