"""Cost of the WebRTC packet path: SRTP in, unprotect, echo rewrite, protect, SRTP out, per packet.

Run: ``python bench/webrtc_packet_path.py [--rates 10000,30000] [--packets 50000] [--loops uvloop,asyncio]
[--repeat 1]``.
Prints figures; asserts nothing. On a shared machine the figures move with its load: compare rows of
one run (the floor row is there for that), not runs.

The server is our :class:`WebRtcMux` on 127.0.0.1 with one echo session, in this process. The
blaster is a second process (this script with ``--blaster``): it offers, runs the real connectivity
check and DTLS handshake against the mux, then sends PCMU-sized SRTP at a fixed rate and unprotects the
echoes (each carries its send time, for the round trip). Per rate and event loop it prints:

- CPU us/packet: this process's user+system CPU over the blast divided by the packets echoed: the
  whole cost per packet (the loop, recvfrom, the mux, SRTP both ways, the rewrite, sendto);
- handler p50/p99: ``datagram_received`` alone, timed per packet in a second blast of the same size;
- the loss and the round trip the blaster saw, and the packets per second it reached;
- the same blasts against a plain UDP echo (no SRTP, no rewrite) in the same loop: the floor of the
  loop and the two syscalls, so the difference is what the WebRTC path itself costs.

Everything stays on 127.0.0.1, and every blast is bounded in packets and in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import secrets
import select
import socket
import statistics
import struct
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, cast

from aioice import stun

from services.media.webrtc import (
    Address,
    DtlsCertificate,
    DtlsRole,
    DtlsState,
    DtlsTransport,
    RtpEcho,
    SrtpContext,
    SrtpKeys,
    WebRtcMux,
    generate_credentials,
)
from shared.sdp import SessionDescription

PEERS_FIGURE = "8-8.5 us per packet at 10-30k packets/s with uvloop (SRTP unprotect 1.3 us, protect 1.2 us)"
PAYLOAD = 160  # 20 ms of PCMU
_RTP = struct.Struct("!BBHII")
_SENT_AT = struct.Struct("!q")
Ask: TypeAlias = Callable[[dict[str, Any] | None], Awaitable[dict[str, Any]]]


# -- the blaster (a second process)


def _offer(certificate: DtlsCertificate, ufrag: str, pwd: str) -> str:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 0",
        "c=IN IP4 0.0.0.0",
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        f"a=fingerprint:{certificate.fingerprint}",
        "a=setup:actpass",
        "a=mid:0",
        "a=sendrecv",
        "a=rtcp-mux",
        "a=rtpmap:0 PCMU/8000",
    ]
    return "\r\n".join(lines) + "\r\n"


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _check(answer: SessionDescription, ufrag: str) -> bytes:
    """A nominating connectivity check of a controlling agent (RFC 8445 section 7.2.2)."""
    credentials = answer.ice_credentials_of(answer.media[0])
    assert credentials is not None
    check = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    check.attributes["USERNAME"] = f"{credentials.ufrag}:{ufrag}"
    check.attributes["PRIORITY"] = 1853824767
    check.attributes["ICE-CONTROLLING"] = 1
    check.attributes["USE-CANDIDATE"] = None
    check.add_message_integrity(credentials.pwd.encode())
    return bytes(check)


def _connect(
    sock: socket.socket, certificate: DtlsCertificate, answer: SessionDescription, ufrag: str
) -> SrtpContext:
    media = answer.media[0]
    sock.settimeout(2.0)
    sock.send(_check(answer, ufrag))
    response = stun.parse_message(sock.recv(2048))
    assert response.message_class == stun.Class.RESPONSE, response
    dtls = DtlsTransport(certificate, DtlsRole.CLIENT, answer.fingerprints_of(media))
    for datagram in dtls.start():
        sock.send(datagram)
    while dtls.state is DtlsState.CONNECTING:
        for datagram in dtls.receive(sock.recv(2048)):
            sock.send(datagram)
    assert dtls.keys is not None, dtls.reason
    return SrtpContext(dtls.keys)


class Plain:
    """No protection: the blaster's side of the plain UDP echo baseline."""

    def protect(self, packet: bytes) -> bytes:
        return packet

    def unprotect(self, packet: bytes) -> bytes:
        return packet


Protection = SrtpContext | Plain


