"""Blind transfer from a browser: SIP.js 0.21 in headless Chromium answers a customer's call as
agent 100 and transfers it with ``session.refer`` to agent 101, another browser. sipp plays the
carrier and echoes the audio it gets, so each browser hearing its own tone back proves audio both
ways with the customer: 100 before the transfer, 101 after it on a WebRTC leg the worker prepared
while the customer's leg stayed. Agent 100's call ends with our BYE after the final NOTIFY.

Runs in a loopback-only network namespace, as tests/test_browser_call.py explains.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.events import CallTransferred
from tests.support.browser import AUTOPLAY, BrowserAgent, browser_agent, write_tone
from tests.support.gateway import (
    AGENT_PASSWORD,
    add_agent,
    add_inbound_trunk,
    call_events,
    gateway_stack,
    inbound_carrier,
    register_browser,
)
from tests.support.nats import NatsServer
from tests.support.netns import with_nats_isolated

pytestmark = [pytest.mark.needs_chromium, pytest.mark.needs_sipp, pytest.mark.needs_nats]

DID = "+995322000000"


async def test_a_browser_transfers_the_customer_to_a_colleagues_browser(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    await with_nats_isolated(request, tmp_path, _transfer)


async def _hears(agent: BrowserAgent, frequency: float) -> None:
    heard = await agent.analyse_remote_audio(1.5)
    stats = await agent.call_stats()
    assert heard.dominant_hz == pytest.approx(frequency, abs=15), (heard, stats)
    assert heard.purity > 0.8, (heard, stats)


async def _transfer(nats_server: NatsServer, tmp_path: Path) -> None:
    low, high = write_tone(tmp_path / "tone-440.wav", 440), write_tone(tmp_path / "tone-880.wav", 880)
    async with gateway_stack(nats_server, tmp_path) as (gateway, _):
        await add_agent(gateway.bus, "101", "pw-101")
        port = await add_inbound_trunk(gateway.bus, (DID,))
        async with (
            browser_agent(fake_audio=low, extra_args=(AUTOPLAY,), step_timeout=20) as first,
            browser_agent(fake_audio=high, extra_args=(AUTOPLAY,), step_timeout=20) as second,
        ):
            await register_browser(first, gateway, "100", AGENT_PASSWORD)
            customer = await inbound_carrier(tmp_path, gateway, port, DID, talk_ms=12000).start_async()
            await first.wait_for_invite()
            await first.accept()
            await _hears(first, 440)
            await register_browser(second, gateway, "101", "pw-101")
            referral = asyncio.ensure_future(first.refer("101", timeout=20))
            rung = await second.wait_for_invite(timeout=15)
            assert rung.from_uri.startswith("sip:+995555123456@"), rung  # 101 sees the customer
            assert "a=ice-lite" in rung.offer, rung.offer
            await second.accept()
            result = await referral
            assert (result.status, result.reason) == (202, "Accepted"), result
            assert result.notifies == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"], result
            assert result.terminated
            await first.wait_for_session("Terminated", timeout=10)  # our BYE
            await _hears(second, 880)
            # The customer hangs up; the new agent's call ends with the BYE.
            await second.wait_for_session("Terminated", timeout=20)
        (await customer.wait_async(timeout=20)).assert_success(1)
        events = await call_events(gateway.bus)
    assert [e.type for e in events] == [
        "call.created",
        "call.ringing",
        "call.answered",
        "call.transferred",
        "call.ended",
    ]
    transferred = events[3]
    assert isinstance(transferred, CallTransferred)
    assert (transferred.data.from_agent_id, transferred.data.to_agent_id) == ("a100", "a101")
