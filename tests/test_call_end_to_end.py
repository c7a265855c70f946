"""A whole outbound call through the gateway: a desk-phone agent (our test UA with an RTP endpoint)
calls a customer; signaling authenticates it, asks a real media worker over a real nats-server,
dials sipp playing the carrier (which answers and echoes the audio), and the agent hears its own
1 kHz tone come back through worker, carrier and worker again. Then the agent hangs up."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.signaling.sip.auth import DigestClient
from services.signaling.sip.message import Response
from shared.events import CallStatus, Party
from tests.support.gateway import AGENT_PASSWORD, DOMAIN, Gateway, call_events, gateway_stack
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.sip_client import SipClient
from tests.support.sipp import Sipp

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Gateway, Sipp]]:
    async with gateway_stack(nats_server, tmp_path) as running:
        yield running


def place_call(
    sip: tuple[str, int], offer: str, number: str = "555123456"
) -> tuple[SipClient, Response, dict[str, str]]:
    """INVITE as agent 100, answering the 407 (RFC 3261 22.3); returns the final response."""
    client = SipClient(sip, timeout=15)
    uri = f"sip:{number}@{DOMAIN}"
    dialog = {
        "from": f"<sip:100@{DOMAIN}>;tag={secrets.token_hex(4)}",
        "call_id": secrets.token_hex(8),
        "uri": uri,
    }
    headers = [
        f"From: {dialog['from']}",
        f"To: <{uri}>",
        f"Call-ID: {dialog['call_id']}",
        f"Contact: <sip:100@127.0.0.1:{client.port}>",
        "Content-Type: application/sdp",
    ]
    challenge = client.request("INVITE", uri, [*headers, "CSeq: 1 INVITE"], offer.encode())
    assert challenge.status_code == 407
    client.send(_ack(challenge, uri, 1, client))
    answer = DigestClient("100", password=AGENT_PASSWORD).answer(
        challenge.headers.get_all("Proxy-Authenticate"), "INVITE", uri
    )
    final = client.request(
        "INVITE", uri, [*headers, "CSeq: 2 INVITE", f"Proxy-Authorization: {answer.value}"], offer.encode()
    )
    return client, final, dialog


def _ack(response: Response, uri: str, cseq: int, client: SipClient, *, new_branch: bool = False) -> bytes:
    via = response.headers.get_all("Via")[0]
    if new_branch:
        via = f"SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bK{secrets.token_hex(8)};rport"
    return (
        f"ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {response.headers.get('From')}\r\n"
        f"To: {response.headers.get('To')}\r\nCall-ID: {response.call_id}\r\nCSeq: {cseq} ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def acknowledge(client: SipClient, answered: Response) -> str:
    """ACK the 2xx at the answerer's Contact (RFC 3261 13.2.2.4); returns that target."""
    target = (answered.headers.get("Contact") or "").strip("<>").split(">")[0]
    client.send(_ack(answered, target, 2, client, new_branch=True))
    return target


def hang_up(client: SipClient, answered: Response, dialog: dict[str, str], target: str) -> Response:
    headers = [
        f"From: {dialog['from']}",
        f"To: {answered.headers.get('To')}",
        f"Call-ID: {dialog['call_id']}",
        "CSeq: 3 BYE",
    ]
    response = client.request("BYE", target, headers)
    client.close()
    return response


async def test_agent_calls_a_customer_and_hears_the_echo(stack: tuple[Gateway, Sipp]) -> None:
    gateway, carrier = stack
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, answered, dialog = await asyncio.to_thread(place_call, gateway.sip, phone.description())
        assert answered.status_code == 200, answered
        assert answered.headers.get("Content-Type") == "application/sdp"
        phone.learn(answered.body.decode())
        target = acknowledge(client, answered)
        phone.start_tone(1000)
        await asyncio.sleep(2.0)
        heard = analyse(phone.audio(last_seconds=1.0))
        assert heard["dominant_hz"] == pytest.approx(1000, abs=15), heard
        assert heard["purity"] > 0.9, heard
        assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
    finally:
        phone.close()
    result = await carrier.wait_async(timeout=20)
    result.assert_success(calls=2)
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.ringing", "call.answered", "call.ended"]  # type: ignore[attr-defined]
    assert [e.sequence for e in events] == [0, 1, 2, 3]
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.status, ended.ended_by) == (CallStatus.COMPLETED, Party.AGENT)
    assert ended.talk_time_s >= 2.0


async def test_echo_line_returns_the_agents_own_audio(stack: tuple[Gateway, Sipp]) -> None:
    gateway, _ = stack
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, answered, dialog = await asyncio.to_thread(
            place_call, gateway.sip, phone.description(), "*43"
        )
        assert answered.status_code == 200, answered
        phone.learn(answered.body.decode())
        target = acknowledge(client, answered)
        phone.start_tone(700)
        await asyncio.sleep(1.5)
        heard = analyse(phone.audio(last_seconds=1.0))
        assert heard["dominant_hz"] == pytest.approx(700, abs=15), heard
        assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
    finally:
        phone.close()
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.answered", "call.ended"]  # type: ignore[attr-defined]
    assert events[0].data.to_number == "*43"  # type: ignore[attr-defined]
