"""Inbound calls end to end: sipp plays the carrier delivering a customer's call to one of the
tenant's numbers (DIDs); the agents' desk phones are our test UA with a real RTP endpoint,
registered to the gateway. Every
registered phone of the ring group rings at once; the first to answer gets the call and the others
are cancelled as "completed elsewhere"; nobody registered, everybody busy and an unknown number
each end with the right answer to the carrier and the right events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.events import CallAnswered, CallCreated, CallEnded, CallStatus, Direction, EndCause, Party
from tests.support.desk_phone import DeskPhone, acknowledge, hang_up, place_call
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
from tests.support.sipp import Sipp

pytestmark = [pytest.mark.needs_sipp, pytest.mark.needs_nats]

DID = "+995322000000"
CUSTOMER = "555123456"  # as the carrier sends it: national, normalized with the trunk's region (GE)


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Gateway, int]]:
    """The gateway with a second agent (101) and a trunk whose carrier calls in from a port of its
    own; yields the gateway and that carrier port."""
    settings = {"ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS": "MD5"}  # sipp 3.6 answers MD5 only
    async with gateway_stack(nats_server, tmp_path, signaling_settings=settings) as (gateway, _outbound):
        await add_agent(gateway.bus, "101", "pw-101")
        port = await add_inbound_trunk(gateway.bus, (DID,))
        yield gateway, port


def carrier(tmp_path: Path, gateway: Gateway, port: int, *, number: str = DID) -> Sipp:
    return inbound_carrier(tmp_path, gateway, port, number, customer=CUSTOMER)


async def phone(gateway: Gateway, user: str, password: str) -> DeskPhone:
    return await asyncio.to_thread(DeskPhone.registered, gateway.sip, user, DOMAIN, password)


async def test_both_phones_ring_the_first_to_answer_wins_the_other_is_cancelled(
    stack: tuple[Gateway, int], tmp_path: Path
) -> None:
    gateway, port = stack
    ringing_only = await phone(gateway, "100", AGENT_PASSWORD)
    answering = await phone(gateway, "101", "pw-101")
    audio = await RtpPeer.open("127.0.0.1")
    try:
        customer = await carrier(tmp_path, gateway, port).start_async()
        rung = await asyncio.to_thread(ringing_only.wait_request, "INVITE")
        ringing_only.reply(rung, 180)
        invite = await asyncio.to_thread(answering.wait_request, "INVITE")
        assert invite.from_.uri.user == "+995555123456"  # type: ignore[union-attr]
        answering.reply(invite, 180)
        audio.learn(invite.body.decode())
        answering.reply(invite, 200, body=audio.description().encode())
        cancel = await asyncio.to_thread(ringing_only.wait_request, "CANCEL")
        assert cancel.headers.get("Reason") == 'SIP;cause=200;text="Call completed elsewhere"'
        ringing_only.reply(cancel, 200)
        ringing_only.reply(rung, 487)
        await asyncio.to_thread(ringing_only.wait_request, "ACK")
        await asyncio.to_thread(answering.wait_request, "ACK")
        # The agent's 1 kHz goes through the worker to the carrier, which echoes it back.
        audio.start_tone(1000)
        await asyncio.sleep(1.5)
        heard = analyse(audio.audio(last_seconds=1.0))
        assert heard["dominant_hz"] == pytest.approx(1000, abs=15), heard
        bye = await asyncio.to_thread(answering.wait_request, "BYE")  # the customer hangs up
        answering.reply(bye, 200)
        (await customer.wait_async(timeout=30)).assert_success(1)
    finally:
        audio.close()
        ringing_only.close()
        answering.close()
    events = await call_events(gateway.bus)
    assert [e.type for e in events] == ["call.created", "call.ringing", "call.answered", "call.ended"]
    assert [e.sequence for e in events] == [0, 1, 2, 3]
    created, _, answered, ended = events
    assert isinstance(created, CallCreated)
    assert (created.data.direction, created.data.from_number, created.data.to_number) == (
        Direction.INBOUND,
        "+995555123456",
        DID,
    )
    assert created.data.trunk_id == "geo-in"
    assert isinstance(answered, CallAnswered)
    assert answered.data.answered_by == "a101"
    assert isinstance(ended, CallEnded)
    assert (ended.data.status, ended.data.ended_by) == (CallStatus.COMPLETED, Party.CUSTOMER)
    assert ended.data.talk_time_s >= 2.0


async def test_nobody_registered_is_480_and_a_missed_call(stack: tuple[Gateway, int], tmp_path: Path) -> None:
    gateway, port = stack
    result = await (await carrier(tmp_path, gateway, port).start_async()).wait_async(timeout=30)
    assert result.count("480", "Recv") == 1, result.describe()
    (created, ended) = await call_events(gateway.bus)
    assert isinstance(created, CallCreated)
    assert isinstance(ended, CallEnded)
    assert (ended.data.status, ended.data.cause, ended.data.sip_status) == (
        CallStatus.NO_ANSWER,
        EndCause.UNAVAILABLE,
        480,
    )
    assert ended.data.message == "No agent was available to take the call"


async def test_every_phone_busy_is_busy_for_the_customer(stack: tuple[Gateway, int], tmp_path: Path) -> None:
    gateway, port = stack
    busy = await phone(gateway, "100", AGENT_PASSWORD)
    try:
        customer = await carrier(tmp_path, gateway, port).start_async()
        invite = await asyncio.to_thread(busy.wait_request, "INVITE")
        busy.reply(invite, 486)
        await asyncio.to_thread(busy.wait_request, "ACK")
        result = await customer.wait_async(timeout=30)
    finally:
        busy.close()
    assert result.count("486", "Recv") == 1, result.describe()
    ended = (await call_events(gateway.bus))[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.data.status, ended.data.sip_status, ended.data.message) == (
        CallStatus.BUSY,
        486,
        "Line busy",
    )


async def test_a_number_the_trunk_does_not_serve_is_404_and_rings_nobody(
    stack: tuple[Gateway, int], tmp_path: Path
) -> None:
    gateway, port = stack
    wrong = carrier(tmp_path, gateway, port, number="+995322999999")
    result = await (await wrong.start_async()).wait_async(timeout=20)
    assert result.count("404", "Recv") == 1, result.describe()


async def test_an_agent_calls_a_colleague_by_extension(stack: tuple[Gateway, int], tmp_path: Path) -> None:
    """Agent to agent (internal): 100's desk phone dials 101, whose phone rings and answers; the
    bridge is RTP <-> RTP through a worker, and each side hears the other's tone."""
    gateway, _ = stack
    callee = await phone(gateway, "101", "pw-101")
    caller_audio = await RtpPeer.open("127.0.0.1")
    callee_audio = await RtpPeer.open("127.0.0.1")
    try:
        calling = asyncio.create_task(
            asyncio.to_thread(place_call, gateway.sip, caller_audio.description(), "101")
        )
        invite = await asyncio.to_thread(callee.wait_request, "INVITE")
        assert invite.from_.uri.user == "100"  # type: ignore[union-attr]
        callee.reply(invite, 180)
        callee_audio.learn(invite.body.decode())
        callee.reply(invite, 200, body=callee_audio.description().encode())
        client, answered, dialog = await calling
        assert answered.status_code == 200, answered
        caller_audio.learn(answered.body.decode())
        target = acknowledge(client, answered)
        await asyncio.to_thread(callee.wait_request, "ACK")
        caller_audio.start_tone(600)
        callee_audio.start_tone(900)
        await asyncio.sleep(1.5)
        assert analyse(callee_audio.audio(last_seconds=1.0))["dominant_hz"] == pytest.approx(600, abs=15)
        assert analyse(caller_audio.audio(last_seconds=1.0))["dominant_hz"] == pytest.approx(900, abs=15)
        assert (await asyncio.to_thread(hang_up, client, answered, dialog, target)).status_code == 200
        bye = await asyncio.to_thread(callee.wait_request, "BYE")
        callee.reply(bye, 200)
    finally:
        caller_audio.close()
        callee_audio.close()
        callee.close()
    events = await call_events(gateway.bus)
    created, answered_event, ended = (events[0], events[-2], events[-1])
    assert isinstance(created, CallCreated)
    assert (
        created.data.direction,
        created.data.from_number,
        created.data.to_number,
        created.data.agent_id,
    ) == (
        Direction.INTERNAL,
        "100",
        "101",
        "a100",
    )
    assert isinstance(answered_event, CallAnswered)
    assert answered_event.data.answered_by == "a101"
    assert isinstance(ended, CallEnded)
    assert (ended.data.status, ended.data.ended_by) == (CallStatus.COMPLETED, Party.AGENT)
