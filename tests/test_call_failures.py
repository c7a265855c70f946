"""Outbound calls the carrier refuses: the agent's phone gets the carrier's status, and the call's
final event carries it with the old product's words (SIP_SETUP_GUIDE's error table), who ended it,
and the right status for integrators. sipp plays the carrier; our desk-phone UA is the agent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.events import CallEnded, CallStatus, EndCause, Party
from tests.support.desk_phone import place_call
from tests.support.gateway import call_events, gateway_stack
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer
from tests.support.sipp import scenario_path

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]

CHALLENGE = 'WWW-Authenticate: Digest realm="carrier.test", nonce="n0nce", algorithm=MD5, qop="auth"'


@pytest.mark.parametrize(
    ("status", "reason", "extra", "outcome", "message"),
    [
        (486, "Busy Here", "", (CallStatus.BUSY, EndCause.BUSY), "Line busy"),
        (404, "Not Found", "", (CallStatus.FAILED, EndCause.NOT_FOUND), "Number not found or invalid"),
        (
            408,
            "Request Timeout",
            "",
            (CallStatus.NO_ANSWER, EndCause.NO_ANSWER),
            "No answer / Request timeout",
        ),
        (603, "Decline", "", (CallStatus.FAILED, EndCause.REJECTED), "Call declined"),
        (
            401,
            "Unauthorized",
            CHALLENGE,
            (CallStatus.FAILED, EndCause.CARRIER_AUTH_FAILED),
            "Authentication with the carrier failed",
        ),
        (
            503,
            "Service Unavailable",
            "",
            (CallStatus.FAILED, EndCause.CARRIER_ERROR),
            "Carrier error, try again later",
        ),
    ],
)
async def test_a_refused_call_ends_with_the_carriers_status_and_words(
    nats_server: NatsServer,
    tmp_path: Path,
    status: int,
    reason: str,
    extra: str,
    outcome: tuple[CallStatus, EndCause],
    message: str,
) -> None:
    scenario = tmp_path / f"carrier_reject_{status}_uas.xml"
    template = scenario_path("carrier_reject_uas").read_text()
    scenario.write_text(template.replace("SIP/2.0 486 Busy Here", f"SIP/2.0 {status} {reason}"))
    keys = {"extra": extra or "X-Carrier-Test: refusal"}
    refusing = gateway_stack(nats_server, tmp_path, carrier_scenario=scenario, carrier_keys=keys)
    async with refusing as (gateway, carrier):
        phone = await RtpPeer.open("127.0.0.1")
        try:
            client, final, _ = await asyncio.to_thread(place_call, gateway.sip, phone.description())
            client.close()
        finally:
            phone.close()
        # The agent's phone sees the carrier's status (SIP.js shows its reason).
        assert final.status_code == status, final
        (await carrier.wait_async(timeout=20)).assert_success(calls=2)
        events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.ringing", "call.ended"]
    ended = events[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.data.status, ended.data.cause) == outcome
    assert (ended.data.sip_status, ended.data.sip_reason, ended.data.message) == (status, reason, message)
    # The far end refused (4xx, 6xx); a 5xx is the carrier's network failing, not the customer.
    assert ended.data.ended_by is (Party.SYSTEM if status >= 500 and status < 600 else Party.CUSTOMER)
