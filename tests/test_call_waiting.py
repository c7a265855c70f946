"""Call waiting: an agent in a call takes a second one, and swaps between them (issue: calls that
survive, several calls per agent).

Agent 100's desk phone (our test UA, one socket, one registration, an RTP endpoint per line) calls
a customer through sipp as the carrier, which echoes the audio. A second customer calls one of the
tenant's numbers (a second sipp, also echoing); the gateway rings the agent, who has room for a
second call (an agent's ``max_concurrent_calls`` is 2 by default). The phone holds the first call
(re-INVITE sendonly), answers the second and hears its echo while the first is silent; then swaps:
holds the second, resumes the first and hears that one again. Each call's events carry its own
hold and resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.signaling.sip.message import Response
from shared.events import CallEventEnvelope, CallHeld, CallStatus, Party
from tests.support.desk_phone import DeskPhone, acknowledge, in_dialog, place_call
from tests.support.gateway import (
    AGENT_PASSWORD,
    DOMAIN,
    Gateway,
    add_inbound_trunk,
    call_events,
    gateway_stack,
    inbound_carrier,
)
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.sipp import Sipp

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]

DID = "+995322000000"
SDP = ("Content-Type: application/sdp",)


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Gateway, Sipp, int]]:
    settings = {"ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS": "MD5"}  # sipp 3.6 answers MD5 only
    async with gateway_stack(nats_server, tmp_path, signaling_settings=settings) as (gateway, outbound):
        port = await add_inbound_trunk(gateway.bus, (DID,))
        yield gateway, outbound, port


def _offer(line: RtpPeer, version: int, direction: str) -> bytes:
    """The line's offer again with its o= version bumped, as a changed offer must be (RFC 3264 8)."""
    return line.description(direction).replace(" 1 IN IP4 ", f" {version} IN IP4 ", 1).encode()


async def _hears(line: RtpPeer, frequency: float) -> None:
    await asyncio.sleep(1.5)
    heard = analyse(line.audio(last_seconds=1.0))
    assert heard["dominant_hz"] == pytest.approx(frequency, abs=15), heard
    assert heard["purity"] > 0.9, heard


async def _silent(line: RtpPeer) -> None:
    """Nothing reaches a line on hold (the worker sends nothing towards it)."""
    before = len(line.received)
    await asyncio.sleep(1.0)
    assert len(line.received) - before <= 2, len(line.received) - before  # one in flight at most


async def test_an_agent_holds_one_call_takes_another_and_swaps_back(
    stack: tuple[Gateway, Sipp, int], tmp_path: Path
) -> None:
    gateway, outbound, port = stack
    phone = await asyncio.to_thread(DeskPhone.registered, gateway.sip, "100", DOMAIN, AGENT_PASSWORD)
    first = await RtpPeer.open("127.0.0.1")
    second = await RtpPeer.open("127.0.0.1")
    client = phone.client
    try:
        # Line 1: the agent calls a customer and hears the echo of its 440 Hz.
        _, answered, dialog = await asyncio.to_thread(
            place_call, gateway.sip, first.description(), client=client
        )
        assert answered.status_code == 200, answered
        first.learn(answered.body.decode())
        target = acknowledge(client, answered)
        first.start_tone(440)
        await _hears(first, 440)

        async def reinvite_first(cseq: int, direction: str) -> Response:
            response = await asyncio.to_thread(
                in_dialog,
                client,
                answered,
                dialog,
                target,
                "INVITE",
                cseq,
                headers=SDP,
                body=_offer(first, cseq, direction),
            )
            assert response.status_code == 200, response
            acknowledge(client, response, cseq)
            return response

        # Line 2 rings while line 1 talks.
        customer = await inbound_carrier(tmp_path, gateway, port, DID, talk_ms=12_000).start_async()
        invite = await asyncio.to_thread(phone.wait_request, "INVITE")
        phone.reply(invite, 180)

        # Hold line 1, answer line 2: its 1 kHz comes back; line 1 hears nothing.
        assert b"a=recvonly" in (await reinvite_first(3, "sendonly")).body
        second.learn(invite.body.decode())
        phone.reply(invite, 200, body=second.description().encode())
        await asyncio.to_thread(phone.wait_request, "ACK")
        second.start_tone(1000)
        await _hears(second, 1000)
        await _silent(first)

        # Swap: hold line 2, resume line 1.
        held = await asyncio.to_thread(phone.in_dialog, invite, "INVITE", SDP, _offer(second, 2, "sendonly"))
        assert held.status_code == 200, held
        assert b"a=recvonly" in held.body, held.body
        phone.acknowledge(invite, held)
        assert b"a=sendrecv" in (await reinvite_first(4, "sendrecv")).body
        await _hears(first, 440)
        await _silent(second)

        # The agent hangs up line 1; the second customer hangs up line 2 later.
        bye = await asyncio.to_thread(in_dialog, client, answered, dialog, target, "BYE", 5)
        assert bye.status_code == 200, bye
        ended = await asyncio.to_thread(phone.wait_request, "BYE")
        phone.reply(ended, 200)
        (await customer.wait_async(timeout=30)).assert_success(1)
    finally:
        first.close()
        second.close()
        phone.close()
    (await outbound.wait_async(timeout=20)).assert_success(calls=2)

    events = await call_events(gateway.bus, call_count=2)
    by_call: dict[str, list[CallEventEnvelope]] = {}
    for event in events:
        by_call.setdefault(event.call_id, []).append(event)
    assert len(by_call) == 2
    line_one, line_two = sorted(by_call.values(), key=lambda evs: evs[0].occurred_at)
    assert [e.type for e in line_one] == [
        "call.created",
        "call.ringing",
        "call.answered",
        "call.held",
        "call.resumed",
        "call.ended",
    ], [e.type for e in line_one]
    assert [e.type for e in line_two] == [
        "call.created",
        "call.ringing",
        "call.answered",
        "call.held",
        "call.ended",
    ]
    for line in (line_one, line_two):
        held_event = next(e for e in line if isinstance(e, CallHeld))
        assert held_event.data.held_by is Party.AGENT
        assert line[-1].data.status is CallStatus.COMPLETED  # type: ignore[attr-defined]
    # Line 1 was held while line 2 was answered: the two calls overlapped.
    assert line_one[3].occurred_at <= line_two[2].occurred_at <= line_one[4].occurred_at
