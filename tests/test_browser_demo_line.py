"""The demo line from a browser: SIP.js 0.21 in headless Chromium dials ``*44`` and hears the prompt.

The agent registers over SIP over WebSocket, its INVITE is challenged and answered, and the media
worker opens an ``announcement`` session on the browser's offer (ICE-lite, DTLS-SRTP, G.711 only).
The page analyses the call's remote audio with WebAudio for 1.2 s from when the call is
established, within the prompt's opening chime (1.44 s; the words espeak-ng may say come after it):
its strongest frequency must be one of the chime's notes, not the 440 Hz the browser's fake
microphone sends (the demo line is no echo), and it must carry energy. No carrier is involved.
As in test_browser_call.py the test runs in a network namespace with only loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.media.prompt import CHIME_NOTES
from shared.events import CallStatus, Direction, Party
from tests.support.browser import AUTOPLAY, browser_agent, write_tone
from tests.support.gateway import (
    call_events,
    gateway_stack,
    register_browser,
)
from tests.support.nats import NatsServer
from tests.support.netns import with_nats_isolated

pytestmark = [pytest.mark.needs_chromium, pytest.mark.needs_sipp, pytest.mark.needs_nats]


async def test_browser_agent_dials_the_demo_line_and_hears_the_prompt(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    await with_nats_isolated(request, tmp_path, _demo_call)


async def _demo_call(nats_server: NatsServer, tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone-440.wav", 440)
    async with gateway_stack(nats_server, tmp_path) as (gateway, _):
        async with browser_agent(fake_audio=tone, extra_args=(AUTOPLAY,), step_timeout=20) as agent:
            await register_browser(agent, gateway)
            call = await agent.invite("*44")
            assert (call.state, call.status) == ("Established", 200)
            assert "a=ice-lite" in call.answer, call.answer
            assert "opus" not in call.answer, call.answer  # the worker encodes the prompt in G.711

            heard = await agent.analyse_remote_audio(1.2)
            stats = await agent.call_stats()
            print(f"heard {heard}; {stats}")
            notes = [frequency for frequency, _ in CHIME_NOTES]
            assert min(abs(heard.dominant_hz - note) for note in notes) <= 15, (heard, stats)
            assert heard.rms > 0.02, (heard, stats)  # the chime peaks near a quarter of full scale
            assert (stats.ice_connection_state, stats.dtls_state) == ("connected", "connected"), stats
            assert stats.codec == "audio/PCMU/8000", stats
            assert stats.packets_received > 50, stats

            hangup = await agent.hangup()
            assert (hangup.state, hangup.status) == ("Terminated", 200)
        events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.answered", "call.ended"]  # type: ignore[attr-defined]
    created = events[0].data  # type: ignore[attr-defined]
    assert (created.to_number, created.direction) == ("*44", Direction.INTERNAL)
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.status, ended.ended_by) == (CallStatus.COMPLETED, Party.AGENT)
