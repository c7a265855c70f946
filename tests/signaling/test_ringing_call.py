"""The call that rings agents (inbound from a carrier, internal between agents), driven by scripted
responses of the agents' phones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from services.signaling.b2bua.call import (
    AnswerCaller,
    Command,
    DescribeMedia,
    LegAddress,
    Phase,
    Publish,
    SendToBranch,
    SendToCaller,
    StartMedia,
    StartTimer,
    StopMedia,
)
from services.signaling.b2bua.ringing import COMPLETED_ELSEWHERE, Caller, RingCall, RingTarget, media_plan
from services.signaling.sip.message import Request, Response, make_response, parse_message
from shared.events import (
    CallAnswered,
    CallCreated,
    CallEnded,
    CallQuality,
    CallRinging,
    CallStatus,
    Direction,
    EndCause,
    LegKind,
    LegQuality,
    Party,
)
from shared.media import SessionCreated, SessionKind

CARRIER_INVITE = (
    "INVITE sip:trunk1@203.0.113.5:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKcarrier1\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Nino" <sip:+995555123456@carrier.test>;tag=carrier\r\n'
    "To: <sip:+995322000000@carrier.test>\r\n"
    "Call-ID: carrier-call-1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:+995555123456@198.51.100.9:5060>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 12\r\n\r\n"
    "v=0 customer"
)
WSS = LegAddress("gw.test:8089", "<sip:echodesk@gw.test:8089;transport=wss>", "wss")
UDP = LegAddress("gw.test:5060", "<sip:echodesk@gw.test:5060>", "udp")


def target(agent: str, contact: str, *, webrtc: bool = True) -> RingTarget:
    return RingTarget(agent, agent[1:], "acme.test", contact, WSS if webrtc else UDP, webrtc)


def new_call(*targets: RingTarget) -> RingCall:
    invite = parse_message(CARRIER_INVITE.encode())
    assert isinstance(invite, Request)
    caller = Caller(
        invite=invite,
        address=UDP,
        webrtc=False,
        party=Party.CUSTOMER,
        number="+995555123456",
        display_name="Nino",
        trunk_id="trunk-1",
    )
    return RingCall(
        call_id="c1",
        tenant_id="acme",
        caller=caller,
        direction=Direction.INBOUND,
        dialed="+995322000000",
        targets=targets,
        ring_timeout_s=30.0,
    )


def only(commands: Sequence[Command], kind: type) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


def events(commands: Sequence[Command]) -> list[Any]:
    return [c.event for c in only(commands, Publish)]


def says(invite: Request, code: int, tag: str = "phone", body: bytes = b"") -> Response:
    response = make_response(invite, code, to_tag=tag, body=body)
    if 200 <= code < 300:
        response.headers.add("Contact", "<sip:agent@a1b2.invalid;transport=ws>")
    return response


def ringing(call: RingCall, key: str = "webrtc") -> list[Request]:
    """Start the call and give it its media session: the INVITEs to the agents' phones."""
    call.start(0.0)
    sent = call.media_ready(
        SessionCreated(
            worker_id="w1", session_id=f"s-{key}", agent_sdp="v=0 offer", customer_sdp="v=0 answer"
        ),
        0.1,
        key,
    )
    return [c.request for c in only(sent, SendToBranch)]


def test_start_asks_for_the_session_that_answers_the_carrier_and_offers_to_browsers() -> None:
    call = new_call(
        target("a100", "sip:x@a.invalid;transport=ws"), target("a101", "sip:y@b.invalid;transport=ws")
    )
    commands = call.start(0.0)
    assert [c.response.status_code for c in only(commands, AnswerCaller)] == [100]
    (created,) = events(commands)
    assert isinstance(created, CallCreated)
    assert (created.data.direction, created.data.from_number, created.data.to_number) == (
        Direction.INBOUND,
        "+995555123456",
        "+995322000000",
    )
    (media,) = only(commands, StartMedia)
    assert media.key == "webrtc"
    assert media.request.kind is SessionKind.WEBRTC_RTP
    assert (media.request.customer_offer, media.request.agent_offer) == ("v=0 customer", None)
    assert only(commands, StartTimer)[0].at == 30.0


