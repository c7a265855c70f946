"""The demo line's call (``*44``): answered with the worker's announcement session, ended by a BYE."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.signaling.b2bua.call import (
    AnswerCaller,
    Command,
    LegAddress,
    Phase,
    Publish,
    SendToCaller,
    StartMedia,
    StopMedia,
)
from services.signaling.b2bua.demo import DemoCall
from services.signaling.sip.message import Request, parse_message
from shared.events import CallEnded, CallStatus, Direction, EndCause, Party
from shared.media import SessionCreated, SessionKind

AGENT_INVITE = (
    "INVITE sip:*44@acme.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKphone1\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:100@acme.test>;tag=phone\r\n"
    "To: <sip:*44@acme.test>\r\n"
    "Call-ID: phone-call-1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:100@192.0.2.10:5062>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 9\r\n\r\n"
    "v=0 offer"
)
CREATED = SessionCreated(worker_id="w1", session_id="s1", agent_sdp="v=0 announcement-answer")


def new_call() -> DemoCall:
    invite = parse_message(AGENT_INVITE.encode())
    assert isinstance(invite, Request)
    return DemoCall(
        call_id="c1",
        tenant_id="acme",
        agent_id="a100",
        agent_extension="100",
        agent_invite=invite,
        agent_address=LegAddress("198.51.100.1:5060", "<sip:gw@198.51.100.1:5060>", "udp"),
        webrtc_agent=False,
    )


def only(commands: Sequence[Command], kind: type) -> list:  # type: ignore[type-arg]
    return [c for c in commands if isinstance(c, kind)]


def answered_call() -> tuple[DemoCall, list[Command]]:
    call = new_call()
    started = call.start(0.0)
    assert [type(c) for c in started] == [AnswerCaller, Publish, StartMedia]
    [start] = only(started, StartMedia)
    assert start.request.kind is SessionKind.ANNOUNCEMENT
    assert start.request.agent_offer == "v=0 offer"
    assert start.request.customer_offer is None
    [created] = only(started, Publish)
    assert created.event.type == "call.created"
    assert (created.event.data.direction, created.event.data.to_number) == (Direction.INTERNAL, "*44")
    return call, call.media_ready(CREATED, 0.2)


def test_the_demo_line_answers_with_the_workers_sdp_and_the_agent_hangs_up() -> None:
    call, answered = answered_call()
    [ok] = only(answered, AnswerCaller)
    assert (ok.response.status_code, ok.response.body) == (200, b"v=0 announcement-answer")
    assert ok.response.headers.get("Content-Type") == "application/sdp"
    assert ok.response.headers.get("Contact") == "<sip:gw@198.51.100.1:5060>"
    assert [c.event.type for c in only(answered, Publish)] == ["call.answered"]
    assert call.phase is Phase.CONNECTED
    hangup = call.bye(from_caller=True, now=30.2)
    assert [c.reason for c in only(hangup, StopMedia)] == ["normal_clearing"]
    [event] = [c.event for c in only(hangup, Publish)]
    assert isinstance(event, CallEnded)
    assert (event.data.status, event.data.cause, event.data.ended_by) == (
        CallStatus.COMPLETED,
        EndCause.NORMAL_CLEARING,
        Party.AGENT,
    )
    assert event.data.talk_time_s == pytest.approx(30.0)
    assert event.sequence == 2  # created, answered, ended


def test_hung_up_by_us_the_agent_gets_a_bye_in_its_dialog() -> None:
    call, _ = answered_call()
    commands = call.hang_up(EndCause.MEDIA_TIMEOUT, 40.0)
    [bye] = only(commands, SendToCaller)
    assert (bye.request.method, bye.request.to.tag, bye.request.call_id) == ("BYE", "phone", "phone-call-1")
    assert only(commands, StopMedia)
    [event] = [c.event for c in only(commands, Publish)]
    assert isinstance(event, CallEnded)
    assert event.data.ended_by is Party.SYSTEM


def test_no_media_worker_is_a_503_with_words() -> None:
    call = new_call()
    call.start(0.0)
    failed = call.media_failed("no media worker answered", 3.0)
    [response] = only(failed, AnswerCaller)
    assert response.response.status_code == 503
    assert not only(failed, StopMedia)  # there is no session to close
    [event] = [c.event for c in only(failed, Publish)]
    assert isinstance(event, CallEnded)
    assert event.data.cause is EndCause.MEDIA_FAILURE
    assert event.data.message
