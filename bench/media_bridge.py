"""Cost of bridged calls, browser (SRTP) <-> carrier, through the media worker's packet path and
through stock aiortc's track pipeline, in the same run.

Run: ``python bench/media_bridge.py [--calls 10,50,100] [--modes passthrough,transcoding,aiortc]
[--aiortc-max 20] [--seconds 5] [--loop uvloop] [--record]``.
Prints figures; asserts nothing. Everything stays on 127.0.0.1 and every run is bounded in time and
packets (``--seconds`` of 50 packets/s per direction per call).

Modes (the worker side runs in this process; the load generator is a second process, this script
with ``--generator``, whose CPU is not counted):

- ``passthrough``: one :class:`WebRtcMux` and N ``webrtc-rtp`` :class:`Bridge` objects as the service
  builds them, minus the bus, the browser offering PCMU: SRTP terminated, RTP relayed.
- ``transcoding``: the same with a browser offering only Opus (as Chromium sends it: 48 kHz, 20 ms):
  the bridge decodes Opus to G.711 and encodes the carrier's G.711 to Opus on its packet path.
- ``aiortc``: the baseline, as a user of stock aiortc builds the same call: per call two
  ``RTCPeerConnection`` objects (one towards the browser restricted to Opus, one towards the
  carrier restricted to PCMU: aiortc has no plain RTP, so that leg is SRTP too) relaying each
  other's received track (decode, re-encode, aiortc's threads). The generator's far ends are
  ICE-lite endpoints of ours answering aiortc's offers; aioice, which skips loopback addresses,
  is told to gather 127.0.0.1 only. Above ``--aiortc-max`` calls it is not run (stock aiortc tops
  out at 20-25 calls per process).

In the first two modes the SRTP keys of each browser leg are set directly instead of a DTLS
handshake (the handshake is not on the packet path); per call the generator has one UDP socket
playing the browser and one the carrier, each sending a 20 ms packet every 20 ms.

Every stream plays a cycle of 1 s: 200 ms of silence, then a tone (440 Hz from the browser, 1 kHz
from the carrier). The added latency is taken at each onset of the tone: from the send time of the
packet where it starts to the arrival of the first loud packet on the other side, decoded, so it
counts the same in all modes (codec delay and aiortc's jitter buffer included).

With ``--record`` every passthrough call is recorded as ``CreateSession.record`` asks: both legs
forked into chunks and published to a JetStream on a nats-server this script starts (its store in a
temporary directory; its CPU is not counted, the publishing task's is), and the row adds the chunks
published and dropped.

Per N and mode it prints: CPU ms per second per call of this process (user+system over the blast,
all threads, divided by seconds and calls), the loss per direction, and the added latency p50/p99;
then, per N, how many times the aiortc baseline costs each of our modes. Each row also says where a
loss came from: datagrams the kernel dropped on the worker's sockets, the share of the time the
worker's loop waited for a CPU (a shared machine's other processes), and whether the generator kept
its ticks. Compare modes within one run: on a shared machine the absolute figures move with its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from services.media.bridge import Bridge
from services.media.chunk_outbox import ChunkOutbox
from services.media.g711 import decoding_table, encoding_table
from services.media.opus import OpusDecoder, OpusEncoder
from services.media.ports import PortRange
from services.media.recording_fork import RecordingFork
from services.media.rtp import payload_bounds
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
PAYLOAD = 160
MODES = ("passthrough", "transcoding", "aiortc")
OPUS_PT = 111
#: Packets per tone cycle (1 s) and how many of them are silent: one onset a second per stream.
CYCLE = 50
SILENT = 10
#: RMS above which a decoded packet is the tone, below which it is the silence.
LOUD = 1000.0
WARMUP = 0.5
#: After the last packet sent, how long what is still on its way is waited for.
DRAIN = 0.5


def _browser_offer(opus_only: bool = False) -> str:
    certificate = DtlsCertificate.generate()
    return "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            f"m=audio 9 UDP/TLS/RTP/SAVPF {'111 110' if opus_only else '0 101'}",
            "c=IN IP4 0.0.0.0",
            f"a=ice-ufrag:{secrets.token_hex(4)}",
            f"a=ice-pwd:{secrets.token_hex(12)}",
            f"a=fingerprint:{certificate.fingerprint}",
            "a=setup:actpass",
            "a=mid:0",
            "a=sendrecv",
            "a=rtcp-mux",
            *(
                ("a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1")
                if opus_only
                else ("a=rtpmap:0 PCMU/8000",)
            ),
            f"a=rtpmap:{'110 telephone-event/48000' if opus_only else '101 telephone-event/8000'}",
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


def _tone(frequency: float, rate: int, packet: int) -> npt.NDArray[np.int16]:
    """One cycle's samples: silence, then the tone."""
    n = np.arange(CYCLE * packet)
    samples = (8000 * np.sin(2 * np.pi * frequency * n / rate)).astype(np.int16)
    samples[: SILENT * packet] = 0
    return samples