def test_every_contact_rings_with_our_offer_and_the_customer_shown() -> None:
    call = new_call(
        target("a100", "sip:x@a.invalid;transport=ws"), target("a101", "sip:y@b.invalid;transport=ws")
    )
    first, second = ringing(call)
    assert (str(first.uri), str(second.uri)) == (
        "sip:x@a.invalid;transport=ws",
        "sip:y@b.invalid;transport=ws",
    )
    assert first.body == b"v=0 offer"
    assert first.call_id != second.call_id
    assert first.headers.get("From", "").startswith('"Nino" <sip:+995555123456@acme.test>')
    assert first.headers.get("Via", "").startswith("SIP/2.0/WSS gw.test:8089;branch=z9hG4bK")


def test_first_answer_wins_and_the_other_phone_is_cancelled_as_answered_elsewhere() -> None:
    call = new_call(
        target("a100", "sip:x@a.invalid;transport=ws"), target("a101", "sip:y@b.invalid;transport=ws")
    )
    first, second = ringing(call)
    rung = call.branch_response(0, says(first, 180), 1.0)
    assert [c.response.status_code for c in only(rung, AnswerCaller)] == [180]
    assert isinstance(events(rung)[0], CallRinging)
    assert call.branch_response(1, says(second, 180), 1.1) == []  # ringing is told once
    answered = call.branch_response(1, says(second, 200, body=b"v=0 browser answer"), 5.0)
    sent = [(c.branch, c.request.method) for c in only(answered, SendToBranch)]
    assert sent == [(1, "ACK"), (0, "CANCEL")]
    cancel = only(answered, SendToBranch)[1].request
    assert cancel.headers.get("Reason") == COMPLETED_ELSEWHERE
    assert cancel.headers.get_all("Via") == first.headers.get_all("Via")[:1]
    (describe,) = only(answered, DescribeMedia)
    assert (describe.description.leg, describe.description.type, describe.key) == (
        LegKind.AGENT,
        "answer",
        "webrtc",
    )
    ok = only(answered, AnswerCaller)[0].response
    assert (ok.status_code, ok.body) == (200, b"v=0 answer")
    (event,) = events(answered)
    assert isinstance(event, CallAnswered)
    assert event.data.answered_by == "a101"
    assert call.phase is Phase.CONNECTED
    assert call.branch_response(0, says(first, 487), 5.1) == []
    hangup = call.bye(from_caller=True, now=65.0)
    bye = only(hangup, SendToBranch)[0]
    assert (bye.branch, bye.request.method) == (1, "BYE")
    ended = events(hangup)[0]
    assert isinstance(ended, CallEnded)
    assert (ended.data.status, ended.data.ended_by, ended.data.talk_time_s) == (
        CallStatus.COMPLETED,
        Party.CUSTOMER,
        60.0,
    )
    assert [c.key for c in only(hangup, StopMedia)] == ["webrtc"]


def test_a_phone_that_has_not_answered_provisionally_is_cancelled_when_it_does() -> None:
    call = new_call(
        target("a100", "sip:x@a.invalid;transport=ws"), target("a101", "sip:y@b.invalid;transport=ws")
    )
    first, second = ringing(call)
    call.branch_response(1, says(second, 200), 2.0)
    late = call.branch_response(0, says(first, 180), 2.1)  # RFC 3261 9.1: now it may be cancelled
    (cancel,) = only(late, SendToBranch)
    assert (cancel.request.method, cancel.request.headers.get("Reason")) == ("CANCEL", COMPLETED_ELSEWHERE)


