"""Calls taking over what a previous incarnation left (b2bua/calls.py ``resume``), over real sockets.

A real ``SipStack``, ``Trunks`` and ``Calls`` on free loopback UDP ports; the desk phone and the
carrier are UDP peers that record what reaches them; the media workers are a stand-in that records
what it is asked. The snapshots are taken of sans-I/O calls (tests/signaling/outbound.py) whose ends
are said to be those peers, as the previous process would have written them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import pytest

from services.signaling.b2bua.call_store import CallStore
from services.signaling.b2bua.calls import Calls
from services.signaling.b2bua.snapshot import CallSnapshot, FlowRef, Flows, capture
from services.signaling.directory import AgentDirectory
from services.signaling.sip.message import Request, Response, make_response, parse_message
from services.signaling.stack import SipStack
from services.signaling.transport.flow import Flow, TransportKind
from services.signaling.trunk.trunks import Trunks
from shared.events import CallEnded, CallQuality, EndCause, EventEnvelope, LegKind, LegQuality, Party
from shared.media import (
    CreateSession,
    DiscardLegs,
    Hold,
    LocalDescription,
    MediaEvent,
    MediaEventKind,
    PrepareLeg,
    RecordingControl,
    RemoteDescription,
    ReplaceLeg,
    SendDtmf,
    SessionCreated,
)
from shared.settings import SignalingSettings
from shared.supervisor import free_port
from tests.signaling.outbound import carrier_says, dial, new_call

OFFSET = 1_700_000_000.0


class Media:
    def __init__(self) -> None:
        self.closed: list[str] = []
        self.described: list[tuple[str, RemoteDescription]] = []

    async def create(self, request: CreateSession) -> SessionCreated:
        raise AssertionError("no new session is made for a call taken over")

    async def describe(self, worker: str, session: str, description: RemoteDescription) -> LocalDescription:
        self.described.append((session, description))
        return LocalDescription(sdp="v=0 answer")

    async def close(self, worker: str, session: str, reason: str) -> None:
        self.closed.append(session)

    async def dtmf(self, worker: str, session: str, digit: SendDtmf) -> None: ...

    async def hold(self, worker: str, session: str, hold: Hold) -> None: ...

    async def prepare(self, worker: str, session: str, request: PrepareLeg) -> LocalDescription:
        raise AssertionError("no transfer here")

    async def replace(self, worker: str, session: str, request: ReplaceLeg) -> None: ...

    async def discard(self, worker: str, session: str, request: DiscardLegs) -> None: ...

    async def record(self, worker: str, session: str, control: RecordingControl) -> None: ...


class Peer(asyncio.DatagramProtocol):
    """A phone or a carrier: what reached it, in order; requests other than ACK are answered 200."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.got: asyncio.Queue[Request | Response] = asyncio.Queue()
        self.answer = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def ref(self) -> FlowRef:
        assert self.transport is not None
        return FlowRef(transport="udp", host="127.0.0.1", port=self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        self.got.put_nowait(message)
        if self.answer and isinstance(message, Request) and message.method not in ("ACK", "CANCEL"):
            self.send(make_response(message, 200), addr)

    def send(self, message: Request | Response, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(message.encode(), addr)

    async def next(self, timeout: float = 3.0) -> Request | Response:
        return await asyncio.wait_for(self.got.get(), timeout)


class Bucket:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.written: list[str] = []

    async def put(self, key: str, value: bytes) -> int:
        self.written.append(key)
        return len(self.written)

    async def delete(self, key: str) -> bool:
        self.deleted.append(key)
        return True


@dataclass
class Gateway:
    calls: Calls
    media: Media
    phone: Peer
    carrier: Peer
    events: list[EventEnvelope]
    bucket: Bucket
    sip: tuple[str, int]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    loop = asyncio.get_running_loop()
    settings = SignalingSettings(
        sip_host="127.0.0.1",
        sip_public_host="127.0.0.1",
        sip_udp_port=free_port(),
        sip_tcp_port=free_port(),
        sip_ws_port=free_port(),
        sip_trusted_networks="127.0.0.0/8",
        instance_id="sig-1",
    )
    events: list[EventEnvelope] = []
    directory = AgentDirectory()
    stack = SipStack(settings, directory, events.append)
    await stack.start()
    trunks = Trunks(stack, settings, events.append)
    media = Media()
    calls = Calls(stack, settings, directory, trunks, media, events.append)
    bucket = Bucket()
    calls.store = CallStore(calls.node, calls.snapshot, delay_s=0.0)
    _, phone = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    _, carrier = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    running = Gateway(calls, media, phone, carrier, events, bucket, ("127.0.0.1", settings.sip_udp_port))
    running.tasks.append(asyncio.ensure_future(calls.store.run(bucket)))
    try:
        yield running
    finally:
        for task in running.tasks:
            task.cancel()
        for peer in (phone, carrier):
            assert peer.transport is not None
            peer.transport.close()
        await trunks.stop()
        await stack.stop()


def connected_snapshot(gateway: Gateway, *, sessions: dict[str, tuple[str, str]]) -> CallSnapshot:
    call = new_call()
    invite = dial(call)
    call.carrier_response(carrier_says(invite, 180), 1.0)
    call.carrier_response(carrier_says(invite, 200, body=b"v=0", contact="<sip:carrier@203.0.113.1>"), 2.0)
    flows = Flows(caller=gateway.phone.ref, callee=None, carrier=gateway.carrier.ref)
    snapshot = capture(call, flows, sessions, OFFSET)
    assert snapshot is not None
    return snapshot


def ended(events: list[EventEnvelope]) -> CallEnded:
    (event,) = [e for e in events if isinstance(e, CallEnded)]
    return event


def carrier_request(snapshot: CallSnapshot, method: str, cseq: int, gateway: Gateway) -> Request:
    """An in-dialog request from the carrier in the restored call's carrier dialog."""
    assert snapshot.callee is not None
    dialog = snapshot.callee.dialog
    sent_by = f"{gateway.carrier.ref.host}:{gateway.carrier.ref.port}"
    return Request(
        method,
        f"sip:echodesk@{gateway.sip[0]}:{gateway.sip[1]}",
        [
            ("Via", f"SIP/2.0/UDP {sent_by};branch=z9hG4bK{method}{cseq}"),
            ("Max-Forwards", "70"),
            ("From", dialog.remote_uri),
            ("To", dialog.local_uri),
            ("Call-ID", dialog.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:carrier@{gateway.carrier.ref.host}:{gateway.carrier.ref.port}>"),
        ],
    )


async def test_a_call_taken_over_answers_the_carrier_and_passes_its_bye_on(gateway: Gateway) -> None:
    snapshot = connected_snapshot(gateway, sessions={"main": ("w1", "s1")})
    kept = await gateway.calls.resume({snapshot.call_id: snapshot.model_dump_json().encode()})
    assert kept == ["s1"]
    assert gateway.calls.active == 1
    # A session refresh from the carrier (UPDATE, RFC 4028 7.4) is answered in its dialog.
    gateway.carrier.send(carrier_request(snapshot, "UPDATE", 7, gateway), gateway.sip)
    answer = await gateway.carrier.next()
    assert isinstance(answer, Response)
    assert (answer.status_code, answer.cseq.method) == (200, "UPDATE")
    # A stale CSeq is out of order (RFC 3261 12.2.2).
    gateway.carrier.send(carrier_request(snapshot, "UPDATE", 6, gateway), gateway.sip)
    stale = await gateway.carrier.next()
    assert isinstance(stale, Response)
    assert stale.status_code == 500
    gateway.carrier.send(carrier_request(snapshot, "BYE", 8, gateway), gateway.sip)
    ok = await gateway.carrier.next()
    assert isinstance(ok, Response)
    assert ok.status_code == 200
    bye = await gateway.phone.next()
    assert isinstance(bye, Request)
    assert snapshot.caller is not None
    assert (bye.method, bye.call_id, bye.cseq.seq) == (
        "BYE",
        "sipjs-call-1",
        snapshot.caller.dialog.local_seq + 1,
    )
    await asyncio.sleep(0.05)
    event = ended(gateway.events)
    assert (event.data.cause, event.data.ended_by) == (EndCause.NORMAL_CLEARING, Party.CUSTOMER)
    assert event.sequence >= snapshot.next_sequence
    assert gateway.media.closed == ["s1"]
    assert gateway.bucket.deleted == [f"sig-1.{snapshot.call_id}"]


async def test_a_connected_call_whose_media_session_is_unknown_is_ended_on_both_legs(
    gateway: Gateway,
) -> None:
    snapshot = connected_snapshot(gateway, sessions={})
    assert await gateway.calls.resume({snapshot.call_id: snapshot.model_dump_json().encode()}) == []
    for peer in (gateway.phone, gateway.carrier):
        bye = await peer.next()
        assert isinstance(bye, Request)
        assert bye.method == "BYE"
    assert ended(gateway.events).data.cause is EndCause.MEDIA_FAILURE
    assert gateway.calls.active == 0


async def test_a_call_being_set_up_gets_487_and_cancel_and_the_carriers_487_is_acknowledged(
    gateway: Gateway,
) -> None:
    call = new_call()
    invite = dial(call)
    call.carrier_response(carrier_says(invite, 180), 1.0)
    flows = Flows(caller=gateway.phone.ref, callee=None, carrier=gateway.carrier.ref)
    snapshot = capture(call, flows, {"main": ("w1", "s1")}, OFFSET)
    assert snapshot is not None
    gateway.carrier.answer = False
    assert await gateway.calls.resume({snapshot.call_id: snapshot.model_dump_json().encode()}) == []
    final = await gateway.phone.next()
    assert isinstance(final, Response)
    assert (final.status_code, final.to.tag) == (487, call.agent_tag)
    cancel = await gateway.carrier.next()
    assert isinstance(cancel, Request)
    assert (cancel.method, cancel.call_id, cancel.cseq.seq) == ("CANCEL", invite.call_id, invite.cseq.seq)
    assert cancel.headers.get_all("Via") == invite.headers.get_all("Via")[:1]
    via = (gateway.carrier.ref.host, gateway.sip[1])
    gateway.carrier.send(make_response(cancel, 200), via)
    gateway.carrier.send(make_response(invite, 487, to_tag="carrier-tag"), via)
    ack = await gateway.carrier.next()
    assert isinstance(ack, Request)
    assert (ack.method, ack.cseq.seq, ack.to.tag) == ("ACK", invite.cseq.seq, "carrier-tag")
    assert ack.headers.get_all("Via") == invite.headers.get_all("Via")[:1]
    event = ended(gateway.events)
    assert event.data.cause is EndCause.SIGNALING_RESTARTED
    await asyncio.sleep(0.05)
    assert gateway.bucket.deleted == [f"sig-1.{snapshot.call_id}"]


async def test_an_unreadable_snapshot_is_dropped_and_the_others_are_taken_over(gateway: Gateway) -> None:
    snapshot = connected_snapshot(gateway, sessions={"main": ("w1", "s1")})
    found = {"garbage": b"{not json", snapshot.call_id: snapshot.model_dump_json().encode()}
    assert await gateway.calls.resume(found) == ["s1"]
    await asyncio.sleep(0.05)
    assert gateway.bucket.deleted == ["sig-1.garbage"]
    assert gateway.calls.active == 1


async def test_a_browser_end_waits_for_its_instance_to_register_again(gateway: Gateway) -> None:
    call = new_call()
    invite = dial(call)
    call.carrier_response(carrier_says(invite, 200, body=b"v=0", contact="<sip:carrier@203.0.113.1>"), 2.0)
    browser = FlowRef(transport="wss", host="192.0.2.7", port=50000, aor="acme/a100", instance="<urn:uuid:1>")
    snapshot = capture(
        call, Flows(caller=browser, callee=None, carrier=gateway.carrier.ref), {"main": ("w1", "s1")}, OFFSET
    )
    assert snapshot is not None
    assert await gateway.calls.resume({snapshot.call_id: snapshot.model_dump_json().encode()}) == ["s1"]
    assert gateway.calls.reconnections.away(snapshot.call_id)
    assert gateway.events == []  # nothing ended


async def test_quality_reports_do_not_each_cost_a_snapshot(gateway: Gateway) -> None:
    snapshot = connected_snapshot(gateway, sessions={"main": ("w1", "s1")})
    await gateway.calls.resume({snapshot.call_id: snapshot.model_dump_json().encode()})
    assert gateway.calls.store is not None
    await gateway.calls.store.flushed(1.0)
    written = len(gateway.bucket.written)
    assert written == 1  # taken over: written again, with the next block of event numbers
    figures = LegQuality(leg=LegKind.AGENT, codec="PCMU", packets_received=50, packets_lost=0, jitter_ms=1.0)
    report = MediaEvent(
        tenant_id="acme",
        call_id=snapshot.call_id,
        session_id="s1",
        worker_id="w1",
        kind=MediaEventKind.QUALITY,
        quality=[figures],
    )
    for _ in range(7):  # within the block of event numbers the snapshot reserved
        gateway.calls.media_event(report)
    await gateway.calls.store.flushed(1.0)
    assert len(gateway.bucket.written) == written
    for _ in range(2):  # past it: the next block is reserved
        gateway.calls.media_event(report)
    await asyncio.sleep(0.05)
    await gateway.calls.store.flushed(1.0)
    assert len(gateway.bucket.written) == written + 1
    assert len([e for e in gateway.events if isinstance(e, CallQuality)]) == 9


async def test_a_browser_already_registered_again_is_reached_at_once(gateway: Gateway) -> None:
    """The softphone reconnected while the new instance was still loading: no waiting for it."""
    register = Request(
        "REGISTER",
        "sip:acme.test",
        [
            ("Via", "SIP/2.0/WSS a1b2.invalid;branch=z9hG4bKreg1"),
            ("From", "<sip:100@acme.test>;tag=r1"),
            ("To", "<sip:100@acme.test>"),
            ("Call-ID", "reg-1"),
            ("CSeq", "3 REGISTER"),
            ("Contact", '<sip:x7k2@a1b2.invalid;transport=ws>;+sip.instance="<urn:uuid:1>";reg-id=1'),
            ("Expires", "600"),
        ],
    )
    socket = Flow(TransportKind.WS, ("192.0.2.8", 40000), ("127.0.0.1", 8088), connection_id=7)
    gateway.calls.stack.registrar.register(register, "acme/a100", socket, asyncio.get_running_loop().time())
    call = new_call()
    invite = dial(call)
    call.carrier_response(carrier_says(invite, 200, body=b"v=0", contact="<sip:carrier@203.0.113.1>"), 2.0)
    browser = FlowRef(transport="wss", host="192.0.2.7", port=50000, aor="acme/a100", instance="<urn:uuid:1>")
    flows = Flows(caller=browser, callee=None, carrier=gateway.carrier.ref)
    snapshot = capture(call, flows, {"main": ("w1", "s1")}, OFFSET)
    assert snapshot is not None
    assert await gateway.calls.resume({snapshot.call_id: snapshot.model_dump_json().encode()}) == ["s1"]
    assert not gateway.calls.reconnections.away(snapshot.call_id)
    assert gateway.calls._calls[snapshot.call_id].caller_flow == socket