def _blast(
    sock: socket.socket, srtp: Protection, rate: int, count: int, max_seconds: float
) -> dict[str, Any]:
    # A new stream per blast: libsrtp's replay check would refuse restarted sequence numbers.
    ssrc, sequence, timestamp = secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
    filler = b"\xd5" * (PAYLOAD - _SENT_AT.size)
    interval = 1.0 / rate
    rtts: list[int] = []
    sent = received = 0
    sock.setblocking(False)
    start = time.perf_counter()
    deadline = start + max_seconds
    due = start
    while sent < count:
        now = time.perf_counter()
        if now > deadline:
            break
        while sent < count and due <= now:
            sequence = (sequence + 1) & 0xFFFF
            timestamp = (timestamp + PAYLOAD) & 0xFFFFFFFF
            header = _RTP.pack(0x80, 0, sequence, timestamp, ssrc)
            packet = header + _SENT_AT.pack(time.perf_counter_ns()) + filler
            sock.send(srtp.protect(packet))
            sent += 1
            due += interval
        received += _drain(sock, srtp, rtts)
        pause = due - time.perf_counter()
        if pause > 0:
            # Wake for an echo or for the next packet due, whichever comes first: the round trip
            # measures the server, not our sleeping.
            select.select([sock], [], [], min(pause, 0.001))
    sending = time.perf_counter() - start
    settle = time.perf_counter() + 0.5
    while time.perf_counter() < settle and received < sent:
        select.select([sock], [], [], 0.01)
        received += _drain(sock, srtp, rtts)
    sock.setblocking(True)
    cuts = statistics.quantiles(rtts, n=100, method="inclusive") if len(rtts) > 1 else [0.0] * 99
    return {
        "sent": sent,
        "received": received,
        "seconds": sending,
        "rtt_p50_us": cuts[49] / 1000,
        "rtt_p99_us": cuts[98] / 1000,
    }


def _drain(sock: socket.socket, srtp: Protection, rtts: list[int]) -> int:
    count = 0
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return count
        packet = srtp.unprotect(data)
        rtts.append(time.perf_counter_ns() - _SENT_AT.unpack_from(packet, 12)[0])
        count += 1


def blaster() -> None:
    certificate = DtlsCertificate.generate()
    credentials = generate_credentials()
    _say({"offer": _offer(certificate, credentials.ufrag, credentials.pwd)})
    setup = json.loads(sys.stdin.readline())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.connect(("127.0.0.1", setup["port"]))
    srtp: Protection = Plain()
    if "answer" in setup:
        srtp = _connect(sock, certificate, SessionDescription.parse(setup["answer"]), credentials.ufrag)
    _say({"ready": True})
    for line in sys.stdin:
        command = json.loads(line)
        if "blast" not in command:
            break
        _say(_blast(sock, srtp, command["blast"], command["count"], command["max_seconds"]))


# -- the server (this process)


class TimedMux(WebRtcMux):
    """The mux with ``datagram_received`` timed per call while :attr:`timing` is on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timing = False
        self.samples: list[int] = []

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if not self.timing:
            super().datagram_received(data, addr)
            return
        start = time.perf_counter_ns()
        super().datagram_received(data, addr)
        self.samples.append(time.perf_counter_ns() - start)


class UdpEcho(asyncio.DatagramProtocol):
    """The floor under any packet path: each datagram sent back as it came (no SRTP, no rewrite)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.echoed = 0
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)
        self.echoed += 1


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _start_blaster(max_seconds: float) -> tuple[asyncio.subprocess.Process, Ask]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--blaster", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None
    assert stdout is not None

    async def ask(message: dict[str, Any] | None) -> dict[str, Any]:
        if message is not None:
            stdin.write((json.dumps(message) + "\n").encode())
            await stdin.drain()
        line = await asyncio.wait_for(stdout.readline(), max_seconds + 30)
        reply: dict[str, Any] = json.loads(line)
        return reply

    return process, ask