def test_two_answers_at_once_the_latecomer_is_acknowledged_and_released() -> None:
    call = new_call(
        target("a100", "sip:x@a.invalid;transport=ws"), target("a101", "sip:y@b.invalid;transport=ws")
    )
    first, second = ringing(call)
    call.branch_response(0, says(first, 180), 1.0)
    call.branch_response(0, says(first, 200, tag="first"), 2.0)
    late = call.branch_response(1, says(second, 200, tag="second"), 2.0)
    assert [(c.branch, c.request.method) for c in only(late, SendToBranch)] == [(1, "ACK"), (1, "BYE")]
    assert events(late) == []


def test_nobody_registered_is_a_missed_call_with_480() -> None:
    call = new_call()
    commands = call.start(0.0)
    assert [c.response.status_code for c in only(commands, AnswerCaller)] == [480]
    created, ended = events(commands)
    assert isinstance(created, CallCreated)
    assert isinstance(ended, CallEnded)
    assert (ended.data.status, ended.data.cause, ended.data.sip_status) == (
        CallStatus.NO_ANSWER,
        EndCause.UNAVAILABLE,
        480,
    )
    assert only(commands, StartMedia) == []


def test_ring_timeout_cancels_every_phone_and_is_a_no_answer() -> None:
    call = new_call(
        target("a100", "sip:x@a.invalid;transport=ws"), target("a101", "sip:y@b.invalid;transport=ws")
    )
    first, second = ringing(call)
    call.branch_response(0, says(first, 180), 1.0)
    assert call.timer_fired("other", 30.0) == []
    timeout = call.timer_fired("ring", 30.0)
    assert [(c.branch, c.request.method) for c in only(timeout, SendToBranch)] == [(0, "CANCEL")]
    assert only(timeout, SendToBranch)[0].request.headers.get("Reason") is None
    assert [c.response.status_code for c in only(timeout, AnswerCaller)] == [480]
    (ended,) = events(timeout)
    assert (ended.data.status, ended.data.cause) == (CallStatus.NO_ANSWER, EndCause.NO_ANSWER)
    # The phone that never rang is cancelled as soon as it does.
    assert [
        c.request.method for c in only(call.branch_response(1, says(second, 180), 30.5), SendToBranch)
    ] == ["CANCEL"]


def test_every_phone_busy_is_busy_for_the_caller() -> None:
    call = new_call(
        target("a100", "sip:x@a.invalid;transport=ws"), target("a101", "sip:y@b.invalid;transport=ws")
    )
    first, second = ringing(call)
    assert call.branch_response(0, says(first, 486), 1.0) == []
    last = call.branch_response(1, says(second, 486), 1.5)
    assert [c.response.status_code for c in only(last, AnswerCaller)] == [486]
    (ended,) = events(last)
    assert (ended.data.status, ended.data.message) == (CallStatus.BUSY, "Line busy")


def test_a_decline_beats_busy_and_timeouts() -> None:
    call = new_call(
        target("a100", "sip:x@a.invalid;transport=ws"), target("a101", "sip:y@b.invalid;transport=ws")
    )
    first, _second = ringing(call)
    call.branch_response(0, says(first, 603), 1.0)
    last = call.branch_failed(1, timed_out=True, now=32.0)
    assert [c.response.status_code for c in only(last, AnswerCaller)] == [603]


def test_the_caller_hangs_up_while_it_rings() -> None:
    call = new_call(target("a100", "sip:x@a.invalid;transport=ws"))
    (first,) = ringing(call)
    call.branch_response(0, says(first, 180), 1.0)
    cancelled = call.caller_cancelled(4.0)
    assert [c.request.method for c in only(cancelled, SendToBranch)] == ["CANCEL"]
    assert [c.response.status_code for c in only(cancelled, AnswerCaller)] == [487]
    (ended,) = events(cancelled)
    assert (ended.data.status, ended.data.ended_by) == (CallStatus.CANCELED, Party.CUSTOMER)
    assert [c.key for c in only(cancelled, StopMedia)] == ["webrtc"]


