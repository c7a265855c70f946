"""A browser agent's WebSocket drops in the middle of a call (issue: calls that survive).

SIP.js 0.21 in headless Chromium calls a customer (sipp as the carrier, echoing RTP) as in
tests/test_browser_call.py, with an RFC 5626 instance id as our softphone sets it. Then the page
drops its WebSocket. The call's audio never passed through signaling, so it must go on: the page
keeps hearing its own 440 Hz through the carrier (both directions) while disconnected. Back within
the grace period, the page registers again over a new WebSocket and its BYE ends the call normally.
Not back in time, the call ends with ``agent_connection_lost``: the carrier gets its BYE at the
deadline, and the browser gets its own as soon as it registers again.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.events import CallStatus, EndCause, Party
from tests.support.browser import AUTOPLAY, BrowserAgent, browser_agent, write_tone
from tests.support.gateway import (
    Gateway,
    call_events,
    gateway_stack,
    register_browser,
)
from tests.support.nats import NatsServer
from tests.support.netns import with_nats_isolated

pytestmark = [pytest.mark.needs_chromium, pytest.mark.needs_sipp, pytest.mark.needs_nats]

TONE_HZ = 440
#: How long the test keeps the browser off the network (the issue's figure).
CUT_S = 10.0


@pytest.mark.parametrize("back_in_time", [True, False], ids=["back-within-grace", "grace-runs-out"])
async def test_a_dropped_websocket_keeps_the_call_and_its_audio(
    request: pytest.FixtureRequest, tmp_path: Path, back_in_time: bool
) -> None:
    await with_nats_isolated(request, tmp_path, _back_within_grace if back_in_time else _grace_runs_out)


async def _established_call(gateway: Gateway, agent: BrowserAgent) -> None:
    await register_browser(agent, gateway)
    call = await agent.invite("555123456")
    assert (call.state, call.status) == ("Established", 200)
    await _hears_its_tone(agent)


async def _hears_its_tone(agent: BrowserAgent) -> None:
    heard = await agent.analyse_remote_audio(1.5)
    assert heard.dominant_hz == pytest.approx(TONE_HZ, abs=15), heard
    assert heard.purity > 0.8, heard
    assert heard.rms > 0.02, heard  # silence is ~0; the echoed tone measured 0.04-0.1


async def _cut(agent: BrowserAgent, seconds: float) -> None:
    """Off the network for ``seconds``, checking the echoed tone all along."""
    state = await agent.disconnect()
    assert state.transport == "Disconnected", state
    started = time.monotonic()
    while time.monotonic() - started < seconds - 1.5:
        await _hears_its_tone(agent)
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))


async def _back_within_grace(nats_server: NatsServer, tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone-440.wav", TONE_HZ)
    settings = {"ECHODESK_SIGNALING_AGENT_RECONNECT_GRACE_S": str(CUT_S * 3)}
    async with gateway_stack(nats_server, tmp_path, signaling_settings=settings) as (gateway, carrier):
        async with browser_agent(fake_audio=tone, extra_args=(AUTOPLAY,), step_timeout=20) as agent:
            await _established_call(gateway, agent)
            await _cut(agent, CUT_S)
            registration = await agent.reconnect()
            assert registration.state == "Registered"
            await _hears_its_tone(agent)
            hangup = await agent.hangup()
            assert (hangup.state, hangup.status) == ("Terminated", 200)
            # The BYE went over the new WebSocket: the old one is closed.
            assert (await agent.state()).transport == "Connected"
        result = await carrier.wait_async(timeout=20)
        result.assert_success(calls=2)
        events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.ringing", "call.answered", "call.ended"]  # type: ignore[attr-defined]
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.status, ended.ended_by) == (CallStatus.COMPLETED, Party.AGENT)
    assert ended.talk_time_s >= CUT_S


async def _grace_runs_out(nats_server: NatsServer, tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone-440.wav", TONE_HZ)
    grace_s = 3.0
    settings = {"ECHODESK_SIGNALING_AGENT_RECONNECT_GRACE_S": str(grace_s)}
    async with (
        gateway_stack(nats_server, tmp_path, signaling_settings=settings) as (gateway, carrier),
        browser_agent(fake_audio=tone, extra_args=(AUTOPLAY,), step_timeout=20) as agent,
    ):
        await _established_call(gateway, agent)
        dropped = time.monotonic()
        await agent.disconnect()
        events = await call_events(gateway.bus, timeout=grace_s + 10)
        waited = time.monotonic() - dropped
        ended = events[-1].data  # type: ignore[attr-defined]
        assert ended.cause is EndCause.AGENT_CONNECTION_LOST, ended
        assert (ended.status, ended.ended_by) == (CallStatus.COMPLETED, Party.SYSTEM), ended
        assert waited >= grace_s - 0.5, waited
        assert ended.message
        # The carrier's leg ended at the deadline; the browser's ends when it is back.
        result = await carrier.wait_async(timeout=20)
        result.assert_success(calls=2)
        assert (await agent.state()).session == "Established"
        assert (await agent.reconnect()).state == "Registered"
        state = await agent.wait_for_session("Terminated", timeout=10)
        assert state.session == "Terminated"