async def _stop_blaster(process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    if process.returncode is None and not process.stdin.is_closing():
        process.stdin.write(b"{}\n")
        process.stdin.close()
    await asyncio.wait_for(process.wait(), 10)


async def _measure(
    ask: Ask, rate: int, count: int, max_seconds: float, echoed: Callable[[], int]
) -> dict[str, Any]:
    echoed_before, cpu_before = echoed(), _cpu()
    row = await ask({"blast": rate, "count": count, "max_seconds": max_seconds})
    row["rate"] = rate
    row["echoed"] = echoed() - echoed_before
    row["cpu_us"] = (_cpu() - cpu_before) / max(1, row["echoed"]) * 1e6
    return row


async def serve_plain(rates: list[int], count: int, max_seconds: float) -> list[dict[str, Any]]:
    _, echo = await asyncio.get_running_loop().create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
    process, ask = await _start_blaster(max_seconds)
    try:
        await ask(None)
        await ask({"port": echo.port})
        return [await _measure(ask, rate, count, max_seconds, lambda: echo.echoed) for rate in rates]
    finally:
        await _stop_blaster(process)
        if echo.transport is not None:
            echo.transport.close()


async def serve(rates: list[int], count: int, max_seconds: float) -> list[dict[str, Any]]:
    mux = await TimedMux.listen("127.0.0.1", 0)
    process, ask = await _start_blaster(max_seconds)
    rows: list[dict[str, Any]] = []
    try:
        offer = await ask(None)
        session = mux.create_session()
        RtpEcho(session)
        answer = session.accept_offer(SessionDescription.parse(offer["offer"]))
        await ask({"answer": answer.serialize(), "port": mux.port})
        for rate in rates:
            row = await _measure(ask, rate, count, max_seconds, lambda: session.counters.rtp_sent)
            mux.timing, mux.samples = True, []
            await ask({"blast": rate, "count": count, "max_seconds": max_seconds})
            mux.timing = False
            cuts = statistics.quantiles(mux.samples, n=100, method="inclusive")
            row["handler_p50_us"], row["handler_p99_us"] = cuts[49] / 1000, cuts[98] / 1000
            rows.append(row)
        assert mux.counters.errors == 0, f"the mux caught {mux.counters.errors} exceptions"
    finally:
        await _stop_blaster(process)
        mux.close()
    return rows


def srtp_alone(iterations: int = 20000) -> tuple[float, float]:
    """Microseconds for one unprotect and one protect of a PCMU packet, libsrtp alone."""
    keys = SrtpKeys.from_keying_material(bytes(range(60)), server=True)
    sender, receiver = SrtpContext(SrtpKeys(keys.outbound, keys.inbound)), SrtpContext(keys)
    packets = [
        sender.protect(_RTP.pack(0x80, 0, n & 0xFFFF, n * PAYLOAD, 1) + bytes(PAYLOAD))
        for n in range(iterations)
    ]
    plain = _RTP.pack(0x80, 0, 1, 0, 2) + bytes(PAYLOAD)
    items = iter(packets)
    unprotect = timeit.timeit(lambda: receiver.unprotect(next(items)), number=iterations) / iterations
    protect = timeit.timeit(lambda: sender.protect(plain), number=iterations) / iterations
    return unprotect * 1e6, protect * 1e6


class _Kept:
    """In place of the socket: keeps what the mux sends during the handshake, then drops it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.keep = True

    def sendto(self, data: bytes, addr: Address) -> None:
        if self.keep:
            self.sent.append(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 9) if name == "sockname" else default


async def in_process(count: int) -> float:
    """Microseconds per packet through ``datagram_received`` with no socket under it: the mux, the
    session, SRTP both ways and the echo rewrite, nothing of the kernel or the loop."""
    transport = _Kept()
    mux = WebRtcMux(DtlsCertificate.generate(), "127.0.0.1")
    mux.connection_made(cast(asyncio.DatagramTransport, transport))
    certificate, credentials = DtlsCertificate.generate(), generate_credentials()
    session = mux.create_session()
    RtpEcho(session)
    answer = session.accept_offer(
        SessionDescription.parse(_offer(certificate, credentials.ufrag, credentials.pwd))
    )
    source = ("127.0.0.1", 40000)
    mux.datagram_received(_check(answer, credentials.ufrag), source)
    dtls = DtlsTransport(certificate, DtlsRole.CLIENT, answer.fingerprints_of(answer.media[0]))
    outgoing = dtls.start()
    for _ in range(10):
        transport.sent.clear()
        for datagram in outgoing:
            mux.datagram_received(datagram, source)
        outgoing = [
            out for datagram in transport.sent if 19 < datagram[0] < 64 for out in dtls.receive(datagram)
        ]
        if dtls.state is not DtlsState.CONNECTING:
            break
    assert dtls.keys is not None, dtls.reason
    srtp = SrtpContext(dtls.keys)
    packets = [
        srtp.protect(_RTP.pack(0x80, 0, n & 0xFFFF, n * PAYLOAD, 7) + b"\xd5" * PAYLOAD) for n in range(count)
    ]
    transport.keep = False
    receive = mux.datagram_received
    start = time.perf_counter_ns()
    for packet in packets:
        receive(packet, source)
    elapsed = time.perf_counter_ns() - start
    assert session.counters.rtp_sent == count, session.counters
    return elapsed / count / 1000


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


def _best(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per rate, the run that took the least CPU per packet: on a shared machine the others were
    disturbed by someone else."""
    return [min(rows, key=lambda row: float(row["cpu_us"])) for rows in zip(*runs, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="10000,30000", help="packets per second, comma-separated")
    parser.add_argument("--packets", type=int, default=50000, help="packets per blast (each rate runs two)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="a blast stops sending after this")
    parser.add_argument("--loops", default="uvloop,asyncio", help="event loops to measure")
    parser.add_argument("--repeat", type=int, default=1, help="runs per loop; the least CPU per rate is kept")
    parser.add_argument("--blaster", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.blaster:
        blaster()
        return
    rates = [int(rate) for rate in arguments.rates.split(",")]
    unprotect_us, protect_us = srtp_alone()
    path_us = asyncio.run(in_process(min(arguments.packets, 50000)))
    print("WebRTC packet path: SRTP -> unprotect -> echo rewrite -> protect -> SRTP, one session, 127.0.0.1")
    print(f"blaster in a second process, {arguments.packets} packets of {PAYLOAD} bytes per blast")
    print(f"libsrtp alone (pylibsrtp): unprotect {unprotect_us:.2f} us, protect {protect_us:.2f} us")
    print(
        f"in process, no socket: {path_us:.2f} us per packet through datagram_received"
        f" ({path_us - unprotect_us - protect_us:.2f} us of it outside libsrtp)"
    )
    print(
        f"{'path':14} {'loop':8} {'rate/s':>7} {'sent':>7} {'echoed':>7} {'loss %':>7} {'pkts/s':>7}"
        f" {'CPU us/pkt':>10} {'handler p50':>11} {'p99':>6} {'RTT p50':>8} {'p99':>7}"
    )
    for name in arguments.loops.split(","):
        floor_runs, our_runs = [], []
        with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
            for _ in range(arguments.repeat):
                floor_runs.append(runner.run(serve_plain(rates, arguments.packets, arguments.max_seconds)))
                our_runs.append(runner.run(serve(rates, arguments.packets, arguments.max_seconds)))
        floor, ours = _best(floor_runs), _best(our_runs)
        for path, rows in (("udp echo", floor), ("webrtc echo", ours)):
            for row in rows:
                loss = 100.0 * (row["sent"] - row["received"]) / max(1, row["sent"])
                handler = (
                    f"{row['handler_p50_us']:>11.2f} {row['handler_p99_us']:>6.2f}"
                    if "handler_p50_us" in row
                    else f"{'-':>11} {'-':>6}"
                )
                print(
                    f"{path:14} {name:8} {row['rate']:>7} {row['sent']:>7} {row['echoed']:>7} {loss:>7.3f}"
                    f" {row['sent'] / row['seconds']:>7.0f} {row['cpu_us']:>10.2f} {handler}"
                    f" {row['rtt_p50_us']:>8.1f} {row['rtt_p99_us']:>7.1f}"
                )
        for low, high in zip(floor, ours, strict=True):
            print(
                f"{'':14} {name:8} {high['rate']:>7} webrtc path above the plain UDP echo:"
                f" {high['cpu_us'] - low['cpu_us']:.2f} us CPU per packet"
            )
    print(
        "CPU us/pkt: this process's CPU over a blast / packets echoed (loop, syscalls, mux, SRTP, rewrite);"
    )
    print("handler: datagram_received alone, sendto included (timed in a second blast); RTT: at the blaster")
    print(f"PEERS.md: {PEERS_FIGURE}; rtpengine (C) 8-10 us per packet on the same kind of machine")


if __name__ == "__main__":
    main()
