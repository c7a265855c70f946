"""CPU per call through signaling's code, in process: what bench/call_rate.py measures of signaling,
without the bus, the other processes or the kernel's scheduling in the figure.

Runs a real ``SipStack``, ``Trunks`` and ``Calls`` on free 127.0.0.1 UDP ports (uvloop, as the
service runs). The agents' desk phones and the carrier are small UDP peers in the same event loop,
playing what sipp plays in call_rate.py (INVITE -> 407, ACK, INVITE with digest -> 100/180/200, ACK,
BYE -> 200; the carrier answers 100/180/200 at once and 200 to the BYE). The media workers are a stub
answering at once (no NATS), and events go to a counter. The peers' own CPU is measured around their
handlers and taken out, so the figure is signaling's work per call, warm.

    .venv/bin/python bench/call_path.py [--calls 3000] [--concurrency 20] [--profile 30]
        [--snapshots] [--snapshot-delay 0.05]

``--snapshots`` keeps each call's snapshot as the service does (b2bua/call_store.py) in an in-memory
bucket, so the difference with a run without it is what keeping calls across restarts costs;
``--snapshot-delay 0`` writes every change (no coalescing), the worst case.

``--profile N`` repeats the run under cProfile and prints the top N functions by own time
(``--profile-file PATH`` keeps the statistics for ``python -m pstats``).
Loopback only; it ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
import uuid
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop

from services.signaling.b2bua.call_store import CallStore
from services.signaling.b2bua.calls import Calls
from services.signaling.directory import AgentDirectory
from services.signaling.sip.auth import DigestClient
from services.signaling.stack import SipStack
from services.signaling.trunk.trunks import Trunks
from shared.events import EventEnvelope
from shared.logging import configure_logging
from shared.media import (
    CreateSession,
    DiscardLegs,
    Hold,
    LocalDescription,
    PrepareLeg,
    RecordingControl,
    RemoteDescription,
    ReplaceLeg,
    SendDtmf,
    SessionCreated,
)
from shared.records import TrunkRecord, agent_key, agent_record, trunk_key
from shared.settings import SignalingSettings
from shared.supervisor import free_port

DOMAIN = "bench.test"
AGENTS = 50
SDP = (
    "v=0\r\no=phone 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\na=sendrecv\r\n"
)


class StubMedia:
    """A media worker that answers at once (the MediaClient protocol of b2bua/calls.py)."""

    async def create(self, request: CreateSession) -> SessionCreated:
        return SessionCreated(worker_id="w1", session_id=uuid.uuid4().hex, agent_sdp=SDP, customer_sdp=SDP)

    async def describe(self, worker: str, session: str, description: RemoteDescription) -> LocalDescription:
        return LocalDescription()

    async def close(self, worker: str, session: str, reason: str) -> None:
        return None

    async def dtmf(self, worker: str, session: str, digit: SendDtmf) -> None:
        return None

    async def hold(self, worker: str, session: str, hold: Hold) -> None:
        return None

    async def prepare(self, worker: str, session: str, request: PrepareLeg) -> LocalDescription:
        return LocalDescription(sdp=SDP)

    async def replace(self, worker: str, session: str, request: ReplaceLeg) -> None:
        return None

    async def discard(self, worker: str, session: str, request: DiscardLegs) -> None:
        return None

    async def record(self, worker: str, session: str, control: RecordingControl) -> None:
        return None


def head_of(data: bytes) -> tuple[str, dict[str, list[str]]]:
    """Start line and header values by lower-case name (the peers need little, and cheaply)."""
    text = data.split(b"\r\n\r\n", 1)[0].decode()
    lines = text.split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return lines[0], headers


def response(status: str, headers: dict[str, list[str]], to_tag: str = "", body: str = "") -> bytes:
    lines = [f"SIP/2.0 {status}"]
    lines += [f"Via: {v}" for v in headers["via"]]
    to = headers["to"][0]
    lines += [
        f"From: {headers['from'][0]}",
        f"To: {to};tag={to_tag}" if to_tag and ";tag=" not in to else f"To: {to}",
        f"Call-ID: {headers['call-id'][0]}",
        f"CSeq: {headers['cseq'][0]}",
        "Contact: <sip:carrier@127.0.0.1>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class Peer(asyncio.DatagramProtocol):
    """A UDP peer whose handler time is added up (to be taken out of the process's CPU)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.cpu = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        start = time.thread_time()
        self.handle(data, addr)
        self.cpu += time.thread_time() - start

    def handle(self, data: bytes, addr: tuple[str, int]) -> None:
        raise NotImplementedError

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


class Carrier(Peer):
    def handle(self, data: bytes, addr: tuple[str, int]) -> None:
        start, headers = head_of(data)
        method = start.split(" ", 1)[0]
        if method == "INVITE":
            tag = uuid.uuid4().hex[:12]
            self.send(response("100 Trying", headers), addr)
            self.send(response("180 Ringing", headers, tag), addr)
            self.send(response("200 OK", headers, tag, SDP), addr)
        elif method in ("BYE", "OPTIONS"):
            self.send(response("200 OK", headers, uuid.uuid4().hex[:12]), addr)


class Agents(Peer):
    """Desk phones placing calls one after another, ``concurrency`` at a time."""

    def __init__(self, server: tuple[str, int], calls: int, concurrency: int) -> None:
        super().__init__()
        self.server = server
        self.left = calls
        self.concurrency = concurrency
        self.done = asyncio.get_running_loop().create_future()
        self.failed = 0
        self.n = 0
        self.local = ("127.0.0.1", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.local = transport.get_extra_info("sockname")

    def start(self) -> None:
        start = time.thread_time()
        for _ in range(min(self.concurrency, self.left)):
            self.place()
        self.cpu += time.thread_time() - start

    def request(
        self, method: str, call: str, user: str, cseq: int, to: str, extra: str = "", via: str = ""
    ) -> bytes:
        """``via``: the INVITE's, for the ACK of a non-2xx answer (same transaction, RFC 3261 17.1.1.3)."""
        host, port = self.local
        body = SDP if method == "INVITE" else ""
        via = via or f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{uuid.uuid4().hex[:16]};rport"
        return (
            f"{method} sip:555123456@{DOMAIN} SIP/2.0\r\n"
            f"Via: {via}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{user}@{DOMAIN}>;tag={call[:8]}\r\nTo: {to}\r\nCall-ID: {call}\r\n"
            f"CSeq: {cseq} {method}\r\nContact: <sip:{user}@{host}:{port}>\r\n{extra}"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def place(self) -> None:
        self.left -= 1
        self.n += 1
        user = str(100 + self.n % AGENTS)
        call = uuid.uuid4().hex
        self.send(self.request("INVITE", call, user, 1, f"<sip:555123456@{DOMAIN}>"), self.server)

    def handle(self, data: bytes, addr: tuple[str, int]) -> None:
        start, headers = head_of(data)
        if not start.startswith("SIP/2.0 "):
            return  # a request from the gateway: none expected here
        status = int(start.split(" ", 2)[1])
        _seq, method = headers["cseq"][0].split(" ", 1)
        call = headers["call-id"][0]
        user = headers["from"][0].split("sip:", 1)[1].split("@", 1)[0]
        to = headers["to"][0]
        if status < 200:
            return
        if method == "INVITE" and status == 407:
            self.send(self.request("ACK", call, user, 1, to, via=headers["via"][0]), self.server)
            n = int(user) - 100
            answer = DigestClient(user, password=f"pw{n}").answer(
                headers["proxy-authenticate"], "INVITE", f"sip:{DOMAIN}"
            )
            extra = f"Proxy-Authorization: {answer.value}\r\n"
            self.send(self.request("INVITE", call, user, 2, f"<sip:555123456@{DOMAIN}>", extra), self.server)
        elif method == "INVITE" and status == 200:
            self.send(self.request("ACK", call, user, 2, to), self.server)
            self.send(self.request("BYE", call, user, 3, to), self.server)
        elif method == "BYE" or status >= 300:
            self.failed += status != 200
            self.finished()

    def finished(self) -> None:
        if self.left > 0:
            self.place()
        elif self.concurrency > 1:
            self.concurrency -= 1
        elif not self.done.done():
            self.done.set_result(None)


def settings() -> SignalingSettings:
    return SignalingSettings(
        sip_host="127.0.0.1",
        sip_public_host="127.0.0.1",
        sip_udp_port=free_port(),
        sip_tcp_port=free_port(),
        sip_ws_port=free_port(),
        sip_trusted_networks="127.0.0.0/8",
        sip_digest_algorithms="MD5",
        tenant_max_concurrent_calls=100_000,
        record_calls=False,
    )


class MemoryBucket:
    """KV ``calls`` in memory: what the store writes, counted (NATS's own cost is not signaling's)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def put(self, key: str, value: bytes) -> int:
        self.values[key] = value
        return len(self.values)

    async def delete(self, key: str) -> bool:
        self.values.pop(key, None)
        return True


async def run(
    calls: int,
    concurrency: int,
    profiler: cProfile.Profile | None,
    snapshot_delay: float | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    config = settings()
    directory = AgentDirectory()
    for n in range(AGENTS):
        user = str(100 + n)
        record = agent_record(
            tenant_id="bench",
            agent_id=f"a{n}",
            extension=user,
            sip_username=user,
            domain=DOMAIN,
            password=f"pw{n}",
        ).model_copy(update={"max_concurrent_calls": 100})
        directory.apply(agent_key(DOMAIN, user), record.model_dump_json().encode())
    events: list[int] = [0]

    def publish(_event: EventEnvelope) -> None:
        events[0] += 1

    stack = SipStack(config, directory, publish)
    await stack.start()
    _, carrier = await loop.create_datagram_endpoint(Carrier, local_addr=("127.0.0.1", 0))
    assert carrier.transport is not None
    carrier_port = carrier.transport.get_extra_info("sockname")[1]
    trunks = Trunks(stack, config, publish)
    trunk = TrunkRecord(
        tenant_id="bench",
        trunk_id="carrier",
        name="Carrier",
        sip_server="127.0.0.1",
        sip_port=carrier_port,
        registers=False,
        is_default=True,
        keepalive_s=3600,
        max_concurrent_calls=100_000,
    )
    trunks.apply(trunk_key("bench", "carrier"), trunk.model_dump_json().encode())
    glue = Calls(stack, config, directory, trunks, StubMedia(), publish)
    store: CallStore | None = None
    writer: asyncio.Task[None] | None = None
    if snapshot_delay is not None:
        store = CallStore(glue.node, glue.snapshot, delay_s=snapshot_delay)
        glue.store = store
        writer = asyncio.ensure_future(store.run(MemoryBucket()))
    await asyncio.sleep(0.5)  # the trunk's first OPTIONS probe
    server = ("127.0.0.1", config.sip_udp_port)
    _, agents = await loop.create_datagram_endpoint(
        lambda: Agents(server, calls, concurrency), local_addr=("127.0.0.1", 0)
    )
    carrier.cpu = 0.0
    before, wall = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    agents.start()
    await asyncio.wait_for(agents.done, timeout=120)
    if store is not None:
        await store.flushed(10.0)
    if profiler is not None:
        profiler.disable()
    used = time.process_time() - before - agents.cpu - carrier.cpu
    elapsed = time.perf_counter() - wall
    print(
        f"{calls} calls, {concurrency} at a time: {calls / elapsed:.0f} calls/s, {agents.failed} failed, "
        f"{events[0]} events; signaling {used / calls * 1000:.3f} ms CPU per call "
        f"(peers' {(agents.cpu + carrier.cpu) / calls * 1000:.3f} ms taken out)"
    )
    if store is not None:
        print(
            f"  snapshots (delay {snapshot_delay:g} s): {store.writes / calls:.2f} writes and "
            f"{store.deletes / calls:.2f} deletes per call, "
            f"{store.bytes / max(store.writes, 1):.0f} bytes each"
        )
    if writer is not None:
        writer.cancel()
    await trunks.stop()
    await stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--profile", type=int, default=0, help="top N functions under cProfile")
    parser.add_argument("--profile-file", help="also write the cProfile statistics there (pstats)")
    parser.add_argument("--snapshots", action="store_true", help="keep calls' snapshots (KV calls)")
    parser.add_argument("--snapshot-delay", type=float, default=0.05, help="coalescing window (s)")
    args = parser.parse_args()
    configure_logging("call-path-bench", json=False, level="WARNING")
    delay = args.snapshot_delay if args.snapshots else None
    uvloop.run(run(args.calls, args.concurrency, None, delay))
    if args.profile:
        profiler = cProfile.Profile()
        uvloop.run(run(args.calls, args.concurrency, profiler, delay))
        if args.profile_file:
            profiler.dump_stats(args.profile_file)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
