"""The demo line's announcement: the prompt as RTP (RFC 3550 section 5.1, RFC 3551 section 4.5.14).

First the player alone, driven with explicit times (no sleeping, no timed assertions): how many
packets a span of time yields, their headers, their audio. Then the prompt itself: the chime, and
the words espeak-ng says after it (cached; without espeak-ng or with a voice it lacks, the chime
alone). Then an ``announcement`` session on a real worker over a real nats-server, heard by a desk
phone (an RTP peer on loopback).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from services.media import prompt as prompt_module
from services.media.announcement import FRAME_S, MAX_BURST, Announcement
from services.media.g711 import alaw_to_linear, ulaw_to_linear
from services.media.prompt import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    SILENCE,
    Prompt,
    SpeechError,
    chime,
    demo_prompt,
    spoken,
)
from services.media.rtp import OutboundStream
from services.media.service import MediaService
from shared import subjects
from shared.bus import Bus, RemoteError
from shared.events import LegKind
from shared.media import (
    CloseSession,
    CreateSession,
    LocalDescription,
    MediaEvent,
    MediaEventKind,
    RemoteDescription,
    SessionClosed,
    SessionKind,
)
from shared.service import ServiceContext
from shared.settings import MediaSettings
from shared.supervisor import free_port
from tests.support.media import create_session
from tests.support.nats import NatsServer
from tests.support.prompt_stream import frame_indexes, frames_heard
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.tools import require_tool

HEADER = struct.Struct("!BBHII")
HOST = "127.0.0.1"
ULAW = np.array([ulaw_to_linear(code) for code in range(256)], dtype=np.int16)
ALAW = np.array([alaw_to_linear(code) for code in range(256)], dtype=np.int16)


class Player:
    """An :class:`Announcement` with a recording send function and a readiness switch."""

    def __init__(self, prompt: Prompt, encoding: str = "PCMU", payload_type: int = 0) -> None:
        self.packets: list[bytes] = []
        self.is_ready = False
        self.played = 0
        self.stream = OutboundStream(clock=lambda: 0.0)
        self.announcement = Announcement(
            prompt.frames(encoding),
            encoding=encoding,
            payload_type=payload_type,
            stream=self.stream,
            send=self._send,
            ready=lambda: self.is_ready,
            on_played=self._played,
            pause_s=0.2,
            clock=lambda: 0.0,
        )

    def _send(self, packet: bytes) -> bool:
        self.packets.append(packet)
        return True

    def _played(self) -> None:
        self.played += 1

    def run(self, start: float, stop: float, step: float) -> None:
        """Tick at ``start``, ``start + step``, ... up to ``stop`` inclusive."""
        for index in itertools.count():
            now = start + index * step
            if now > stop + 1e-9:
                return
            self.announcement.tick(now)

    def headers(self) -> list[tuple[int, int, int, int, int]]:
        return [HEADER.unpack_from(packet) for packet in self.packets]


@pytest.fixture(scope="module")
def prompt() -> Prompt:
    return chime()


def test_the_chime_is_audible_in_the_telephone_band_and_short(prompt: Prompt) -> None:
    assert 1.0 <= prompt.duration_s <= 2.0
    heard = analyse(prompt.samples)
    assert 500 <= heard["dominant_hz"] <= 1100, heard
    assert heard["rms"] > 1000, heard
    assert int(np.max(np.abs(prompt.samples.astype(np.int32)))) < 32767  # no clipping
    frames = prompt.frames("PCMU")
    assert {len(frame) for frame in frames} == {FRAME_SAMPLES}
    assert len(frames) == -(-len(prompt.samples) // FRAME_SAMPLES)
    with pytest.raises(ValueError, match="PCMU or PCMA"):
        prompt.frames("opus")


def test_nothing_is_sent_until_the_leg_is_ready(prompt: Prompt) -> None:
    player = Player(prompt)
    player.run(0.0, 0.5, 0.02)
    assert player.packets == []
    assert not player.announcement.started
    player.is_ready = True
    player.announcement.tick(0.52)
    assert len(player.packets) == 1
    # The prompt begins at its first frame, not 26 frames in.
    assert player.packets[0][12:] == prompt.frames("PCMU")[0]


def test_fifty_packets_a_second_well_formed_and_the_prompt_in_them(prompt: Prompt) -> None:
    player = Player(prompt)
    player.is_ready = True
    # Ticks at an odd period: the rate follows time, not how often the timer fires.
    player.run(10.0, 14.0, 0.013)
    player.announcement.tick(14.0)
    headers = player.headers()
    # Frames 0 to 200 are due by 4 s after the first: 50 a second.
    assert len(headers) == 4 * 50 + 1
    ssrc = player.stream.ssrc
    for (first, second, _, _, source), packet in zip(headers, player.packets, strict=True):
        assert first == 0x80  # version 2, no padding, no extension, no CSRC
        assert second & 0x7F == 0  # PCMU
        assert source == ssrc
        assert len(packet) == 12 + FRAME_SAMPLES
    assert [bool(second & 0x80) for _, second, _, _, _ in headers] == [True] + [False] * 200
    for a, b in itertools.pairwise(headers):
        assert (b[2] - a[2]) & 0xFFFF == 1
        assert (b[3] - a[3]) & 0xFFFFFFFF == FRAME_SAMPLES
    # The audio: the prompt, then 0.2 s of silence, then the prompt again.
    frames = prompt.frames("PCMU")
    payloads = [packet[12:] for packet in player.packets]
    cycle = len(frames) + 10
    assert payloads[: len(frames)] == list(frames)
    assert set(payloads[len(frames) : cycle]) == {SILENCE["PCMU"] * FRAME_SAMPLES}
    assert payloads[cycle : cycle + len(frames)] == list(frames)
    heard = ULAW[np.frombuffer(b"".join(payloads[: len(frames)]), dtype=np.uint8)]
    assert analyse(heard)["rms"] > 1000
    # Played through twice (cycles of 1.64 s in 4 s); signaling is told once.
    assert player.announcement.plays == 2
    assert player.played == 1


def test_a_stalled_loop_skips_late_frames_instead_of_bursting(prompt: Prompt) -> None:
    player = Player(prompt)
    player.is_ready = True
    player.announcement.tick(0.0)
    player.announcement.tick(1.0)  # 50 frames late
    headers = player.headers()
    assert len(headers) == 1 + MAX_BURST
    assert player.announcement.skipped == 50 - MAX_BURST
    # The first packet after the gap is marked and its timestamp says when it belongs.
    assert headers[1][1] & 0x80
    assert (headers[-1][3] - headers[0][3]) & 0xFFFFFFFF == 50 * FRAME_SAMPLES
    assert (headers[-1][2] - headers[0][2]) & 0xFFFF == MAX_BURST
    assert player.packets[-1][12:] == prompt.frames("PCMU")[50]
    # And on time again from there.
    next_due = player.announcement.tick(1.0 + FRAME_S)
    assert len(player.packets) == 2 + MAX_BURST
    assert next_due == pytest.approx(1.0 + 2 * FRAME_S)


def test_a_law_leg_gets_pcma_and_our_dtmf_pauses_the_prompt(prompt: Prompt) -> None:
    player = Player(prompt, "PCMA", 8)
    player.is_ready = True
    player.run(0.0, 0.2, 0.02)
    assert len(player.packets) == 11
    assert {second & 0x7F for _, second, _, _, _ in player.headers()} == {8}
    heard = ALAW[np.frombuffer(b"".join(p[12:] for p in player.packets), dtype=np.uint8)]
    assert analyse(heard)["rms"] > 500
    player.stream.paused = True  # Bridge.send_dtmf owns the stream
    player.run(0.22, 0.4, 0.02)
    assert len(player.packets) == 11
    player.stream.paused = False
    player.announcement.tick(0.42)
    # The prompt went on meanwhile: this is frame 21.
    assert player.packets[-1][12:] == prompt.frames("PCMA")[21]


# -- the words after the chime

WORDS = "Welcome to EchoDesk. Your call is working."


def test_espeak_ng_says_the_words_at_8_khz_once_and_the_cache_serves_them_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("espeak-ng")
    cache = tmp_path / "prompts"
    words = spoken(WORDS, "en-us", cache)
    assert words is not None
    assert words.dtype == np.int16
    # Seven words at 150 a minute, with espeak-ng's pauses at the full stops.
    assert 1.5 <= len(words) / SAMPLE_RATE <= 5.0
    heard = analyse(words)
    assert heard["rms"] > 1000, heard
    assert 80 <= heard["dominant_hz"] <= 1500, heard  # a voice, not a tone or noise at the band's edge
    assert int(np.max(np.abs(words.astype(np.int32)))) <= prompt_module.SPEECH_PEAK
    [cached] = cache.iterdir()
    # From the cache, espeak-ng is not needed: the same samples.
    monkeypatch.setattr(shutil, "which", lambda name: None)
    again = spoken(WORDS, "en-us", cache)
    assert again is not None
    assert np.array_equal(again, words)
    # Other words are another file, which without espeak-ng cannot be made.
    assert spoken("Goodbye.", "en-us", cache) is None
    assert list(cache.iterdir()) == [cached]


def test_the_demo_prompt_is_the_chime_then_the_words(tmp_path: Path) -> None:
    require_tool("espeak-ng")
    bell = chime()
    prompt = demo_prompt(WORDS, "en-us", tmp_path)
    assert prompt.name == "chime and words"
    assert prompt.duration_s > bell.duration_s + 1.5
    # The chime first, untouched: a caller hears the same opening either way.
    whole = len(bell.samples) // FRAME_SAMPLES
    assert prompt.frames("PCMU")[:whole] == bell.frames("PCMU")[:whole]
    tail = prompt.samples[len(bell.samples) + round(prompt_module.WORDS_AFTER_S * SAMPLE_RATE) :]
    assert analyse(tail)["rms"] > 1000


def test_a_voice_espeak_ng_lacks_is_an_error_with_its_words(tmp_path: Path) -> None:
    require_tool("espeak-ng")
    with pytest.raises(SpeechError, match="xx-none"):
        spoken(WORDS, "xx-none", tmp_path)
    assert not list(tmp_path.iterdir())


def test_without_words_or_without_espeak_ng_the_prompt_is_the_chime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert demo_prompt("  ", "en-us", tmp_path).name == "chime"
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert demo_prompt(WORDS, "en-us", tmp_path).name == "chime"
    assert not list(tmp_path.iterdir())


async def test_a_worker_whose_voice_fails_starts_with_the_chime(tmp_path: Path) -> None:
    require_tool("espeak-ng")
    service = MediaService(
        MediaSettings(instance_id="wvoice", data_dir=tmp_path, demo_voice="xx-none", health_port=0)
    )
    prompt = await asyncio.to_thread(service._demo_prompt)
    assert prompt.name == "chime"
    assert prompt.frames("PCMA")  # encoded up front, off the event loop


async def test_a_worker_says_its_words_after_the_chime(tmp_path: Path) -> None:
    require_tool("espeak-ng")
    service = MediaService(
        MediaSettings(instance_id="wwords", data_dir=tmp_path, demo_words="Hello.", health_port=0)
    )
    prompt = await asyncio.to_thread(service._demo_prompt)
    assert prompt.name == "chime and words"
    [cached] = (tmp_path / "prompts").iterdir()  # under the data directory
    assert cached.name.startswith("words-")


# -- a real worker on a real nats-server


@pytest.fixture
async def worker(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[MediaService]:
    settings = MediaSettings(
        instance_id="wdemo",
        webrtc_port=free_port(),
        rtp_port_min=23000,
        rtp_port_max=23099,
        bind_address=HOST,
        capacity=4,
        health_port=0,
        data_dir=tmp_path,
    )
    worker_bus = await Bus.connect(nats_server.url, name="media-wdemo", timeout=10)
    service = MediaService(settings)
    await service.start(ServiceContext(settings=settings, bus=worker_bus))
    try:
        yield service
    finally:
        await service.stop()
        await worker_bus.close()


@pytest.mark.parametrize(("codecs", "payload_type"), [("0 8", 0), ("8", 8)])
async def test_a_desk_phone_hears_the_prompt_until_the_session_closes(
    bus: Bus, worker: MediaService, codecs: str, payload_type: int
) -> None:
    events: asyncio.Queue[MediaEvent] = asyncio.Queue()

    async def on_event(event: MediaEvent, subject: str) -> None:
        events.put_nowait(event)

    await bus.subscribe(subjects.media_events("t1", "demo-1"), MediaEvent, on_event)
    await bus.nc.flush()
    phone = await RtpPeer.open(HOST)
    try:
        created = await create_session(
            bus,
            CreateSession(
                tenant_id="t1",
                call_id="demo-1",
                kind=SessionKind.ANNOUNCEMENT,
                agent_offer=phone.description(codecs=codecs),
            ),
        )
        assert created.customer_sdp is None
        assert created.agent_sdp is not None
        assert f"RTP/AVP {payload_type} 101" in created.agent_sdp
        phone.learn(created.agent_sdp)
        phone.start_tone(440)  # the phone talks too: the worker receives it and plays on
        async with asyncio.timeout(10):
            while True:
                event = await events.get()
                if event.kind is MediaEventKind.ANNOUNCEMENT_PLAYED:
                    break
        assert (event.session_id, event.leg) == (created.session_id, LegKind.AGENT)
        frames = worker.prompt.frames("PCMU" if payload_type == 0 else "PCMA")
        async with asyncio.timeout(5):
            # The event may overtake the last packets: the bus and the phone's socket race.
            while max(frame_indexes(phone.received), default=-1) < len(frames) - 1:
                await asyncio.sleep(0.02)
        heard = frames_heard(list(phone.received), payload_type)
        # What the phone heard is the prompt, each frame where its timestamp puts it (a worker that
        # stalls skips frames, never reorders them), nearly all of it, and it is not silence.
        prompt_part = {index: payload for index, payload in heard.items() if index < len(frames)}
        assert all(payload == frames[index] for index, payload in prompt_part.items())
        assert len(prompt_part) >= 0.75 * len(frames)
        assert 0 in prompt_part
        table = ULAW if payload_type == 0 else ALAW
        samples = table[np.frombuffer(b"".join(prompt_part.values()), dtype=np.uint8)]
        assert analyse(samples)["rms"] > 500
        closed = await bus.request(
            subjects.media_session(created.worker_id, created.session_id, "close"),
            CloseSession(reason="hangup"),
            SessionClosed,
        )
        [quality] = closed.quality
        # The phone's PCMU arrived and was dropped (on the A-law leg it is a payload type it never
        # negotiated, refused at the door).
        assert (quality.packets_received > 0) is (payload_type == 0), quality
        await asyncio.sleep(0.05)  # what was on its way before the close arrives
        count = len(phone.received)
        # Closed means closed: many more packet times bring nothing.
        await asyncio.sleep(0.3)
        assert len(phone.received) == count
    finally:
        phone.close()


async def test_a_re_offer_in_the_other_law_moves_the_prompt_to_it(bus: Bus, worker: MediaService) -> None:
    phone = await RtpPeer.open(HOST)
    try:
        created = await create_session(
            bus,
            CreateSession(
                tenant_id="t1",
                call_id="demo-3",
                kind=SessionKind.ANNOUNCEMENT,
                agent_offer=phone.description(codecs="0"),
            ),
        )
        assert created.agent_sdp is not None
        phone.learn(created.agent_sdp)
        async with asyncio.timeout(5):
            while len(phone.received) < 10:
                await asyncio.sleep(0.02)
        # The phone re-offers A-law only (RFC 3264 section 8.3.2): the answer takes it and the
        # prompt starts again in it, in the same stream (our SSRC, the next sequence numbers).
        answer = await bus.request(
            subjects.media_session(created.worker_id, created.session_id, "update"),
            RemoteDescription(leg=LegKind.AGENT, sdp=phone.description(codecs="8"), type="offer"),
            LocalDescription,
        )
        assert answer.sdp is not None
        assert "RTP/AVP 8 101" in answer.sdp
        switched = len(phone.received)
        async with asyncio.timeout(5):
            while len(phone.received) < switched + 10:
                await asyncio.sleep(0.02)
        received = list(phone.received)
        assert len({r.ssrc for r in received}) == 1
        assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in itertools.pairwise(received))
        laws = [r.payload_type for r in received]
        first_alaw = laws.index(8)
        assert set(laws[:first_alaw]) == {0}
        assert set(laws[first_alaw:]) == {8}
        assert received[first_alaw].marker
        assert received[first_alaw].payload == worker.prompt.frames("PCMA")[0]
    finally:
        phone.close()


async def test_an_announcement_needs_the_callers_offer(bus: Bus, worker: MediaService) -> None:
    with pytest.raises(RemoteError, match="offer"):
        await create_session(
            bus, CreateSession(tenant_id="t1", call_id="demo-2", kind=SessionKind.ANNOUNCEMENT)
        )