def pcmu_cycle(frequency: float) -> list[bytes]:
    codes = encoding_table("PCMU")[_tone(frequency, 8000, PAYLOAD).view(np.uint16)]
    return [codes[i * PAYLOAD : (i + 1) * PAYLOAD].tobytes() for i in range(CYCLE)]


def opus_cycle(frequency: float) -> list[bytes]:
    """A cycle as a browser sends it: 48 kHz, 20 ms frames (the second pass: the encoder is warm)."""
    encoder = OpusEncoder(48000, complexity=9)
    samples = _tone(frequency, 48000, 960)
    frames = [samples[i * 960 : (i + 1) * 960].tobytes() for i in range(CYCLE)]
    for frame in frames:
        encoder.encode(frame)
    return [encoder.encode(frame) for frame in frames]


class Probe:
    """One direction of one call: its send times of the tone's onsets, what arrived, and when the
    onset was heard."""

    __slots__ = ("decode", "onsets", "received", "sent", "silent_run")

    def __init__(self, decode: Callable[[bytes], npt.NDArray[np.int16]]) -> None:
        self.decode = decode
        self.onsets: deque[float] = deque(maxlen=4)
        self.silent_run = 0
        self.sent = 0
        self.received = 0

    def sending(self, index: int, now: float, counting: bool) -> None:
        # Loss counts every packet (the run ends with a drain longer than any path's delay);
        # latency only once the warm-up is over.
        self.sent += 1
        if counting and index % CYCLE == SILENT:
            self.onsets.append(now)

    def arrived(self, payload: bytes, now: float, counting: bool, latencies: list[float]) -> None:
        self.received += 1
        samples = self.decode(payload).astype(np.float64)
        loud = samples.size > 0 and float(np.sqrt(np.mean(samples * samples))) > LOUD
        if loud and self.silent_run >= 3 and counting and self.onsets:
            latency = now - self.onsets[-1]
            if 0 <= latency < 0.9:  # under a cycle: the onset it answers is the last one sent
                latencies.append(latency * 1000)
        self.silent_run = 0 if loud else self.silent_run + 1


def pcmu_decoder() -> Callable[[bytes], npt.NDArray[np.int16]]:
    table = decoding_table("PCMU")
    return lambda payload: table[np.frombuffer(payload, np.uint8)]


def opus_decoder() -> Callable[[bytes], npt.NDArray[np.int16]]:
    decoder = OpusDecoder(8000)
    return lambda payload: np.frombuffer(decoder.decode(payload), np.int16)


def _report(probes: dict[str, list[Probe]], latencies: list[float]) -> dict[str, Any]:
    return {
        "sent": {d: sum(p.sent for p in ps) for d, ps in probes.items()},
        "received": {d: sum(p.received for p in ps) for d, ps in probes.items()},
        "onsets": len(latencies),
        "p50_ms": _percentile(latencies, 0.5),
        "p99_ms": _percentile(latencies, 0.99),
    }


