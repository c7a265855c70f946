"""A recorded call through a real media worker to a real recorder: RTP in, a stereo file out.

The desk phone (agent) plays 440 Hz and the carrier (customer) 1 kHz through an ``rtp-rtp`` bridge
created with ``record=True``; the worker forks both legs onto the bus, a recorder claims the call and
stores the file when the session closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
import pytest

from services.media.service import MediaService
from shared import subjects
from shared.bus import Bus, NoResponders
from shared.events import LegKind, RecordingCompleted
from shared.media import (
    CloseSession,
    CreateSession,
    Done,
    LocalDescription,
    RecordingControl,
    RemoteDescription,
    SessionClosed,
    SessionCreated,
    SessionKind,
)
from shared.service import ServiceContext
from shared.settings import MediaSettings
from shared.supervisor import free_port
from tests.recorder.conftest import RecordingEvents, StartRecorder
from tests.support.nats import NatsServer
from tests.support.recording import read_wav
from tests.support.rtp_peer import RtpPeer, analyse

HOST = "127.0.0.1"

StartWorker = Callable[[], Awaitable[MediaService]]


@pytest.fixture
async def start_worker(nats_server: NatsServer) -> AsyncIterator[StartWorker]:
    started: list[tuple[MediaService, Bus]] = []

    async def start() -> MediaService:
        low = 30000 + free_port() % 20000 // 200 * 200
        settings = MediaSettings(
            instance_id="w1",
            webrtc_port=free_port(),
            rtp_port_min=low,
            rtp_port_max=low + 199,
            bind_address=HOST,
            health_port=0,
        )
        worker_bus = await Bus.connect(nats_server.url, name="media-w1", timeout=10)
        service = MediaService(settings)
        await service.start(ServiceContext(settings=settings, bus=worker_bus))
        started.append((service, worker_bus))
        return service

    yield start
    for service, worker_bus in started:
        await service.stop()
        await worker_bus.close()


async def _recorded_call(bus: Bus, call_id: str) -> tuple[SessionCreated, RtpPeer, RtpPeer]:
    agent = await RtpPeer.open(HOST)
    customer = await RtpPeer.open(HOST)
    request = CreateSession(
        tenant_id="acme",
        call_id=call_id,
        kind=SessionKind.RTP_RTP,
        agent_offer=agent.description(),
        record=True,
    )
    for attempt in range(3):  # the queue-group join race noted in tests/media/test_media_service.py
        try:
            created = await bus.request(subjects.media_session_create(), request, SessionCreated, timeout=5)
            break
        except NoResponders:
            if attempt == 2:
                raise
            await asyncio.sleep(0.2)
    assert created.agent_sdp is not None
    assert created.customer_sdp is not None
    agent.learn(created.agent_sdp)
    customer.learn(created.customer_sdp)
    await bus.request(
        subjects.media_session(created.worker_id, created.session_id, "update"),
        RemoteDescription(leg=LegKind.CUSTOMER, sdp=customer.description(), type="answer"),
        LocalDescription,
    )
    return created, agent, customer


def _zero_runs(samples: npt.NDArray[np.int16], minimum: int = 80) -> list[tuple[int, int]]:
    """(start, length) of each run of exact zeros at least ``minimum`` samples long."""
    runs = []
    start = None
    for index, silent in enumerate(np.append(samples == 0, False)):
        if silent and start is None:
            start = index
        elif not silent and start is not None:
            if index - start >= minimum:
                runs.append((start, index - start))
            start = None
    return runs


async def test_a_recorded_bridge_gives_agent_left_customer_right_with_the_gap_as_silence(
    bus: Bus,
    start_worker: StartWorker,
    start_recorder: StartRecorder,
    recording_events: RecordingEvents,
) -> None:
    worker = await start_worker()
    await start_recorder("r1")
    created, agent, customer = await _recorded_call(bus, "call-fork")
    began = time.monotonic()
    agent.start_tone(440)
    customer.start_tone(1000)
    await asyncio.sleep(1.0)
    agent._paused = True  # the desk phone sends nothing for a while: lost packets, RTP time runs on
    await asyncio.sleep(0.3)
    agent._paused = False
    await asyncio.sleep(0.7)
    closed = await bus.request(
        subjects.media_session(created.worker_id, created.session_id, "close"),
        CloseSession(reason="hangup"),
        SessionClosed,
    )
    lasted = time.monotonic() - began
    agent.close()
    customer.close()
    assert closed.quality

    completed = await recording_events.next("call-fork", "recording.completed")
    assert isinstance(completed, RecordingCompleted)
    left, right, rate = read_wav(urlparse(completed.data.location).path)  # type: ignore[arg-type]
    assert rate == 8000
    # From the first packet to the hang-up: the customer's RTP time (every packet the worker had from
    # it: it never paused) plus no more than 100 ms (the other leg starting first, the hang-up after
    # its last packet).
    received = {quality.leg: quality.packets_received for quality in closed.quality}[LegKind.CUSTOMER]
    extra = len(right) - received * 160
    assert 0 <= extra <= 800, (extra, len(right), received)
    assert len(left) / rate <= lasted + 0.1
    assert abs(analyse(left[800:8000])["dominant_hz"] - 440) <= 2
    assert abs(analyse(right[800:8000])["dominant_hz"] - 1000) <= 2
    assert analyse(left[800:8000])["purity"] > 0.9
    # The agent's silence is one hole of whole packets, about the 300 ms it sent nothing.
    holes = [run for run in _zero_runs(left[:-1600]) if run[0] > 1600]
    assert len(holes) == 1, holes
    start, length = holes[0]
    # Whole packets (plus one sample when the next packet's tone starts on a zero crossing).
    assert length % 160 <= 1, length
    assert 2000 <= length <= 2900, length
    assert 7000 <= start <= 9000, start
    # The customer kept talking: no hole on the right (beyond the first and last moments).
    assert not [run for run in _zero_runs(right[1600:-1600])]
    assert worker.outbox.dropped == 0


async def test_pausing_a_recorded_session_keeps_the_audio_off_the_bus(
    bus: Bus,
    start_worker: StartWorker,
    start_recorder: StartRecorder,
    recording_events: RecordingEvents,
) -> None:
    await start_worker()
    await start_recorder("r1")
    created, agent, customer = await _recorded_call(bus, "call-card")
    agent.start_tone(440)
    customer.start_tone(1000)
    await asyncio.sleep(0.6)
    verb = subjects.media_session(created.worker_id, created.session_id, "record")
    assert await bus.request(verb, RecordingControl(paused=True), Done) == Done()
    await asyncio.sleep(0.6)
    await bus.request(verb, RecordingControl(paused=False), Done)
    await asyncio.sleep(0.6)
    await bus.request(
        subjects.media_session(created.worker_id, created.session_id, "close"), CloseSession(), SessionClosed
    )
    agent.close()
    customer.close()
    completed = await recording_events.next("call-card", "recording.completed")
    assert isinstance(completed, RecordingCompleted)
    # About the 0.6 s between the two requests (their own latencies blur it a little).
    paused = completed.data.paused_s
    assert 0.4 <= paused <= 1.0, paused
    left, right, _ = read_wav(urlparse(completed.data.location).path)  # type: ignore[arg-type]
    for channel in (left, right):
        holes = [run for run in _zero_runs(channel[:-800]) if run[0] > 800]
        assert len(holes) == 1, holes
        # The silence is the paused span, to within the packet on either side of it.
        assert abs(holes[0][1] / 8000 - paused) <= 0.045, (holes, paused)


async def test_a_nats_restart_mid_call_loses_no_audio(
    bus: Bus,
    nats_server: NatsServer,
    start_worker: StartWorker,
    start_recorder: StartRecorder,
    recording_events: RecordingEvents,
) -> None:
    worker = await start_worker()
    await start_recorder("r1")
    created, agent, customer = await _recorded_call(bus, "call-restart")
    agent.start_tone(440)
    customer.start_tone(1000)
    await asyncio.sleep(1.0)
    relayed_before = customer.received[-1].sequence
    # NATS goes away for a second: the call goes on (media never waits on the bus), the worker keeps
    # the chunks, and the recorder reads what it missed from the stream once NATS is back.
    await asyncio.to_thread(nats_server.restart, 1.0)
    assert (customer.received[-1].sequence - relayed_before) % 65536 > 50  # audio flowed meanwhile
    await asyncio.sleep(1.5)
    await bus.request(
        subjects.media_session(created.worker_id, created.session_id, "close"),
        CloseSession(reason="hangup"),
        SessionClosed,
        timeout=10,
    )
    agent.close()
    customer.close()
    completed = await recording_events.next("call-restart", "recording.completed", timeout=60)
    assert isinstance(completed, RecordingCompleted)
    assert completed.data.chunks_missing == 0
    assert worker.outbox.dropped == 0
    left, right, _ = read_wav(urlparse(completed.data.location).path)  # type: ignore[arg-type]
    assert len(left) / 8000 > 3.0
    for channel in (left, right):
        assert not _zero_runs(channel[1600:-1600]), _zero_runs(channel[1600:-1600])
