"""The product's main path: a browser agent calls a customer and hears itself through the carrier.

SIP.js 0.21 in headless Chromium (its fake microphone playing a 440 Hz tone file made here)
registers as agent 100 over SIP over WebSocket and calls 555123456. Signaling answers the INVITE's
407 challenge (SIP.js knows only MD5 and reads only the last Proxy-Authenticate: the gateway offers
SHA-256, then MD5), asks the real media worker for a WebRTC<->RTP session (ICE-lite, DTLS-SRTP, PCMU
passed through) and dials sipp as the carrier, which answers and echoes the RTP. The page analyses
the call's remote audio with WebAudio (Playwright mutes the speakers, which WebAudio never reaches)
and must hear its own 440 Hz. Then the browser hangs up.

The test runs in a network namespace of its own with only loopback (tests/support/netns.py): outside
one, Chromium pairs the machine's own interface with the worker's 127.0.0.1. Inside, its loopback
candidate (``--allow-loopback-in-peer-connection``) is the only one, and nothing can leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from urllib.parse import urlparse

import nats.errors
import pytest

from shared import subjects
from shared.events import CallStatus, Party, RecordingCompleted, parse_event
from tests.support.browser import AUTOPLAY, browser_agent, write_tone
from tests.support.gateway import (
    call_events,
    gateway_stack,
    register_browser,
)
from tests.support.nats import NatsServer
from tests.support.netns import with_nats_isolated
from tests.support.recording import read_wav
from tests.support.rtp_peer import analyse

pytestmark = [pytest.mark.needs_chromium, pytest.mark.needs_sipp, pytest.mark.needs_nats]

TONE_HZ = 440


async def test_browser_agent_calls_a_customer_and_hears_its_own_tone(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    await with_nats_isolated(request, tmp_path, _browser_call)


async def _browser_call(nats_server: NatsServer, tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone-440.wav", TONE_HZ)
    async with gateway_stack(nats_server, tmp_path) as (gateway, carrier):
        async with browser_agent(fake_audio=tone, extra_args=(AUTOPLAY,), step_timeout=20) as agent:
            await register_browser(agent, gateway)
            started = time.monotonic()
            call = await agent.invite("555123456")
            setup_s = time.monotonic() - started
            assert (call.state, call.status) == ("Established", 200)
            assert "a=ice-lite" in call.answer, call.answer
            assert "c=IN IP4 127.0.0.1" in call.answer, call.answer

            heard = await agent.analyse_remote_audio(2.0)
            stats = await agent.call_stats()
            print(f"call set up in {setup_s:.2f} s; heard {heard}; {stats}")
            assert heard.dominant_hz == pytest.approx(TONE_HZ, abs=15), (heard, stats)
            assert heard.rms > 0.05, (heard, stats)  # real energy: the file plays at 0.5 of full scale
            assert heard.purity > 0.8, (heard, stats)
            assert (stats.ice_connection_state, stats.dtls_state) == ("connected", "connected"), stats
            assert stats.codec == "audio/PCMU/8000", stats
            assert stats.packets_received > 50, stats
            # Loopback to loopback: the only interface in the namespace, and our advertised address.
            assert stats.selected_pair is not None, stats
            assert re.fullmatch(
                r"host 127\.0\.0\.1:\d+ -> host 127\.0\.0\.1:\d+ \(succeeded\)", stats.selected_pair
            ), stats

            hangup = await agent.hangup()
            assert (hangup.state, hangup.status) == ("Terminated", 200)

            # The INVITE was challenged once and answered with MD5, the one algorithm SIP.js knows.
            invites = [m for m in await agent.sent() if m.startswith("INVITE ")]
            assert len(invites) == 2, invites
            assert "Proxy-Authorization:" not in invites[0]
            assert "algorithm=MD5" in invites[1]
            challenge = next(m for m in await agent.received() if m.startswith("SIP/2.0 407 "))
            algorithms = [
                line.split("algorithm=")[1].split(",")[0]
                for line in challenge.splitlines()
                if line.lower().startswith("proxy-authenticate:")
            ]
            assert algorithms == ["SHA-256", "MD5"], challenge
        result = await carrier.wait_async(timeout=20)
        result.assert_success(calls=2)
        events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.ringing", "call.answered", "call.ended"]  # type: ignore[attr-defined]
    assert [e.sequence for e in events] == [0, 1, 2, 3]
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.status, ended.ended_by) == (CallStatus.COMPLETED, Party.AGENT)
    assert ended.talk_time_s >= 2.0


async def test_a_recorded_browser_call_yields_a_recording_as_long_as_the_call(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Issue 6's end-to-end check with the real browser: the SIP.js call to sipp is recorded (the
    worker forks the WebRTC leg's and the carrier leg's audio, a recorder process writes the file),
    and recording.completed names a stereo WAV as long as the call's talk time (within 0.1 s) whose
    left channel, the agent, carries the browser's tone."""
    await with_nats_isolated(request, tmp_path, _recorded_browser_call)


async def _recorded_browser_call(nats_server: NatsServer, tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone-440.wav", TONE_HZ)
    async with gateway_stack(nats_server, tmp_path, recorder=True) as (gateway, carrier):
        async with browser_agent(fake_audio=tone, extra_args=(AUTOPLAY,), step_timeout=20) as agent:
            await register_browser(agent, gateway)
            call = await agent.invite("555123456")
            assert (call.state, call.status) == ("Established", 200)
            heard = await agent.analyse_remote_audio(3.0)
            assert heard.dominant_hz == pytest.approx(TONE_HZ, abs=15), heard
            hangup = await agent.hangup()
            assert (hangup.state, hangup.status) == ("Terminated", 200)
        (await carrier.wait_async(timeout=20)).assert_success(calls=2)
        events = await call_events(gateway.bus)
        assert events[0].data.recorded is True  # type: ignore[attr-defined]
        ended = events[-1]
        # Read from the stream's start once the call is over (no consumer to expire meanwhile).
        recordings = await gateway.bus.js.pull_subscribe(
            subjects.recording_events(), stream=subjects.RECORDING_EVENTS.name
        )
        completed = None
        async with asyncio.timeout(30):
            while completed is None:
                with contextlib.suppress(nats.errors.TimeoutError):
                    for msg in await recordings.fetch(10, timeout=0.5):
                        event = parse_event(msg.data)
                        if isinstance(event, RecordingCompleted):
                            completed = event
    assert completed.call_id == ended.call_id
    data = completed.data
    assert (data.format, data.channels, data.sample_rate) == ("wav", 2, 8000), data
    talk = ended.data.talk_time_s  # type: ignore[attr-defined]
    assert talk >= 3.0
    assert data.duration_s == pytest.approx(talk, abs=0.1), (data.duration_s, talk)
    left, right, rate = read_wav(Path(urlparse(data.location).path))
    assert len(left) == pytest.approx(data.duration_s * rate, abs=8)  # duration_s is to the ms
    # The middle of the call: the agent's tone on the left, the carrier's echo of it on the right.
    middle = slice(len(left) // 2 - rate // 2, len(left) // 2 + rate // 2)
    for channel in (left, right):
        found = analyse(channel[middle], rate)
        assert found["dominant_hz"] == pytest.approx(TONE_HZ, abs=15), found
        assert found["rms"] > 500, found