def generator() -> None:
    setup = json.loads(sys.stdin.readline())
    calls = setup["calls"]
    opus = setup["mode"] == "transcoding"
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
    browser_cycle = opus_cycle(440) if opus else pcmu_cycle(440)
    browser_pt = OPUS_PT if opus else 0
    carrier_cycle = pcmu_cycle(1000)
    probes = {
        "to_carrier": [Probe(pcmu_decoder()) for _ in range(calls)],
        "to_browser": [Probe(opus_decoder() if opus else pcmu_decoder()) for _ in range(calls)],
    }
    kind_of = {s.fileno(): (True, i) for i, s in enumerate(browsers)}
    kind_of.update({s.fileno(): (False, i) for i, s in enumerate(carriers)})
    poller = select.epoll()
    for sock in browsers + carriers:
        poller.register(sock.fileno(), select.EPOLLIN)
    socks = {s.fileno(): s for s in browsers + carriers}
    state = [[secrets.randbits(16), secrets.randbits(32), secrets.randbits(32)] for _ in range(2 * calls)]
    latencies: list[float] = []
    unsent = [0, 0]
    seconds = plan["seconds"]
    start = time.perf_counter()
    tick = 0
    while True:
        now = time.perf_counter()
        if now - start >= seconds + DRAIN:
            break
        counting = now - start >= WARMUP
        if now - start < seconds and now >= start + tick * 0.02:
            for index in range(calls):
                for side, sock in ((0, browsers[index]), (1, carriers[index])):
                    stream = state[2 * index + side]
                    stream[0] = (stream[0] + 1) & 0xFFFF
                    stream[1] = (stream[1] + (960 if side == 0 and opus else PAYLOAD)) & 0xFFFFFFFF
                    if side == 0:
                        payload, payload_type = browser_cycle[tick % CYCLE], browser_pt
                    else:
                        payload, payload_type = carrier_cycle[tick % CYCLE], 0
                    packet = _RTP.pack(0x80, payload_type, stream[0], stream[1], stream[2]) + payload
                    if side == 0:
                        packet = srtp[index].protect(packet)
                    try:
                        sock.send(packet)
                    except BlockingIOError:
                        unsent[side] += 1  # the generator's own socket was full: not the bridge's loss
                        continue
                    probes["to_carrier" if side == 0 else "to_browser"][index].sending(tick, now, counting)
            tick += 1
        timeout = max(0.0, start + tick * 0.02 - time.perf_counter())
        for fd, _ in poller.poll(min(timeout, 0.02)):
            sock = socks[fd]
            to_browser, index = kind_of[fd]
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                if to_browser:
                    if data[1] >= 192:
                        continue  # SRTCP would go here; the bridge sends none to browsers
                    try:
                        data = srtp[index].unprotect(data)
                    except Exception:
                        continue
                elif len(data) < 12 or data[1] >= 192:
                    continue  # RTCP reports arrive on the RTCP port, not here
                probe = probes["to_browser" if to_browser else "to_carrier"][index]
                probe.arrived(data[12:], time.perf_counter(), counting, latencies)
    late = max(0.0, time.perf_counter() - start - seconds - DRAIN)
    report = {**_report(probes, latencies), "unsent": sum(unsent), "ticks": tick, "late_s": round(late, 2)}
    print(json.dumps(report), flush=True)


async def aiortc_generator() -> None:
    """The far ends of the aiortc baseline: per call a browser and a carrier, each an ICE-lite
    endpoint of ours (one mux, one port) answering an offer of the worker's aiortc."""
    import uvloop

    uvloop.install()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    offers = json.loads(await reader.readline())["offers"]
    calls = len(offers) // 2
    mux = await WebRtcMux.listen(HOST, 0)
    sessions: list[WebRtcSession] = []
    answers: list[str] = []
    for offer in offers:
        session = mux.create_session()
        answers.append(session.accept_offer(SessionDescription.parse(offer)).serialize())
        sessions.append(session)
    connected = asyncio.Event()

    def changed(state: WebRtcState) -> None:
        if all(session.state is WebRtcState.CONNECTED for session in sessions):
            connected.set()

    for session in sessions:
        session.on_state_change = changed
    print(json.dumps({"answers": answers}), flush=True)
    await asyncio.wait_for(connected.wait(), 60)
    browser_cycle, carrier_cycle = opus_cycle(440), pcmu_cycle(1000)
    probes = {
        "to_carrier": [Probe(pcmu_decoder()) for _ in range(calls)],
        "to_browser": [Probe(opus_decoder()) for _ in range(calls)],
    }
    latencies: list[float] = []
    counting = False
    for index in range(calls):
        for side, direction in ((0, "to_browser"), (1, "to_carrier")):
            probe = probes[direction][index]

            def arrived(packet: bytes, probe: Probe = probe) -> None:
                bounds = payload_bounds(packet)
                if bounds is not None:
                    probe.arrived(packet[bounds[0] : bounds[1]], time.perf_counter(), counting, latencies)

            sessions[2 * index + side].on_rtp = arrived
    print(json.dumps({"connected": True}), flush=True)
    seconds = json.loads(await reader.readline())["seconds"]
    state = [[secrets.randbits(16), secrets.randbits(32), secrets.randbits(32)] for _ in range(2 * calls)]
    start = time.perf_counter()
    for tick in range(int(seconds / 0.02)):
        now = time.perf_counter()
        counting = now - start >= WARMUP
        for index in range(calls):
            for side, direction in ((0, "to_carrier"), (1, "to_browser")):
                session = sessions[2 * index + side]
                stream = state[2 * index + side]
                stream[0] = (stream[0] + 1) & 0xFFFF
                stream[1] = (stream[1] + (960 if side == 0 else PAYLOAD)) & 0xFFFFFFFF
                payload = browser_cycle[tick % CYCLE] if side == 0 else carrier_cycle[tick % CYCLE]
                payload_type = session.codecs[0].payload_type
                packet = _RTP.pack(0x80, payload_type, stream[0], stream[1], stream[2]) + payload
                if session.send_rtp(packet):
                    probes[direction][index].sending(tick, now, counting)
        await asyncio.sleep(max(0.0, start + (tick + 1) * 0.02 - time.perf_counter()))
    await asyncio.sleep(DRAIN)
    print(json.dumps(_report(probes, latencies)), flush=True)
    mux.close()


