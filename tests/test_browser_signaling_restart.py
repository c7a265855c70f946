"""A browser agent's call through a signaling process that is killed and replaced (issue 11).

SIP.js 0.21 in headless Chromium, registered with an RFC 5626 instance id as our softphone does,
calls a customer (sipp as the carrier, echoing RTP). The signaling process gets SIGKILL: the
browser's WebSocket dies with it, the audio does not (it never went through signaling). A new
process with the same instance id and ports takes the call over from KV ``calls`` and waits for the
browser, as after a network drop; the page reconnects and registers again, still hears its tone,
and its BYE, over the new WebSocket, ends the call on both legs with one ``call.ended``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.signaling.b2bua.call_store import load
from shared import subjects
from shared.events import CallEnded, CallStatus, EndCause, Party
from tests.support.browser import AUTOPLAY, BrowserAgent, browser_agent, write_tone
from tests.support.gateway import (
    call_events,
    gateway_stack,
    register_browser,
)
from tests.support.nats import NatsServer
from tests.support.netns import with_nats_isolated

pytestmark = [pytest.mark.needs_chromium, pytest.mark.needs_sipp, pytest.mark.needs_nats]

TONE_HZ = 440
NODE = "signaling-1"


async def _hears_its_tone(agent: BrowserAgent) -> None:
    heard = await agent.analyse_remote_audio(1.5)
    assert heard.dominant_hz == pytest.approx(TONE_HZ, abs=15), heard
    assert heard.purity > 0.8, heard
    assert heard.rms > 0.02, heard


async def test_a_browser_call_survives_sigkill_of_signaling(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    await with_nats_isolated(request, tmp_path, _survives)


async def _survives(nats_server: NatsServer, tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone-440.wav", TONE_HZ)
    settings = {"ECHODESK_INSTANCE_ID": NODE, "ECHODESK_SIGNALING_AGENT_RECONNECT_GRACE_S": "30"}
    async with gateway_stack(nats_server, tmp_path, signaling_settings=settings) as (gateway, carrier):
        async with browser_agent(fake_audio=tone, extra_args=(AUTOPLAY,), step_timeout=20) as agent:
            await register_browser(agent, gateway)
            call = await agent.invite("555123456")
            assert (call.state, call.status) == ("Established", 200)
            await _hears_its_tone(agent)
            kv = await gateway.bus.bucket(subjects.CALLS_KV)
            async with asyncio.timeout(10):
                while not any(b'"connected":true' in v for v in (await load(kv, NODE)).values()):
                    await asyncio.sleep(0.05)
            gateway.kill_signaling()
            async with asyncio.timeout(10):
                while (await agent.state()).transport != "Disconnected":
                    await asyncio.sleep(0.1)
            await _hears_its_tone(agent)  # the audio goes on with signaling dead
            await gateway.start_signaling()
            await _hears_its_tone(agent)
            assert (await agent.state()).session == "Established"
            registration = await agent.reconnect()
            assert registration.state == "Registered"
            await _hears_its_tone(agent)
            hangup = await agent.hangup()
            assert (hangup.state, hangup.status) == ("Terminated", 200)
        # The carrier got the BYE the new instance passed on: its scenario completed.
        (await carrier.wait_async(timeout=20)).assert_success(calls=2)
        events = await call_events(gateway.bus)
    types = [e.type for e in events if e.type != "call.quality"]  # type: ignore[attr-defined]
    assert types == ["call.created", "call.ringing", "call.answered", "call.ended"]
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences)), sequences
    ended = events[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.data.status, ended.data.cause, ended.data.ended_by) == (
        CallStatus.COMPLETED,
        EndCause.NORMAL_CLEARING,
        Party.AGENT,
    )
