"""Cost of bridged calls through the media worker's packet path: browser (SRTP) <-> carrier (plain RTP).

Run: ``python bench/media_bridge.py [--calls 10,50,100] [--seconds 5] [--loop uvloop] [--record]``.
Prints figures; asserts nothing. Everything stays on 127.0.0.1 and every run is bounded in time and
packets (``--seconds`` of 50 packets/s per direction per call).

The worker side runs in this process: one :class:`WebRtcMux` and N ``webrtc-rtp`` :class:`Bridge`
objects as the service builds them (PCMU both legs: passthrough), minus the bus. The SRTP keys of
each browser leg are set directly instead of a DTLS handshake (the handshake is not on the packet
path). The load generator is a second process (this script with ``--generator``): per call one UDP
socket playing the browser (SRTP) and one playing the carrier (plain RTP), each sending a 20 ms PCMU
packet every 20 ms that carries its send time, and reading what the bridge delivers on the other side.

With ``--record`` every call is recorded as ``CreateSession.record`` asks: both legs forked into
chunks and published to a JetStream on a nats-server this script starts (its store in a temporary
directory; its CPU is not counted, the publishing task's is), and the row adds the chunks published
and dropped.

Per N it prints: CPU ms per second per call of this process (user+system over the blast, divided by
seconds and calls: the loop, recvfrom, SRTP, the relay, sendto, RTCP timers), the loss per
direction, and the added latency p50/p99 (send to receive across the bridge, both directions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

from services.media.bridge import Bridge
from services.media.chunk_outbox import ChunkOutbox
from services.media.ports import PortRange
from services.media.recording_fork import RecordingFork
from services.media.rtp_leg import RtpLeg
from services.media.webrtc import (
    DtlsCertificate,
    SrtpContext,
    SrtpKeys,
    WebRtcMux,
    WebRtcSession,
    WebRtcState,
)
from shared.bus import Bus
from shared.events import LegKind
from shared.logging import configure_logging
from shared.media import CreateSession, SessionKind
from shared.sdp import SessionDescription
from shared.supervisor import free_port, nats_server_binary, wait_for_port

HOST = "127.0.0.1"
_RTP = struct.Struct("!BBHII")
_SENT = struct.Struct("!q")
PAYLOAD = 160


def _browser_offer() -> str:
    certificate = DtlsCertificate.generate()
    return "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 0 101",
            "c=IN IP4 0.0.0.0",
            f"a=ice-ufrag:{secrets.token_hex(4)}",
            f"a=ice-pwd:{secrets.token_hex(12)}",
            f"a=fingerprint:{certificate.fingerprint}",
            "a=setup:actpass",
            "a=mid:0",
            "a=sendrecv",
            "a=rtcp-mux",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "",
        ]
    )


def _carrier_answer(port: int) -> str:
    return "\r\n".join(
        [
            "v=0",
            "o=- 2 1 IN IP4 127.0.0.1",
            "s=-",
            "c=IN IP4 127.0.0.1",
            "t=0 0",
            f"m=audio {port} RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=sendrecv",
            "",
        ]
    )


# -- the generator (a second process)


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def generator() -> None:
    setup = json.loads(sys.stdin.readline())
    calls = setup["calls"]
    browsers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(calls)]
    carriers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(calls)]
    for sock in browsers + carriers:
        sock.bind((HOST, 0))
        sock.setblocking(False)
    print(
        json.dumps(
            {
                "browsers": [s.getsockname()[1] for s in browsers],
                "carriers": [s.getsockname()[1] for s in carriers],
            }
        ),
        flush=True,
    )
    plan = json.loads(sys.stdin.readline())
    srtp = [SrtpContext(SrtpKeys(bytes.fromhex(k["in"]), bytes.fromhex(k["out"]))) for k in plan["keys"]]
    for index in range(calls):
        browsers[index].connect((HOST, plan["mux_port"]))
        carriers[index].connect((HOST, plan["rtp_ports"][index]))
    kind_of = {s.fileno(): ("to_browser", i) for i, s in enumerate(browsers)}
    kind_of.update({s.fileno(): ("to_carrier", i) for i, s in enumerate(carriers)})
    poller = select.epoll()
    for sock in browsers + carriers:
        poller.register(sock.fileno(), select.EPOLLIN)
    socks = {s.fileno(): s for s in browsers + carriers}
    state = [[secrets.randbits(16), secrets.randbits(32), secrets.randbits(32)] for _ in range(2 * calls)]
    sent = {"to_browser": 0, "to_carrier": 0}
    received = {"to_browser": 0, "to_carrier": 0}
    latencies: list[float] = []
    seconds = plan["seconds"]
    start = time.perf_counter()
    tick = 0
    warmup = 0.5
    while True:
        now = time.perf_counter()
        if now - start >= seconds + 0.3:
            break
        if now - start < seconds and now >= start + tick * 0.02:
            counting = now - start >= warmup
            for index in range(calls):
                for side, sock in ((0, browsers[index]), (1, carriers[index])):
                    stream = state[2 * index + side]
                    stream[0] = (stream[0] + 1) & 0xFFFF
                    stream[1] = (stream[1] + PAYLOAD) & 0xFFFFFFFF
                    payload = _SENT.pack(time.perf_counter_ns() if counting else 0) + b"\xff" * (PAYLOAD - 8)
                    packet = _RTP.pack(0x80, 0, stream[0], stream[1], stream[2]) + payload
                    if side == 0:
                        packet = srtp[index].protect(packet)
                    try:
                        sock.send(packet)
                    except BlockingIOError:
                        continue
                    if counting:
                        sent["to_carrier" if side == 0 else "to_browser"] += 1
            tick += 1
        timeout = max(0.0, start + tick * 0.02 - time.perf_counter())
        for fd, _ in poller.poll(min(timeout, 0.02)):
            sock = socks[fd]
            direction, index = kind_of[fd]
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                if direction == "to_browser":
                    if data[1] >= 192:
                        continue  # SRTCP would go here; the bridge sends none to browsers
                    try:
                        data = srtp[index].unprotect(data)
                    except Exception:
                        continue
                elif len(data) < 12 or data[1] >= 192:
                    continue  # RTCP reports arrive on the RTCP port, not here
                (stamp,) = _SENT.unpack_from(data, 12)
                if stamp:
                    received[direction] += 1
                    latencies.append((time.perf_counter_ns() - stamp) / 1e6)
    print(
        json.dumps(
            {
                "sent": sent,
                "received": received,
                "p50_ms": _percentile(latencies, 0.5),
                "p99_ms": _percentile(latencies, 0.99),
            }
        ),
        flush=True,
    )


# -- the worker side (this process)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(calls: int, seconds: float, low_port: int, bus: Bus | None) -> dict[str, Any]:
    outbox = ChunkOutbox() if bus is not None else None
    publisher = asyncio.ensure_future(outbox.run(bus)) if outbox is not None and bus is not None else None
    mux = await WebRtcMux.listen(HOST, 0)
    ports = PortRange(low_port, low_port + 4 * calls + 10)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--generator",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write((json.dumps({"calls": calls}) + "\n").encode())
    await process.stdin.drain()
    sockets = json.loads(await process.stdout.readline())
    bridges: list[Bridge] = []
    keys: list[dict[str, str]] = []
    rtp_ports: list[int] = []
    for index in range(calls):
        call_id = f"c{low_port}x{index}"
        request = CreateSession(
            tenant_id="bench",
            call_id=call_id,
            kind=SessionKind.WEBRTC_RTP,
            agent_offer=_browser_offer(),
            record=outbox is not None,
        )
        bridge = Bridge(
            f"s{index}",
            request,
            mux=mux,
            ports=ports,
            rtp_host=HOST,
            advertised_address=HOST,
            on_digit=lambda leg, digit: None,
            fork=RecordingFork("bench", call_id, outbox) if outbox is not None else None,
        )
        await bridge.open()
        carrier = bridge.legs[LegKind.CUSTOMER].media
        assert isinstance(carrier, RtpLeg)
        carrier.accept_answer(SessionDescription.parse(_carrier_answer(sockets["carriers"][index])))
        bridge._wire()
        session = bridge.legs[LegKind.AGENT].media
        assert isinstance(session, WebRtcSession)
        ours, theirs = secrets.token_bytes(30), secrets.token_bytes(30)
        # Keys set directly (the DTLS handshake is not what this measures): RFC 5764 4.2's split.
        session._srtp = SrtpContext(SrtpKeys(inbound=theirs, outbound=ours))
        address = (HOST, sockets["browsers"][index])
        mux._map(address, session)
        session.remote_address = address
        session.state = WebRtcState.CONNECTED
        keys.append({"in": ours.hex(), "out": theirs.hex()})
        rtp_ports.append(carrier.port)
        bridges.append(bridge)
    process.stdin.write(
        (
            json.dumps({"keys": keys, "mux_port": mux.port, "rtp_ports": rtp_ports, "seconds": seconds})
            + "\n"
        ).encode()
    )
    await process.stdin.drain()
    await asyncio.sleep(0.5)  # the generator's warm-up, not measured
    cpu, wall = _cpu(), time.perf_counter()
    report_line = await asyncio.wait_for(process.stdout.readline(), seconds + 30)
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    await process.wait()
    report = json.loads(report_line)
    for bridge in bridges:
        bridge.close()
    mux.close()
    recording: dict[str, Any] = {}
    if outbox is not None and bus is not None and publisher is not None:
        await outbox.flush(bus, timeout=10)
        publisher.cancel()
        recording = {"chunks_published": outbox.published, "chunks_dropped": outbox.dropped}
    loss = {d: 1 - report["received"][d] / max(1, report["sent"][d]) for d in report["sent"]}
    return {
        **recording,
        "calls": calls,
        "cpu_ms_per_s_per_call": round(1000 * cpu / wall / calls, 3),
        "loss_to_carrier_pct": round(100 * loss["to_carrier"], 3),
        "loss_to_browser_pct": round(100 * loss["to_browser"], 3),
        "latency_p50_ms": round(report["p50_ms"], 3),
        "latency_p99_ms": round(report["p99_ms"], 3),
        "packets": sum(report["received"].values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", default="10,50,100")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--record", action="store_true", help="record every call (needs nats-server)")
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.generator:
        generator()
        return
    if arguments.loop == "uvloop":
        import uvloop

        uvloop.install()
    configure_logging("bench", json=False, level="WARNING")
    recorded = ", recorded (chunks to JetStream)" if arguments.record else ""
    print(
        f"passthrough PCMU{recorded}, {arguments.loop}, {arguments.seconds:g}s per run, "
        "50 packets/s each way per call"
    )
    with tempfile.TemporaryDirectory() as store:
        server = _nats_server(store) if arguments.record else None
        try:
            for index, calls in enumerate(int(n) for n in arguments.calls.split(",")):
                row = asyncio.run(_run_with_bus(calls, arguments.seconds, 30000 + 1000 * index, server))
                print(json.dumps(row), flush=True)
        finally:
            if server is not None:
                server[0].terminate()
                server[0].wait(10)


def _nats_server(store: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [str(nats_server_binary()), "-a", HOST, "-p", str(port), "-js", "-sd", store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not wait_for_port(port, 10):
        process.kill()
        raise SystemExit("nats-server did not start")
    return process, f"nats://{HOST}:{port}"


async def _run_with_bus(
    calls: int, seconds: float, low_port: int, server: tuple[subprocess.Popen[bytes], str] | None
) -> dict[str, Any]:
    if server is None:
        return await run(calls, seconds, low_port, None)
    bus = await Bus.connect(server[1], name="bench-media", timeout=10)
    try:
        await bus.ensure_streams()
        return await run(calls, seconds, low_port, bus)
    finally:
        await bus.close()


if __name__ == "__main__":
    main()
