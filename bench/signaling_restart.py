"""How long a restarted signaling instance takes to serve its calls again, and what keeping them costs.

For each N (``--calls 100,1000``) it leaves N connected calls in KV ``calls`` as a signaling instance
would have (b2bua/snapshot.py: an agent's desk phone and a carrier, both on UDP, a media session,
the carrier's session timer), starts a signaling process with that instance id on a nats-server of
its own, and measures from the process's start:

- ``ready``: its /readyz answers 200 (the calls were taken over before it says ready);
- ``first``: the carrier's in-dialog UPDATE (RFC 3311, a session refresh) on one call is answered
  200 (before that, 481 or silence);
- ``all``: every call's UPDATE is answered 200 (sent at once once the first was).

It also prints what the snapshots cost in process: capture and JSON per call, and parse and restore
per call, on this machine (no NATS in those figures), and the time to write N snapshots to NATS.
The media worker is a heartbeat published by the bench (the calls' sessions are never touched).

    .venv/bin/python bench/signaling_restart.py [--calls 100,1000]

Loopback only; ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.signaling.b2bua.snapshot import (
    CallSnapshot,
    DialogSnapshot,
    EndSnapshot,
    FlowRef,
    Flows,
    capture,
    restore,
)
from services.signaling.sip.message import Response, parse_message
from shared import subjects
from shared.bus import Bus
from shared.events import LegKind, Party
from shared.heartbeat import Heartbeat, InstanceState
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, get_json, health_url

NODE = "bench-sig"
WORKER = "bench-worker"
SDP = (
    "v=0\r\no=echodesk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\n"
)


class Peer(asyncio.DatagramProtocol):
    """The carrier (or the phones): answers requests 200, collects responses by Call-ID."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.answers: dict[str, int] = {}
        self.changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = parse_message(data)
        except Exception:
            return
        if isinstance(message, Response):
            if message.status_code >= 200:
                self.answers[message.call_id] = message.status_code
                self.changed.set()
            return
        if message.method != "ACK" and self.transport is not None:
            via = "\r\n".join(f"Via: {v}" for v in message.headers.get_all("Via"))
            reply = (
                f"SIP/2.0 200 OK\r\n{via}\r\nFrom: {message.headers.get('From')}\r\n"
                f"To: {message.headers.get('To')}\r\nCall-ID: {message.call_id}\r\n"
                f"CSeq: {message.headers.get('CSeq')}\r\nContent-Length: 0\r\n\r\n"
            )
            self.transport.sendto(reply.encode(), addr)


def snapshot(i: int, sip_port: int, phone: int, carrier: int, epoch: float) -> CallSnapshot:
    gateway = f"127.0.0.1:{sip_port}"
    contact = f"<sip:echodesk@{gateway}>"
    agent = EndSnapshot(
        dialog=DialogSnapshot(
            call_id=f"agent-{i}",
            local_tag=f"gw{i}",
            remote_tag=f"ph{i}",
            local_uri=f"<sip:555123456@bench.test>;tag=gw{i}",
            remote_uri=f"<sip:100@bench.test>;tag=ph{i}",
            remote_target=f"sip:100@127.0.0.1:{phone}",
            route_set=[],
            local_seq=4000,
            remote_seq=2,
            local_contact=contact,
        ),
        via_host=gateway,
        contact=contact,
        transport="udp",
        flow=FlowRef(transport="udp", host="127.0.0.1", port=phone),
        media_leg=LegKind.AGENT,
        party=Party.AGENT,
        agent_id="a100",
    )
    customer = EndSnapshot(
        dialog=DialogSnapshot(
            call_id=f"carrier-{i}",
            local_tag=f"gc{i}",
            remote_tag=f"cr{i}",
            local_uri=f"<sip:trunk@bench.test>;tag=gc{i}",
            remote_uri=f"<sip:555123456@bench.test>;tag=cr{i}",
            remote_target=f"sip:carrier@127.0.0.1:{carrier}",
            route_set=[],
            local_seq=1,
            remote_seq=None,
            local_contact=contact,
            invite_seq=1,
        ),
        via_host=gateway,
        contact=contact,
        transport="udp",
        flow=FlowRef(transport="udp", host="127.0.0.1", port=carrier),
        media_leg=LegKind.CUSTOMER,
        party=Party.CUSTOMER,
        offer=SDP,
    )
    return CallSnapshot(
        call_id=f"call{i:06d}",
        tenant_id="bench",
        next_sequence=16,
        created_epoch=epoch - 60,
        answered_epoch=epoch - 55,
        answered_wall=datetime.now(UTC),
        trunk_id="carrier",
        sessions=[(WORKER, f"s{i}", "main")],
        connected=True,
        caller=agent,
        callee=customer,
        session_interval_s=1800,
        session_refresher="uac",
        due={"session-refresh": epoch + 900},
    )