# -- the worker side (this process)


def _socket_drops() -> int:
    """Datagrams the kernel dropped on this process's UDP sockets (receive buffer full: the worker
    did not read in time), from /proc/net/udp's per-socket counter; 0 where there is no /proc."""
    try:
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/self/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        drops = 0
        with open("/proc/net/udp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[9] in inodes:
                    drops += int(fields[-1])
        return drops
    except OSError:
        return 0


def _runqueue_wait() -> float:
    """Seconds this process's main thread (the event loop) waited for a CPU while runnable
    (/proc's schedstat): on a shared machine, time the worker could not read its sockets."""
    try:
        with open("/proc/self/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _row(mode: str, calls: int, cpu: float, wall: float, report: dict[str, Any]) -> dict[str, Any]:
    loss = {d: 1 - report["received"][d] / max(1, report["sent"][d]) for d in report["sent"]}
    return {
        "mode": mode,
        "calls": calls,
        "cpu_ms_per_s_per_call": round(1000 * cpu / wall / calls, 3),
        "loss_to_carrier_pct": round(100 * loss["to_carrier"], 3),
        "loss_to_browser_pct": round(100 * loss["to_browser"], 3),
        "latency_p50_ms": round(report["p50_ms"], 3),
        "latency_p99_ms": round(report["p99_ms"], 3),
        "onsets": report["onsets"],
        "packets": sum(report["received"].values()),
        # Where loss came from: the worker's sockets overflowing (it did not read in time), the share
        # of the time its loop waited for a CPU (other processes on a shared machine), and the
        # generator's health (packets its own sockets refused, ticks it kept).
        "worker_socket_drops": report["worker_drops"],
        "worker_cpu_wait_pct": round(100 * report["worker_waited"], 1),
        "generator_unsent": report.get("unsent", 0),
        "generator_ticks": report.get("ticks"),
    }


async def _generator_process(flag: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        flag,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


async def run(
    calls: int, seconds: float, low_port: int, bus: Bus | None, mode: str = "passthrough"
) -> dict[str, Any]:
    outbox = ChunkOutbox() if bus is not None else None
    publisher = asyncio.ensure_future(outbox.run(bus)) if outbox is not None and bus is not None else None
    mux = await WebRtcMux.listen(HOST, 0)
    ports = PortRange(low_port, low_port + 4 * calls + 10)
    process = await _generator_process("--generator")
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write((json.dumps({"calls": calls, "mode": mode}) + "\n").encode())
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
            agent_offer=_browser_offer(opus_only=mode == "transcoding"),
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
    cpu, wall, drops, waited = _cpu(), time.perf_counter(), _socket_drops(), _runqueue_wait()
    report_line = await asyncio.wait_for(process.stdout.readline(), seconds + 30)
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    report = {
        **json.loads(report_line),
        "worker_drops": _socket_drops() - drops,
        "worker_waited": (_runqueue_wait() - waited) / wall,
    }
    await process.wait()
    for bridge in bridges:
        bridge.close()
    mux.close()
    recording: dict[str, Any] = {}
    if outbox is not None and bus is not None and publisher is not None:
        await outbox.flush(bus, timeout=10)
        publisher.cancel()
        recording = {"chunks_published": outbox.published, "chunks_dropped": outbox.dropped}
    return {**_row(mode, calls, cpu, wall, report), **recording}


async def run_aiortc(calls: int, seconds: float) -> dict[str, Any]:
    """The baseline: stock aiortc's track pipeline bridging the same calls (see the module's text)."""
    import aioice.ice
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamTrack

    # aioice leaves 127.0.0.1 out of its host candidates; this bench must stay on loopback.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [HOST]
    capabilities = RTCRtpSender.getCapabilities("audio").codecs
    opus = [codec for codec in capabilities if codec.mimeType.lower() == "audio/opus"]
    pcmu = [codec for codec in capabilities if codec.mimeType.lower() == "audio/pcmu"]
    process = await _generator_process("--generator-aiortc")
    assert process.stdin is not None
    assert process.stdout is not None
    connections: list[RTCPeerConnection] = []
    offers: list[str] = []
    for _ in range(calls):
        legs = []
        for codecs in (opus, pcmu):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            transceiver = pc.addTransceiver("audio", direction="sendrecv")
            transceiver.setCodecPreferences(codecs)
            legs.append((pc, transceiver))
        # Each leg's received track is sent on the other leg as it is: aiortc decodes and re-encodes.
        for (pc, _), (_, other) in ((legs[0], legs[1]), (legs[1], legs[0])):

            def relay(track: MediaStreamTrack, other: Any = other) -> None:
                other.sender.replaceTrack(track)

            pc.on("track", relay)
        for pc, _ in legs:
            await pc.setLocalDescription(await pc.createOffer())
            offers.append(pc.localDescription.sdp)
            connections.append(pc)
    process.stdin.write((json.dumps({"offers": offers}) + "\n").encode())
    await process.stdin.drain()
    answers = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))["answers"]
    for pc, answer in zip(connections, answers, strict=True):
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    json.loads(await asyncio.wait_for(process.stdout.readline(), 90))  # every leg connected
    process.stdin.write((json.dumps({"seconds": seconds}) + "\n").encode())
    await process.stdin.drain()
    await asyncio.sleep(WARMUP)
    cpu, wall, drops, waited = _cpu(), time.perf_counter(), _socket_drops(), _runqueue_wait()
    report_line = await asyncio.wait_for(process.stdout.readline(), seconds + 30)
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    report = {
        **json.loads(report_line),
        "worker_drops": _socket_drops() - drops,
        "worker_waited": (_runqueue_wait() - waited) / wall,
    }
    await process.wait()
    for pc in connections:
        await pc.close()
    return _row("aiortc", calls, cpu, wall, report)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", default="10,50,100")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--aiortc-max", type=int, default=20, help="largest N the aiortc baseline runs at")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--record", action="store_true", help="record every call (needs nats-server)")
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--generator-aiortc", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.generator:
        generator()
        return
    if arguments.generator_aiortc:
        asyncio.run(aiortc_generator())
        return
    modes = [mode for mode in arguments.modes.split(",") if mode]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"--modes: unknown {', '.join(sorted(unknown))} (known: {', '.join(MODES)})")
    if arguments.loop == "uvloop":
        import uvloop

        uvloop.install()
    configure_logging("bench", json=False, level="WARNING")
    recorded = ", passthrough recorded (chunks to JetStream)" if arguments.record else ""
    print(
        f"{', '.join(modes)}{recorded}, {arguments.loop}, {arguments.seconds:g}s per run, "
        "50 packets/s each way per call"
    )
    with tempfile.TemporaryDirectory() as store:
        server = _nats_server(store) if arguments.record else None
        try:
            for index, calls in enumerate(int(n) for n in arguments.calls.split(",")):
                rows: dict[str, dict[str, Any]] = {}
                for mode in modes:
                    if mode == "aiortc":
                        if calls > arguments.aiortc_max:
                            print(json.dumps({"mode": mode, "calls": calls, "skipped": "above --aiortc-max"}))
                            continue
                        row = asyncio.run(run_aiortc(calls, arguments.seconds))
                    else:
                        low_port = 30000 + 1000 * index + (500 if mode == "transcoding" else 0)
                        bus_server = server if mode == "passthrough" else None
                        row = asyncio.run(_run_with_bus(calls, arguments.seconds, low_port, bus_server, mode))
                    rows[mode] = row
                    print(json.dumps(row), flush=True)
                baseline = rows.get("aiortc")
                if baseline is not None:
                    ratios = {
                        f"aiortc_over_{mode}": round(
                            baseline["cpu_ms_per_s_per_call"] / max(1e-9, row["cpu_ms_per_s_per_call"]), 1
                        )
                        for mode, row in rows.items()
                        if mode != "aiortc"
                    }
                    print(json.dumps({"calls": calls, "cpu_ratio": ratios}), flush=True)
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
    calls: int,
    seconds: float,
    low_port: int,
    server: tuple[subprocess.Popen[bytes], str] | None,
    mode: str = "passthrough",
) -> dict[str, Any]:
    if server is None:
        return await run(calls, seconds, low_port, None, mode)
    bus = await Bus.connect(server[1], name="bench-media", timeout=10)
    try:
        await bus.ensure_streams()
        return await run(calls, seconds, low_port, bus, mode)
    finally:
        await bus.close()


if __name__ == "__main__":
    main()
