"""Blind transfer end to end (RFC 3515): sipp plays the carrier delivering a customer's call, which
echoes the audio it gets; the agents are desk phones with real RTP endpoints. Agent 100 answers and
sends REFER naming extension 101; the customer's leg stays where it is while 101's phone rings, and
tone detection shows who hears whom after the hand-over (or after a failure)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.signaling.sip.message import Request
from shared.events import CallEnded, CallStatus, CallTransferFailed, CallTransferred, EndCause, Party
from tests.support.desk_phone import DeskPhone
from tests.support.gateway import (
    AGENT_PASSWORD,
    DOMAIN,
    Gateway,
    add_agent,
    add_inbound_trunk,
    call_events,
    gateway_stack,
    inbound_carrier,
)
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.sip_client import SipClient
from tests.support.sipp import Sipp

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]

DID = "+995322000000"


@pytest.fixture
async def carrier_stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Gateway, int, Sipp]]:
    """The gateway, the port its inbound carrier calls from, and sipp as the outbound trunk's carrier
    (it answers one call and echoes its audio)."""
    settings = {
        "ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS": "MD5",
        "ECHODESK_SIGNALING_RING_TIMEOUT_S": "5",
    }
    async with gateway_stack(nats_server, tmp_path, signaling_settings=settings) as (gateway, outbound):
        await add_agent(gateway.bus, "101", "pw-101")
        port = await add_inbound_trunk(gateway.bus, (DID,))
        yield gateway, port, outbound


@pytest.fixture
def stack(carrier_stack: tuple[Gateway, int, Sipp]) -> tuple[Gateway, int]:
    gateway, port, _outbound = carrier_stack
    return gateway, port


def customer(tmp_path: Path, gateway: Gateway, port: int, talk_ms: int) -> Sipp:
    return inbound_carrier(tmp_path, gateway, port, DID, talk_ms=talk_ms)


async def phone(gateway: Gateway, user: str, password: str) -> DeskPhone:
    return await asyncio.to_thread(DeskPhone.registered, gateway.sip, user, DOMAIN, password)


async def answer(agent: DeskPhone, audio: RtpPeer) -> Request:
    invite = await asyncio.to_thread(agent.wait_request, "INVITE")
    assert invite.from_.uri.user == "+995555123456"  # type: ignore[union-attr]
    agent.reply(invite, 180)
    audio.learn(invite.body.decode())
    agent.reply(invite, 200, body=audio.description().encode())
    await asyncio.to_thread(agent.wait_request, "ACK")
    return invite


async def hears(audio: RtpPeer, frequency: float, seconds: float = 1.5) -> None:
    """``audio`` plays ``frequency`` and hears it back: the customer (sipp) echoes what it gets, so
    this is both ways between ``audio`` and the customer."""
    audio.start_tone(frequency)
    await asyncio.sleep(seconds)
    heard = analyse(audio.audio(last_seconds=1.0))
    assert heard["dominant_hz"] == pytest.approx(frequency, abs=15), heard
    assert heard["rms"] > 1000, heard


async def sipfrag(agent: DeskPhone) -> tuple[str, str]:
    notify = await asyncio.to_thread(agent.wait_request, "NOTIFY")
    agent.reply(notify, 200)
    assert notify.headers.get("Event", "").startswith("refer")
    assert notify.headers.get("Content-Type") == "message/sipfrag;version=2.0"
    return notify.body.decode().strip(), notify.headers.get("Subscription-State") or ""


async def test_agent_100_transfers_the_customer_to_101_who_answers_and_talks_with_them(
    stack: tuple[Gateway, int], tmp_path: Path
) -> None:
    gateway, port = stack
    first = await phone(gateway, "100", AGENT_PASSWORD)
    first_audio, second_audio = await RtpPeer.open("127.0.0.1"), await RtpPeer.open("127.0.0.1")
    second: DeskPhone | None = None
    try:
        carrier = await customer(tmp_path, gateway, port, talk_ms=9000).start_async()
        invite = await answer(first, first_audio)
        await hears(first_audio, 1000)
        # 101 registers only now, so the first ringing was 100's alone.
        second = await phone(gateway, "101", "pw-101")
        accepted = await asyncio.to_thread(
            first.in_dialog,
            invite,
            "REFER",
            (f"Refer-To: <sip:101@{DOMAIN}>", f"Referred-By: <sip:100@{DOMAIN}>"),
        )
        assert (accepted.status_code, accepted.reason) == (202, "Accepted")
        assert await sipfrag(first) == ("SIP/2.0 100 Trying", "active;expires=60")
        await answer(second, second_audio)
        assert await sipfrag(first) == ("SIP/2.0 200 OK", "terminated;reason=noresource")
        bye = await asyncio.to_thread(first.wait_request, "BYE")
        first.reply(bye, 200)
        heard_by_first = len(first_audio.received)
        await hears(second_audio, 700)
        assert len(first_audio.received) == heard_by_first  # the transferor's leg is gone
        bye = await asyncio.to_thread(second.wait_request, "BYE")  # the customer hangs up
        second.reply(bye, 200)
        (await carrier.wait_async(timeout=30)).assert_success(1)
    finally:
        first_audio.close()
        second_audio.close()
        first.close()
        if second is not None:
            second.close()
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == [
        "call.created",
        "call.ringing",
        "call.answered",
        "call.transferred",
        "call.ended",
    ]
    transferred, ended = events[3], events[4]
    assert isinstance(transferred, CallTransferred)
    assert (transferred.data.target, transferred.data.from_agent_id, transferred.data.to_agent_id) == (
        "101",
        "a100",
        "a101",
    )
    assert isinstance(ended, CallEnded)
    assert (ended.data.status, ended.data.cause, ended.data.ended_by) == (
        CallStatus.COMPLETED,
        EndCause.NORMAL_CLEARING,
        Party.CUSTOMER,
    )


async def test_a_busy_colleague_returns_the_customer_to_the_transferring_agent(
    stack: tuple[Gateway, int], tmp_path: Path
) -> None:
    gateway, port = stack
    first = await phone(gateway, "100", AGENT_PASSWORD)
    audio = await RtpPeer.open("127.0.0.1")
    second: DeskPhone | None = None
    try:
        carrier = await customer(tmp_path, gateway, port, talk_ms=9000).start_async()
        invite = await answer(first, audio)
        second = await phone(gateway, "101", "pw-101")
        accepted = await asyncio.to_thread(
            first.in_dialog, invite, "REFER", ("Refer-To: <sip:101@acme.test>",)
        )
        assert accepted.status_code == 202
        assert (await sipfrag(first))[0] == "SIP/2.0 100 Trying"
        rung = await asyncio.to_thread(second.wait_request, "INVITE")
        second.reply(rung, 486)
        await asyncio.to_thread(second.wait_request, "ACK")
        assert await sipfrag(first) == ("SIP/2.0 486 Busy Here", "terminated;reason=noresource")
        await hears(audio, 1000)  # back with the customer, both ways
        bye = await asyncio.to_thread(first.wait_request, "BYE")
        first.reply(bye, 200)
        (await carrier.wait_async(timeout=30)).assert_success(1)
    finally:
        audio.close()
        first.close()
        if second is not None:
            second.close()
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == [
        "call.created",
        "call.ringing",
        "call.answered",
        "call.transfer_failed",
        "call.ended",
    ]
    failed, ended = events[-2:]
    assert isinstance(failed, CallTransferFailed)
    assert (failed.data.target, failed.data.sip_status, failed.data.reason) == ("101", 486, "Busy Here")
    assert isinstance(ended, CallEnded)
    assert (ended.data.cause, ended.data.ended_by) == (EndCause.NORMAL_CLEARING, Party.CUSTOMER)


async def test_a_transfer_to_nobody_after_the_agent_left_ends_the_call_with_its_cause(
    stack: tuple[Gateway, int], tmp_path: Path
) -> None:
    gateway, port = stack
    first = await phone(gateway, "100", AGENT_PASSWORD)
    audio = await RtpPeer.open("127.0.0.1")
    second: DeskPhone | None = None
    try:
        carrier = await customer(tmp_path, gateway, port, talk_ms=20000).start_async()
        invite = await answer(first, audio)
        second = await phone(gateway, "101", "pw-101")
        accepted = await asyncio.to_thread(
            first.in_dialog, invite, "REFER", ("Refer-To: <sip:101@acme.test>",)
        )
        assert accepted.status_code == 202
        # The transferor hangs up at once, as blind transfer has it; 101 rings and never answers.
        left = await asyncio.to_thread(first.in_dialog, invite, "BYE")
        assert left.status_code == 200
        rung = await asyncio.to_thread(second.wait_request, "INVITE")
        second.reply(rung, 180)
        cancel = await asyncio.to_thread(second.wait_request, "CANCEL")  # the ring timeout (5 s)
        second.reply(cancel, 200)
        second.reply(rung, 487)
        await asyncio.to_thread(second.wait_request, "ACK")
        # The customer is hung up on: sipp's scenario takes the gateway's BYE and ends.
        await carrier.wait_async(timeout=30)
    finally:
        audio.close()
        first.close()
        if second is not None:
            second.close()
    events = await call_events(gateway.bus)
    assert [e.type for e in events][-2:] == ["call.transfer_failed", "call.ended"]
    ended = events[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.data.cause, ended.data.ended_by, ended.data.sip_status) == (
        EndCause.TRANSFER_FAILED,
        Party.SYSTEM,
        408,
    )
    assert ended.data.message == "Call ended: the transfer to 101 failed (408 No answer)"


async def test_a_transfer_the_dial_plan_refuses_and_bad_refers_change_nothing(
    stack: tuple[Gateway, int], tmp_path: Path
) -> None:
    gateway, port = stack
    first = await phone(gateway, "100", AGENT_PASSWORD)
    audio = await RtpPeer.open("127.0.0.1")
    try:
        carrier = await customer(tmp_path, gateway, port, talk_ms=9000).start_async()
        invite = await answer(first, audio)
        # Toll fraud through a transfer: a premium-rate number no trunk names is refused by the rule.
        accepted = await asyncio.to_thread(
            first.in_dialog, invite, "REFER", ("Refer-To: <sip:+19005550100@acme.test>",)
        )
        assert accepted.status_code == 202
        assert (await sipfrag(first))[0] == "SIP/2.0 100 Trying"
        assert await sipfrag(first) == (
            "SIP/2.0 403 premium-rate numbers such as +19005550100 are blocked",
            "terminated;reason=noresource",
        )
        unknown = await asyncio.to_thread(
            first.in_dialog, invite, "REFER", ("Refer-To: <sip:199@acme.test>",)
        )
        assert unknown.status_code == 202
        assert (await sipfrag(first))[0] == "SIP/2.0 100 Trying"
        assert (await sipfrag(first))[0] == "SIP/2.0 404 no agent has extension 199"
        for headers, status, reason in (
            ((), 400, "Missing Refer-To header"),
            (("Refer-To: <mailto:boss@acme.test>",), 416, "Refer-To scheme mailto: is not supported"),
            (
                ("Refer-To: <sip:101@acme.test?Replaces=x%3Bto-tag%3Dy%3Bfrom-tag%3Dz>",),
                501,
                "Attended transfer (Refer-To with Replaces) is not supported",
            ),
        ):
            refused = await asyncio.to_thread(first.in_dialog, invite, "REFER", headers)
            assert (refused.status_code, refused.reason) == (status, reason)
        # REFER outside any call is refused before anything else.
        outside = SipClient(gateway.sip, timeout=10)
        try:
            response = await asyncio.to_thread(
                outside.request,
                "REFER",
                f"sip:echodesk@{DOMAIN}",
                [
                    "From: <sip:100@acme.test>;tag=x1",
                    "To: <sip:echodesk@acme.test>",
                    "Call-ID: lonely-refer",
                    "CSeq: 1 REFER",
                    "Refer-To: <sip:101@acme.test>",
                ],
            )
        finally:
            outside.close()
        assert (response.status_code, response.reason) == (403, "REFER is accepted only within a call")
        await hears(audio, 1000)  # the call and its audio went on throughout
        bye = await asyncio.to_thread(first.wait_request, "BYE")
        first.reply(bye, 200)
        (await carrier.wait_async(timeout=30)).assert_success(1)
    finally:
        audio.close()
        first.close()
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == [
        "call.created",
        "call.ringing",
        "call.answered",
        "call.transfer_failed",
        "call.transfer_failed",
        "call.ended",
    ]
    refusals = [(e.data.sip_status, e.data.target) for e in events if isinstance(e, CallTransferFailed)]
    assert refusals == [(403, "+19005550100"), (404, "199")]


async def test_a_transfer_to_an_outside_number_goes_out_through_the_trunk_the_dial_plan_chose(
    carrier_stack: tuple[Gateway, int, Sipp], tmp_path: Path
) -> None:
    gateway, port, outbound = carrier_stack
    first = await phone(gateway, "100", AGENT_PASSWORD)
    audio = await RtpPeer.open("127.0.0.1")
    try:
        carrier = await customer(tmp_path, gateway, port, talk_ms=6000).start_async()
        invite = await answer(first, audio)
        await hears(audio, 1000, seconds=1.0)
        # A national number, normalized with the trunk's region like the agent's own call would be.
        accepted = await asyncio.to_thread(
            first.in_dialog, invite, "REFER", ("Refer-To: <sip:555000111@acme.test>",)
        )
        assert accepted.status_code == 202
        assert (await sipfrag(first))[0] == "SIP/2.0 100 Trying"
        assert await sipfrag(first) == ("SIP/2.0 200 OK", "terminated;reason=noresource")
        bye = await asyncio.to_thread(first.wait_request, "BYE")
        first.reply(bye, 200)
        # The customer hangs up: the gateway's BYE reaches the outside party, and both sipps end clean.
        (await carrier.wait_async(timeout=30)).assert_success(1)
        (await outbound.wait_async(timeout=30)).assert_success(2)
    finally:
        audio.close()
        first.close()
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
    assert (transferred.data.target, transferred.data.from_agent_id, transferred.data.to_agent_id) == (
        "+995555000111",
        "a100",
        None,
    )
