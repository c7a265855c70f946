"""The demo line end to end: a desk-phone agent (our test UA with an RTP endpoint) dials ``*44``;
signaling authenticates it and answers with a real media worker's ``announcement`` session over a real
nats-server, and the phone hears the prompt: the worker's chime, frame for frame, in the codec the
answer named. Then the agent hangs up and the call's events are the echo line's."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from services.media.g711 import alaw_to_linear, ulaw_to_linear
from services.media.prompt import CHIME_NOTES, FRAME_SAMPLES, SAMPLE_RATE, chime
from shared.events import CallStatus, Direction, Party
from shared.sdp import SessionDescription
from tests.support.desk_phone import acknowledge, hang_up, place_call
from tests.support.gateway import Gateway, call_events, gateway_stack
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.sipp import Sipp

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Gateway, Sipp]]:
    async with gateway_stack(nats_server, tmp_path) as running:
        yield running


async def _heard(phone: RtpPeer, packets: int) -> None:
    async with asyncio.timeout(10):
        while len(phone.received) < packets:
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(("codecs", "encoding", "payload_type"), [("0 8", "PCMU", 0), ("8", "PCMA", 8)])
async def test_a_desk_phone_dials_the_demo_line_and_hears_the_prompt(
    stack: tuple[Gateway, Sipp], codecs: str, encoding: str, payload_type: int
) -> None:
    gateway, _ = stack
    prompt = chime().frames(encoding)
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, answered, dialog = await asyncio.to_thread(
            place_call, gateway.sip, phone.description(codecs=codecs), "*44"
        )
        assert answered.status_code == 200, answered
        answer = SessionDescription.parse(answered.body.decode())
        assert answer.media[0].codecs[0].name == encoding
        phone.learn(answered.body.decode())
        target = acknowledge(client, answered)
        phone.start_tone(700)  # the agent talks; the demo line plays on regardless
        await _heard(phone, len(prompt) + 10)
        received = list(phone.received)
        assert {r.payload_type for r in received} == {payload_type}
        assert len({r.ssrc for r in received}) == 1
        assert received[0].marker
        for a, b in itertools.pairwise(received):
            assert (b.sequence - a.sequence) & 0xFFFF == 1
            assert (b.timestamp - a.timestamp) & 0xFFFFFFFF == FRAME_SAMPLES
        # The prompt from its first frame, and it is sound, not silence.
        assert [r.payload for r in received[: len(prompt)]] == list(prompt)
        table = ulaw_to_linear if payload_type == 0 else alaw_to_linear
        samples = np.array([table(code) for code in b"".join(r.payload for r in received)], dtype=np.int16)
        heard = analyse(samples[: len(prompt) * FRAME_SAMPLES])
        assert heard["rms"] > 1000, heard
        # Its strongest note is the chime's last (C6), not the 700 Hz the phone sends.
        assert heard["dominant_hz"] == pytest.approx(CHIME_NOTES[-1][0], abs=15), heard
        assert len(samples) >= SAMPLE_RATE
        assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
    finally:
        phone.close()
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.answered", "call.ended"]  # type: ignore[attr-defined]
    created = events[0].data  # type: ignore[attr-defined]
    assert (created.to_number, created.direction) == ("*44", Direction.INTERNAL)
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.status, ended.ended_by) == (CallStatus.COMPLETED, Party.AGENT)