def update(i: int, sip_port: int, carrier: int, cseq: int) -> bytes:
    """The carrier's session refresh (RFC 4028 7.4: an UPDATE without a body) on call ``i``."""
    return (
        f"UPDATE sip:echodesk@127.0.0.1:{sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{carrier};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:555123456@bench.test>;tag=cr{i}\r\n"
        f"To: <sip:trunk@bench.test>;tag=gc{i}\r\n"
        f"Call-ID: carrier-{i}\r\n"
        f"CSeq: {cseq} UPDATE\r\n"
        f"Contact: <sip:carrier@127.0.0.1:{carrier}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def in_process_costs(count: int, repeats: int = 5) -> tuple[float, float]:
    """Microseconds per call to capture + serialize a connected call, and to parse + restore it
    (the best of ``repeats`` runs: the machine's other work only ever adds)."""
    epoch = time.time()
    snapshots = [snapshot(i, 5060, 5062, 5064, epoch) for i in range(count)]
    datas = [s.model_dump_json(exclude_defaults=True).encode() for s in snapshots]
    flows = Flows(caller=snapshots[0].caller.flow if snapshots[0].caller else None, callee=None)
    capture_s = restore_s = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        restored = [
            restore(CallSnapshot.model_validate_json(d), now=0.0, wall_offset=epoch, source=NODE)
            for d in datas
        ]
        restore_s = min(restore_s, time.perf_counter() - started)
        started = time.perf_counter()
        for taken in restored:
            data = capture(taken.call, flows, {"main": (WORKER, "s")}, epoch)
            assert data is not None
            data.model_dump_json(exclude_defaults=True).encode()
        capture_s = min(capture_s, time.perf_counter() - started)
    return capture_s / count * 1e6, restore_s / count * 1e6


async def heartbeats(bus: Bus) -> None:
    started = datetime.now(UTC)
    while True:
        beat = Heartbeat(
            service="media",
            instance_id=WORKER,
            version="bench",
            state=InstanceState.READY,
            started_at=started,
            sent_at=datetime.now(UTC),
            interval_s=1.0,
        )
        await bus.publish(subjects.heartbeat("media", WORKER), beat)
        await asyncio.sleep(1.0)


async def one_run(nats: NatsServer, count: int) -> None:
    loop = asyncio.get_running_loop()
    bus = await Bus.connect(nats.url, name="bench", timeout=10)
    await bus.ensure_streams()
    kv = await bus.bucket(subjects.CALLS_KV)
    _, carrier = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    _, phones = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    env = {
        "ECHODESK_NATS_URL": nats.url,
        "ECHODESK_INSTANCE_ID": NODE,
        "ECHODESK_LOG_LEVEL": "WARNING",
        **free_ports_env("signaling"),
        "ECHODESK_SIGNALING_SIP_HOST": "127.0.0.1",
        "ECHODESK_SIGNALING_SIP_PUBLIC_HOST": "127.0.0.1",
        # The bench's carrier sends far more than a real one does: not a flood to be dropped.
        "ECHODESK_SIGNALING_SIP_TRUSTED_NETWORKS": "127.0.0.0/8",
    }
    sip_port = int(env["ECHODESK_SIGNALING_SIP_UDP_PORT"])
    epoch = time.time()
    datas = [
        snapshot(i, sip_port, phones.port, carrier.port, epoch)
        .model_dump_json(exclude_defaults=True)
        .encode()
        for i in range(count)
    ]
    started = time.perf_counter()
    limit = asyncio.Semaphore(64)

    async def put(i: int, data: bytes) -> None:
        async with limit:
            await kv.put(f"{NODE}.call{i:06d}", data)

    await asyncio.gather(*(put(i, d) for i, d in enumerate(datas)))
    written_s = time.perf_counter() - started
    beating = asyncio.ensure_future(heartbeats(bus))
    url = health_url("signaling", env)
    t0 = time.perf_counter()
    process = subprocess.Popen(  # noqa: ASYNC220 (timed from here: no thread hop in the figure)
        [sys.executable, "-m", "services.signaling"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert carrier.transport is not None
    ready_s = first_s = all_s = float("nan")
    try:
        # The first call's refresh, sent every 20 ms until the new instance answers it 200.
        cseq = 10
        while count and time.perf_counter() - t0 < 60:
            carrier.transport.sendto(update(0, sip_port, carrier.port, cseq), ("127.0.0.1", sip_port))
            cseq += 1
            await asyncio.sleep(0.02)
            if carrier.answers.get("carrier-0") == 200:
                first_s = time.perf_counter() - t0
                break
            if process.poll() is not None:
                raise RuntimeError(process.communicate()[0][-3000:])
        while time.perf_counter() - t0 < 60:
            if await asyncio.to_thread(lambda: get_json(url)[0]) == 200:
                ready_s = time.perf_counter() - t0
                break
            await asyncio.sleep(0.02)
        carrier.answers.clear()
        # One UPDATE per call, sent in bursts the socket buffers take, and sent again (the same bytes:
        # a retransmission, RFC 3261 17.2.2) while unanswered.
        requests = {f"carrier-{i}": update(i, sip_port, carrier.port, 10_000) for i in range(count)}
        async with asyncio.timeout(30):
            while len(waiting := [c for c in requests if carrier.answers.get(c) is None]) > 0:
                for n, call in enumerate(waiting):
                    carrier.transport.sendto(requests[call], ("127.0.0.1", sip_port))
                    if n % 50 == 49:
                        await asyncio.sleep(0.002)
                await asyncio.sleep(0.25)
        all_s = time.perf_counter() - t0
        refused = sum(1 for status in carrier.answers.values() if status != 200)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = await asyncio.to_thread(process.communicate, None, 60)
            if process.returncode != 0:
                print(output[-3000:])
        except subprocess.TimeoutExpired:
            process.kill()
        beating.cancel()
        for i in range(count):
            await kv.purge(f"{NODE}.call{i:06d}")
        carrier.transport.close()
        if phones.transport is not None:
            phones.transport.close()
        await bus.close()
    served = f", first call answering {first_s:.2f} s, all {count} answering {all_s:.2f} s" if count else ""
    print(
        f"{count:5d} calls: snapshots written to NATS in {written_s * 1000:.0f} ms; after process start: "
        f"ready {ready_s:.2f} s{served} ({refused} refused)"
    )


async def run(counts: list[int]) -> None:
    capture_us, restore_us = in_process_costs(1000)
    print(f"in process: capture + JSON {capture_us:.0f} us per call, parse + restore {restore_us:.0f} us")
    with tempfile.TemporaryDirectory(prefix="restart-bench-") as work:
        nats = NatsServer(store_dir=Path(work) / "nats").start()
        try:
            for count in counts:
                await one_run(nats, count)
        finally:
            nats.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls", default="0,100,1000", help="comma-separated numbers of calls left behind (0: the baseline)"
    )
    args = parser.parse_args()
    asyncio.run(run([int(n) for n in args.calls.split(",")]))


if __name__ == "__main__":
    main()
