"""The demo line end to end: a desk-phone agent (our test UA with an RTP endpoint) dials ``*44``;
signaling authenticates it and answers with a real media worker's ``announcement`` session over a real
nats-server, and the phone hears the prompt: the worker's chime, frame for frame, in the codec the
answer named (the words espeak-ng may say after it are the media tests' business). Then the agent
hangs up and the call's events are the echo line's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from services.media.g711 import alaw_to_linear, ulaw_to_linear
from services.media.prompt import CHIME_NOTES, chime
from shared.events import CallStatus, Direction, Party
from shared.sdp import SessionDescription
from tests.support.desk_phone import acknowledge, hang_up, place_call
from tests.support.gateway import Gateway, call_events, gateway_stack
from tests.support.nats import NatsServer
from tests.support.prompt_stream import frame_indexes, frames_heard
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.sipp import Sipp

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Gateway, Sipp]]:
    async with gateway_stack(nats_server, tmp_path) as running:
        yield running


async def _heard(phone: RtpPeer, frames: int) -> None:
    async with asyncio.timeout(10):
        while max(frame_indexes(phone.received), default=-1) < frames - 1:
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
        await _heard(phone, len(prompt))
        heard = frames_heard(list(phone.received), payload_type)
        # The chime from its first frame, each frame where its timestamp puts it (a stalled worker
        # skips frames, never reorders them), nearly all of it.
        chime_part = {index: payload for index, payload in heard.items() if index < len(prompt)}
        assert all(payload == prompt[index] for index, payload in chime_part.items())
        assert 0 in chime_part
        assert len(chime_part) >= 0.75 * len(prompt)
        table = ulaw_to_linear if payload_type == 0 else alaw_to_linear
        samples = np.array([table(code) for code in b"".join(chime_part.values())], dtype=np.int16)
        sound = analyse(samples)
        assert sound["rms"] > 1000, sound
        # Its strongest note is the chime's last (C6), not the 700 Hz the phone sends.
        assert sound["dominant_hz"] == pytest.approx(CHIME_NOTES[-1][0], abs=15), sound
        assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
    finally:
        phone.close()
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.answered", "call.ended"]  # type: ignore[attr-defined]
    created = events[0].data  # type: ignore[attr-defined]
    assert (created.to_number, created.direction) == ("*44", Direction.INTERNAL)
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.status, ended.ended_by) == (CallStatus.COMPLETED, Party.AGENT)