def test_browsers_and_desk_phones_ring_together_and_the_losing_session_is_released() -> None:
    call = new_call(
        target("a100", "sip:x@a.invalid;transport=ws"),
        target("a101", "sip:101@192.0.2.7:5062", webrtc=False),
    )
    started = call.start(0.0)
    assert {(c.key, c.request.kind) for c in only(started, StartMedia)} == {
        ("webrtc", SessionKind.WEBRTC_RTP),
        ("rtp", SessionKind.RTP_RTP),
    }
    to_browser = call.media_ready(
        SessionCreated(worker_id="w", session_id="s1", agent_sdp="o1", customer_sdp="a1"), 0.1, "webrtc"
    )
    to_phone = call.media_ready(
        SessionCreated(worker_id="w", session_id="s2", agent_sdp="o2", customer_sdp="a2"), 0.2, "rtp"
    )
    ((browser,), (phone,)) = (only(to_browser, SendToBranch), only(to_phone, SendToBranch))
    assert (browser.request.body, phone.request.body) == (b"o1", b"o2")
    assert phone.request.headers.get("Via", "").startswith("SIP/2.0/UDP gw.test:5060")
    call.branch_response(0, says(browser.request, 180), 1.0)
    answered = call.branch_response(1, says(phone.request, 200), 3.0)
    assert [c.key for c in only(answered, StopMedia)] == ["webrtc"]
    assert only(answered, AnswerCaller)[0].response.body == b"a2"
    assert call.media_session == "s2"


def test_the_answering_agent_hangs_up() -> None:
    call = new_call(target("a100", "sip:x@a.invalid;transport=ws"))
    (first,) = ringing(call)
    call.branch_response(0, says(first, 200), 2.0)
    hangup = call.bye(from_caller=False, now=10.0)
    (bye,) = only(hangup, SendToCaller)
    assert (bye.request.method, bye.request.call_id) == ("BYE", "carrier-call-1")
    assert str(bye.request.uri) == "sip:+995555123456@198.51.100.9:5060"
    (ended,) = events(hangup)
    assert ended.data.ended_by is Party.AGENT


@pytest.mark.parametrize(
    ("caller", "callee", "expected"),
    [
        (False, True, (SessionKind.WEBRTC_RTP, LegKind.CUSTOMER, LegKind.AGENT)),
        (False, False, (SessionKind.RTP_RTP, LegKind.CUSTOMER, LegKind.AGENT)),
        (True, False, (SessionKind.WEBRTC_RTP, LegKind.AGENT, LegKind.CUSTOMER)),
        (True, True, (SessionKind.WEBRTC_WEBRTC, LegKind.AGENT, LegKind.CUSTOMER)),
    ],
)
def test_media_plan_puts_browsers_on_the_webrtc_leg(
    caller: bool, callee: bool, expected: tuple[SessionKind, LegKind, LegKind]
) -> None:
    assert media_plan(caller, callee) == expected


def test_the_workers_figures_are_charted_and_the_last_ones_summarise_the_call() -> None:
    call = new_call(target("a100", "sip:x@a.invalid;transport=ws"))
    (invite,) = ringing(call)
    call.branch_response(0, says(invite, 200, body=b"v=0 browser"), 1.0)
    legs = [
        LegQuality(
            leg=LegKind.AGENT, codec="PCMU/8000", packets_received=500, packets_lost=2, jitter_ms=3.5, mos=4.3
        ),
        LegQuality(
            leg=LegKind.CUSTOMER, codec="PCMU/8000", packets_received=498, packets_lost=0, jitter_ms=1.0
        ),
    ]
    (report,) = events(call.quality(legs))
    assert isinstance(report, CallQuality)
    assert report.data.legs == legs
    (ended,) = [e for e in events(call.hang_up(EndCause.NORMAL_CLEARING, 20.0)) if isinstance(e, CallEnded)]
    assert ended.data.quality == legs
    assert call.quality(legs) == []  # nothing after the end
