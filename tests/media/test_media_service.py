"""The media worker on a real nats-server, with plain RTP peers on loopback.

Each test runs :class:`MediaService` in process (its own bus connection, as the runtime gives it) and
talks to it over NATS as signaling does: ``media.session.create``, then the session's subjects.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from services.media.service import ACTIVE_SESSIONS, CAPACITY, MediaService
from shared import subjects
from shared.bus import Bus, NoResponders, RemoteError
from shared.events import LegKind
from shared.media import (
    CloseSession,
    CreateSession,
    DiscardLegs,
    Done,
    Hold,
    LegMedia,
    LocalDescription,
    MediaEvent,
    MediaEventKind,
    PrepareLeg,
    ReleaseSessions,
    RemoteDescription,
    ReplaceLeg,
    SendDtmf,
    SessionClosed,
    SessionCreated,
    SessionKind,
)
from shared.service import PortInUse, ServiceContext
from shared.settings import MediaSettings
from shared.supervisor import free_port
from tests.support.media import create_session
from tests.support.nats import NatsServer
from tests.support.processes import scrape
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.tools import REPO_ROOT

HOST = "127.0.0.1"
_next_range = [21000]

StartWorker = Callable[..., Awaitable[MediaService]]


def _settings(instance: str, **overrides: object) -> MediaSettings:
    low = _next_range[0]
    _next_range[0] += 200
    values: dict[str, object] = {
        "instance_id": instance,
        "webrtc_port": free_port(),
        "rtp_port_min": low,
        "rtp_port_max": low + 199,
        "bind_address": HOST,
        "capacity": 10,
        "health_port": 0,
    }
    values.update(overrides)
    return MediaSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def start_worker(nats_server: NatsServer) -> AsyncIterator[StartWorker]:
    started: list[tuple[MediaService, Bus]] = []

    async def start(instance: str = "w1", **overrides: object) -> MediaService:
        settings = _settings(instance, **overrides)
        worker_bus = await Bus.connect(nats_server.url, name=f"media-{instance}", timeout=10)
        service = MediaService(settings)
        await service.start(ServiceContext(settings=settings, bus=worker_bus))
        started.append((service, worker_bus))
        return service

    yield start
    for service, worker_bus in started:
        await service.stop()
        await worker_bus.close()


async def _events(bus: Bus, tenant: str, call: str) -> asyncio.Queue[MediaEvent]:
    queue: asyncio.Queue[MediaEvent] = asyncio.Queue()

    async def on_event(event: MediaEvent, subject: str) -> None:
        queue.put_nowait(event)

    await bus.subscribe(subjects.media_events(tenant, call), MediaEvent, on_event)
    await bus.nc.flush()
    return queue


async def _next_event(
    queue: asyncio.Queue[MediaEvent], kind: MediaEventKind, timeout: float = 5
) -> MediaEvent:
    async with asyncio.timeout(timeout):
        while True:
            event = await queue.get()
            if event.kind is kind:
                return event


async def _rtp_call(
    bus: Bus, call: str = "call-1", owner: str | None = None
) -> tuple[SessionCreated, RtpPeer, RtpPeer]:
    """An RTP_RTP bridge: the desk phone (agent) offers, we offer to the carrier, which answers."""
    agent = await RtpPeer.open(HOST, event_type=96)
    customer = await RtpPeer.open(HOST)
    request = CreateSession(
        tenant_id="t1", call_id=call, kind=SessionKind.RTP_RTP, agent_offer=agent.description(), owner=owner
    )
    created = await create_session(bus, request)
    assert created.agent_sdp is not None
    assert created.customer_sdp is not None
    agent.learn(created.agent_sdp)
    customer.learn(created.customer_sdp)
    reply = await bus.request(
        subjects.media_session(created.worker_id, created.session_id, "update"),
        RemoteDescription(leg=LegKind.CUSTOMER, sdp=customer.description(), type="answer"),
        LocalDescription,
    )
    assert reply.sdp is None
    return created, agent, customer


def _verb(created: SessionCreated, verb: str) -> str:
    return subjects.media_session(created.worker_id, created.session_id, verb)


def _assert_tone(peer: RtpPeer, frequency: float) -> None:
    heard = analyse(peer.audio(last_seconds=0.5))
    assert abs(heard["dominant_hz"] - frequency) <= 10, heard
    assert heard["purity"] > 0.9, heard
    assert heard["rms"] > 1000, heard


async def test_rtp_bridge_carries_both_tones_dtmf_and_reports_quality(
    bus: Bus, start_worker: StartWorker
) -> None:
    worker = await start_worker(quality_interval_s=0.5)
    events = await _events(bus, "t1", "call-1")
    created, agent, customer = await _rtp_call(bus)
    assert created.worker_id == "w1"
    assert "telephone-event/8000" in (created.customer_sdp or "")
    agent.start_tone(440)
    customer.start_tone(1000)
    await asyncio.sleep(1.0)
    _assert_tone(customer, 440)
    _assert_tone(agent, 1000)
    # The periodic figures for the call's quality chart: both legs, packets flowing, none lost.
    report = await _next_event(events, MediaEventKind.QUALITY)
    assert {q.leg for q in report.quality} == {LegKind.AGENT, LegKind.CUSTOMER}
    assert all(q.packets_received > 0 and q.packets_lost == 0 for q in report.quality), report.quality
    # Each side sees one clean stream of ours: one SSRC, consecutive sequence numbers.
    assert len({r.ssrc for r in customer.received}) == 1
    # A digit from the carrier: one event (not four, for the repeated ends) and the packets relayed
    # to the desk phone with its own telephone-event payload type (96).
    await customer.send_digit("5", 100)
    event = await _next_event(events, MediaEventKind.DTMF)
    assert (event.digit, event.leg, event.duration_ms) == ("5", LegKind.CUSTOMER, 100)
    await asyncio.sleep(0.1)
    relayed = agent.events(96)
    assert relayed
    assert {e["event"] for e in relayed} == {5}
    assert relayed[-1]["end"]
    # A digit towards the carrier (a browser's SIP INFO turned into RFC 4733, section 2.5).
    done = await bus.request(
        _verb(created, "dtmf"), SendDtmf(leg=LegKind.CUSTOMER, digit="#", duration_ms=200), Done
    )
    assert done == Done()
    await asyncio.sleep(0.4)
    sent = customer.events(101)
    assert [e["event"] for e in sent] == [11] * len(sent)
    assert sent[0]["marker"]
    assert not any(e["marker"] for e in sent[1:])
    assert len({e["timestamp"] for e in sent}) == 1
    ends = [e for e in sent if e["end"]]
    assert len(ends) == 3
    assert {e["duration"] for e in ends} == {1600}
    updates = [e["duration"] for e in sent if not e["end"]]
    assert updates == sorted(updates)
    assert len(updates) == 4  # 0, 50, 100, 150 ms
    sequences = [e["sequence"] for e in sent]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(sequences))
    # Audio resumes after the event in the same stream.
    before = len(customer.received)
    await asyncio.sleep(0.2)
    assert any(r.payload_type == 0 for r in customer.received[before:])
    assert len({r.ssrc for r in customer.received}) == 1
    closed = await bus.request(_verb(created, "close"), CloseSession(reason="hangup"), SessionClosed)
    legs = {q.leg: q for q in closed.quality}
    assert legs[LegKind.AGENT].packets_received > 40
    assert legs[LegKind.CUSTOMER].packets_received > 40
    assert legs[LegKind.AGENT].packets_lost == 0
    assert legs[LegKind.AGENT].codec == "PCMU/8000"
    assert legs[LegKind.AGENT].mos is not None
    assert legs[LegKind.AGENT].mos > 4
    final = await _next_event(events, MediaEventKind.CLOSED)
    assert final.detail == "hangup"
    assert len(final.quality) == 2
    assert worker.load() == (0, 10)
    agent.close()
    customer.close()


async def test_hold_stops_media_towards_a_leg_and_a_reoffer_moves_it(
    bus: Bus, start_worker: StartWorker
) -> None:
    await start_worker()
    created, agent, customer = await _rtp_call(bus)
    agent.start_tone(440)
    await asyncio.sleep(0.3)
    assert customer.received
    await bus.request(_verb(created, "hold"), Hold(leg=LegKind.CUSTOMER, held=True), Done)
    await asyncio.sleep(0.1)
    count = len(customer.received)
    await asyncio.sleep(0.3)
    assert len(customer.received) == count
    await bus.request(_verb(created, "hold"), Hold(leg=LegKind.CUSTOMER, held=False), Done)
    await asyncio.sleep(0.3)
    assert len(customer.received) > count
    # The carrier re-INVITEs from another address (RFC 3264 section 8.3.1): media follows it.
    moved = await RtpPeer.open(HOST)
    reply = await bus.request(
        _verb(created, "update"),
        RemoteDescription(leg=LegKind.CUSTOMER, sdp=moved.description(), type="offer"),
        LocalDescription,
    )
    assert reply.sdp is not None
    assert "a=sendrecv" in reply.sdp
    assert "RTP/AVP 0 101" in reply.sdp
    moved.learn(reply.sdp)
    moved.start_tone(1000)
    await asyncio.sleep(0.6)
    _assert_tone(moved, 440)
    _assert_tone(agent, 1000)
    # A re-offer putting us on hold (sendonly) is answered recvonly.
    reply = await bus.request(
        _verb(created, "update"),
        RemoteDescription(leg=LegKind.CUSTOMER, sdp=moved.description("sendonly"), type="offer"),
        LocalDescription,
    )
    assert reply.sdp is not None
    assert "a=recvonly" in reply.sdp
    for peer in (agent, customer, moved):
        peer.close()


async def test_a_transfer_hands_the_agent_leg_to_a_new_party_and_the_customer_leg_stays(
    bus: Bus, start_worker: StartWorker
) -> None:
    """A blind transfer (RFC 3515) in the worker: ``prepare`` offers a new leg while the old one still
    relays, ``replace`` swaps it in after the new party's answer, the customer's leg (its port, its
    stream) never changes."""
    worker = await start_worker()
    created, agent, customer = await _rtp_call(bus)
    customer_port = customer.remote
    agent.start_tone(440)
    customer.start_tone(1000)
    await asyncio.sleep(0.4)
    _assert_tone(customer, 440)
    offer = await bus.request(
        _verb(created, "prepare"), PrepareLeg(leg=LegKind.AGENT, media=LegMedia.RTP), LocalDescription
    )
    assert offer.sdp is not None
    assert "RTP/AVP 0" in offer.sdp  # the customer's law first: the bridge stays a passthrough
    again = await bus.request(
        _verb(created, "prepare"), PrepareLeg(leg=LegKind.AGENT, media=LegMedia.RTP), LocalDescription
    )
    assert again.sdp == offer.sdp  # several phones of the new party ring with one offer
    webrtc = await bus.request(
        _verb(created, "prepare"), PrepareLeg(leg=LegKind.AGENT, media=LegMedia.WEBRTC), LocalDescription
    )
    assert webrtc.sdp is not None
    assert "UDP/TLS/RTP/SAVPF" in webrtc.sdp
    # Until the swap the old agent still talks to the customer.
    await asyncio.sleep(0.3)
    _assert_tone(agent, 1000)
    # A garbage answer is refused and changes nothing.
    with pytest.raises(RemoteError) as refused:
        await bus.request(
            _verb(created, "replace"),
            ReplaceLeg(leg=LegKind.AGENT, media=LegMedia.RTP, answer="v=0\r\nnonsense"),
            Done,
        )
    assert refused.value.code == "bad_sdp"
    new = await RtpPeer.open(HOST)
    new.learn(offer.sdp)
    new.start_tone(600)
    await bus.request(
        _verb(created, "replace"),
        ReplaceLeg(leg=LegKind.AGENT, media=LegMedia.RTP, answer=new.description()),
        Done,
    )
    await asyncio.sleep(0.2)
    heard_by_old = len(agent.received)
    await asyncio.sleep(0.6)
    _assert_tone(customer, 600)
    _assert_tone(new, 1000)
    assert len(agent.received) == heard_by_old  # the old leg is closed
    assert customer.remote == customer_port
    # The customer sees one stream throughout: one SSRC, consecutive sequence numbers.
    assert len({r.ssrc for r in customer.received}) == 1
    with pytest.raises(RemoteError) as gone:
        await bus.request(
            _verb(created, "replace"),
            ReplaceLeg(leg=LegKind.AGENT, media=LegMedia.WEBRTC, answer=new.description()),
            Done,
        )
    assert gone.value.code == "not_prepared"  # the WebRTC candidate was closed with the swap
    # A prepared leg given up (the transfer failed) is closed; the call goes on.
    await bus.request(
        _verb(created, "prepare"), PrepareLeg(leg=LegKind.AGENT, media=LegMedia.RTP), LocalDescription
    )
    await bus.request(_verb(created, "discard"), DiscardLegs(leg=LegKind.AGENT), Done)
    with pytest.raises(RemoteError) as discarded:
        await bus.request(
            _verb(created, "replace"),
            ReplaceLeg(leg=LegKind.AGENT, media=LegMedia.RTP, answer=new.description()),
            Done,
        )
    assert discarded.value.code == "not_prepared"
    await asyncio.sleep(0.3)
    _assert_tone(customer, 600)
    await bus.request(_verb(created, "close"), CloseSession(reason="hangup"), SessionClosed)
    assert worker.ports.in_use == set()  # every leg's port, prepared ones too, is back
    for peer in (agent, customer, new):
        peer.close()


async def test_bad_input_is_counted_and_disturbs_no_other_session(
    bus: Bus, start_worker: StartWorker
) -> None:
    worker = await start_worker()
    created, agent, customer = await _rtp_call(bus, "call-good")
    agent.start_tone(440)
    customer.start_tone(1000)
    await asyncio.sleep(0.3)
    bridge = worker.bridges[created.session_id]
    leg = bridge.legs[LegKind.CUSTOMER].media
    port = leg.port  # type: ignore[union-attr]
    stranger = await RtpPeer.open(HOST)
    for junk in (b"", b"\x00" * 40, b"garbage that is not RTP at all", bytes(range(256)), b"\x80\x00"):
        stranger.send_raw(junk, (HOST, port))
    # Valid RTP from a stranger after latching: ignored and counted (RFC 4961).
    stranger.remote = (HOST, port)
    for _ in range(5):
        stranger.send(0, b"\xff" * 160)
    await asyncio.sleep(0.6)
    counters = bridge.counters()["customer"]
    assert counters["strangers"] == 5
    assert counters["malformed"] >= 3
    _assert_tone(agent, 1000)  # no stranger's silence leaked in
    _assert_tone(customer, 440)
    # An offer with no codec in common: typed error naming what was offered.
    g729 = (
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    )
    with pytest.raises(RemoteError) as refused:
        await bus.request(
            subjects.media_session_create(),
            CreateSession(tenant_id="t1", call_id="call-bad", kind=SessionKind.RTP_RTP, agent_offer=g729),
            SessionCreated,
        )
    assert refused.value.code == "no_common_codec"
    assert "G729/8000" in refused.value.message
    with pytest.raises(RemoteError) as malformed:
        await bus.request(
            subjects.media_session_create(),
            CreateSession(
                tenant_id="t1", call_id="call-bad", kind=SessionKind.RTP_RTP, agent_offer="v=0\r\nbogus\r\n"
            ),
            SessionCreated,
        )
    assert malformed.value.code == "bad_sdp"
    assert "line 2" in malformed.value.message
    with pytest.raises(RemoteError) as unknown:
        await bus.request(
            subjects.media_session("w1", "nosuchsession", "close"), CloseSession(), SessionClosed
        )
    assert unknown.value.code == "no_session"
    assert len(worker.bridges) == 1  # the refused sessions left nothing behind
    assert len(worker.ports.in_use) == 2
    for peer in (agent, customer, stranger):
        peer.close()


async def test_media_timeout_reports_a_silent_leg_once_and_skips_held_legs(
    bus: Bus, start_worker: StartWorker
) -> None:
    await start_worker(media_timeout_s=0.6)
    events = await _events(bus, "t1", "call-quiet")
    created, agent, customer = await _rtp_call(bus, "call-quiet")
    agent.start_tone(440)
    await bus.request(_verb(created, "hold"), Hold(leg=LegKind.AGENT, held=True), Done)
    event = await _next_event(events, MediaEventKind.MEDIA_TIMEOUT, timeout=3)
    assert event.leg is LegKind.CUSTOMER
    await asyncio.sleep(1.2)
    assert all(events.get_nowait().kind is not MediaEventKind.MEDIA_TIMEOUT for _ in range(events.qsize()))
    agent.close()
    customer.close()


async def test_a_full_worker_leaves_the_queue_group_and_another_takes_the_session(
    bus: Bus, start_worker: StartWorker
) -> None:
    first = await start_worker("wa", capacity=1)
    second = await start_worker("wb", capacity=1)
    one, a1, c1 = await _rtp_call(bus, "c1")
    two, a2, c2 = await _rtp_call(bus, "c2")
    assert {one.worker_id, two.worker_id} == {"wa", "wb"}
    await asyncio.sleep(0.1)
    # Both full: both left the queue group, so nobody answers.
    with pytest.raises(NoResponders):
        await _rtp_call(bus, "c3")
    # A request that still reaches a full worker is refused with a typed error.
    from shared.bus import Rejected

    with pytest.raises(Rejected) as full:
        await first.create(CreateSession(tenant_id="t1", call_id="c4", kind=SessionKind.RTP_RTP))
    assert full.value.code == "capacity"
    assert first.load() == (1, 1)
    assert second.load() == (1, 1)
    await bus.request(_verb(one, "close"), CloseSession(), SessionClosed)
    await asyncio.sleep(0.2)
    three, a3, c3 = await _rtp_call(bus, "c5")
    assert three.worker_id == one.worker_id  # rejoined below capacity
    for peer in (a1, c1, a2, c2, a3, c3):
        peer.close()


async def test_a_taken_webrtc_port_names_its_setting(bus: Bus, start_worker: StartWorker) -> None:
    worker = await start_worker("wx")
    assert worker.mux is not None
    with pytest.raises(PortInUse) as taken:
        await start_worker("wy", webrtc_port=worker.mux.port)
    assert "ECHODESK_MEDIA_WEBRTC_PORT" in str(taken.value)


async def test_sigterm_drains_the_worker_process(bus: Bus, nats_server: NatsServer) -> None:
    settings = _settings("wdrain")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_INSTANCE_ID": "wdrain",
        "ECHODESK_MEDIA_WEBRTC_PORT": str(settings.webrtc_port),
        "ECHODESK_MEDIA_RTP_PORT_MIN": str(settings.rtp_port_min),
        "ECHODESK_MEDIA_RTP_PORT_MAX": str(settings.rtp_port_max),
        "ECHODESK_MEDIA_BIND_ADDRESS": HOST,
        "ECHODESK_MEDIA_HEALTH_PORT": str(free_port()),
        "ECHODESK_MEDIA_CAPACITY": str(settings.capacity),
        "ECHODESK_DRAIN_TIMEOUT_S": "20",
        "ECHODESK_HEARTBEAT_INTERVAL_S": "0.5",
    }
    heartbeats: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def on_beat(msg: object) -> None:
        heartbeats.put_nowait(json.loads(msg.data))  # type: ignore[attr-defined]

    await bus.nc.subscribe(subjects.heartbeat("media", "wdrain"), cb=on_beat)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.media",
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(15):
            while (await heartbeats.get()).get("state") != "ready":
                pass
        created, agent, customer = await _rtp_call(bus, "c-drain")
        assert created.worker_id == "wdrain"
        beat = await heartbeats.get()
        assert beat["active"] == 1
        # What the HorizontalPodAutoscaler scales on (deploy/k8s/base/media.yaml).
        metrics = await asyncio.to_thread(scrape, str(beat["health_url"]).replace("/healthz", "/metrics"))
        assert metrics[ACTIVE_SESSIONS.describe()[0].name] == 1
        assert metrics[CAPACITY.describe()[0].name] == settings.capacity
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        # Draining: no new sessions, the call in hand goes on.
        with pytest.raises(NoResponders):
            await _rtp_call(bus, "c-new")
        assert process.returncode is None
        agent.start_tone(440)
        await asyncio.sleep(0.3)
        assert customer.received
        await bus.request(_verb(created, "close"), CloseSession(), SessionClosed)
        started = time.monotonic()
        async with asyncio.timeout(10):
            assert await process.wait() == 0
        assert time.monotonic() - started < 5  # it left once the last call closed, not at the deadline
        agent.close()
        customer.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_restarted_signaling_instance_has_its_old_sessions_released(
    bus: Bus, start_worker: StartWorker
) -> None:
    """Signaling publishes ReleaseSessions as it starts: the sessions it owned before (whose calls
    ended with it) close at once; another instance's stay."""
    worker = await start_worker()
    events = await _events(bus, "t1", "*")
    mine, agent_a, customer_a = await _rtp_call(bus, "call-mine", owner="sig-1")
    theirs, agent_b, customer_b = await _rtp_call(bus, "call-theirs", owner="sig-2")
    await bus.publish(subjects.media_release("sig-1"), ReleaseSessions(owner="sig-1"))
    closed = await _next_event(events, MediaEventKind.CLOSED)
    assert (closed.session_id, closed.detail) == (mine.session_id, "owner restarted")
    assert set(worker.bridges) == {theirs.session_id}
    for peer in (agent_a, customer_a, agent_b, customer_b):
        peer.close()


async def test_sessions_of_calls_the_restarted_instance_took_over_are_kept(
    bus: Bus, start_worker: StartWorker
) -> None:
    """The calls a restarted signaling instance took over from KV ``calls`` keep their sessions
    (``keep``); its other old sessions close."""
    worker = await start_worker()
    events = await _events(bus, "t1", "*")
    ended, agent_a, customer_a = await _rtp_call(bus, "call-ended", owner="sig-1")
    kept, agent_b, customer_b = await _rtp_call(bus, "call-kept", owner="sig-1")
    release = ReleaseSessions(owner="sig-1", keep=[kept.session_id])
    await bus.publish(subjects.media_release("sig-1"), release)
    closed = await _next_event(events, MediaEventKind.CLOSED)
    assert closed.session_id == ended.session_id
    assert set(worker.bridges) == {kept.session_id}
    for peer in (agent_a, customer_a, agent_b, customer_b):
        peer.close()
