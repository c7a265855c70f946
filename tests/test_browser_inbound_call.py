"""A customer calls the helpdesk and two agents' browsers ring: SIP.js 0.21 in two headless
Chromium instances registers as agents 100 and 101 over SIP over WebSocket; sipp as the carrier
calls the tenant's number. The gateway asks the media worker for a session that answers the
carrier's RTP offer and offers WebRTC (ICE-lite, DTLS-SRTP) to the browsers, and rings both with
it. Agent 101 answers: its browser hears its own 440 Hz come back from the carrier's echo through
the worker. Agent 100's browser stops ringing with the CANCEL's Reason "Call completed
elsewhere" (RFC 3326). The carrier hangs up and the browser's call ends.

Runs in a loopback-only network namespace, as tests/test_browser_call.py explains.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.events import CallAnswered, CallStatus, Direction, Party
from tests.support.browser import AUTOPLAY, browser_agent, write_tone
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


async def test_a_customer_call_rings_two_browsers_and_the_first_to_answer_takes_it(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    await with_nats_isolated(request, tmp_path, _inbound)


async def _inbound(nats_server: NatsServer, tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone-440.wav", 440)
    async with gateway_stack(nats_server, tmp_path) as (gateway, _):
        await add_agent(gateway.bus, "101", "pw-101")
        port = await add_inbound_trunk(gateway.bus, (DID,))
        async with (
            browser_agent(fake_audio=tone, extra_args=(AUTOPLAY,), step_timeout=20) as first,
            browser_agent(fake_audio=tone, extra_args=(AUTOPLAY,), step_timeout=20) as second,
        ):
            await register_browser(first, gateway, "100", AGENT_PASSWORD)
            await register_browser(second, gateway, "101", "pw-101")
            customer = await inbound_carrier(tmp_path, gateway, port, DID, talk_ms=5000).start_async()
            rung_first = await first.wait_for_invite()
            rung_second = await second.wait_for_invite()
            for rung in (rung_first, rung_second):
                assert rung.from_uri.startswith("sip:+995555123456@"), rung
                assert "a=ice-lite" in rung.offer, rung.offer
                assert "a=setup:actpass" in rung.offer, rung.offer
            await second.accept()
            # The first browser stops ringing: the gateway cancelled it as answered elsewhere.
            await first.wait_for_session("Terminated", timeout=10)
            cancel = next(m for m in await first.received() if m.startswith("CANCEL "))
            assert 'Reason: SIP;cause=200;text="Call completed elsewhere"' in cancel, cancel
            heard = await second.analyse_remote_audio(1.5)
            stats = await second.call_stats()
            assert heard.dominant_hz == pytest.approx(440, abs=15), (heard, stats)
            assert heard.purity > 0.8, (heard, stats)
            assert stats.codec == "audio/PCMU/8000", stats
            # The customer hangs up; the agent's call ends with the BYE.
            await second.wait_for_session("Terminated", timeout=15)
        (await customer.wait_async(timeout=20)).assert_success(1)
        events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.ringing", "call.answered", "call.ended"]
    created, _, answered, ended = events
    assert created.data.direction is Direction.INBOUND  # type: ignore[attr-defined]
    assert isinstance(answered, CallAnswered)
    assert answered.data.answered_by == "a101"
    assert (ended.data.status, ended.data.ended_by) == (CallStatus.COMPLETED, Party.CUSTOMER)  # type: ignore[attr-defined]
