"""The outbound call state machine (agent -> carrier), driven by scripted carrier responses."""

from __future__ import annotations

import pytest

from services.signaling.b2bua.call import (
    AnswerCaller,
    DescribeMedia,
    Phase,
    Publish,
    SendToCaller,
    SendToCarrier,
    StopMedia,
)
from services.signaling.sip.auth import Algorithm, DigestClient, DigestOk, DigestServer, ha1
from shared.events import CallStatus, EndCause, Party
from tests.signaling.outbound import CREATED, carrier_says, dial, ended, new_call, only


def test_answered_call_then_agent_hangs_up() -> None:
    call = new_call()
    invite = dial(call)
    assert str(invite.uri) == "sip:+995555123456@carrier.test"
    assert invite.body == b"v=0 offer-rtp"
    assert invite.headers.get("Content-Type") == "application/sdp"
    assert call.carrier_response(carrier_says(invite, 100), 0.2) == []
    ringing = call.carrier_response(carrier_says(invite, 180), 0.5)
    assert [c.response.status_code for c in only(ringing, AnswerCaller)] == [180]
    assert [c.event.type for c in only(ringing, Publish)] == ["call.ringing"]
    early = call.carrier_response(carrier_says(invite, 183, body=b"v=0 early"), 0.7)
    [describe] = only(early, DescribeMedia)
    assert describe.description.sdp == "v=0 early"
    [agent_183] = only(early, AnswerCaller)
    assert (agent_183.response.status_code, agent_183.response.body) == (183, b"v=0 answer-for-agent")
    answered = call.carrier_response(
        carrier_says(invite, 200, body=b"v=0 final", contact="<sip:callee@198.51.100.9>"), 3.0
    )
    assert [type(c) for c in answered] == [DescribeMedia, SendToCarrier, AnswerCaller, Publish]
    ack = only(answered, SendToCarrier)[0].request
    assert (ack.method, str(ack.uri), ack.cseq.seq) == ("ACK", "sip:callee@198.51.100.9", 1)
    ok = only(answered, AnswerCaller)[0].response
    assert (ok.status_code, ok.body, ok.to.tag) == (200, b"v=0 answer-for-agent", call.agent_tag)
    assert ok.headers.get("Contact") == "<sip:gw@gw.acme.test:8089;transport=wss>"
    assert call.phase is Phase.CONNECTED
    hangup = call.bye(from_caller=True, now=63.0)
    [bye] = only(hangup, SendToCarrier)
    assert (bye.request.method, bye.request.cseq.seq, bye.request.to.tag) == ("BYE", 2, "carrier-tag")
    assert only(hangup, StopMedia)
    event = ended(hangup)
    assert (event.data.status, event.data.cause, event.data.ended_by) == (
        CallStatus.COMPLETED,
        EndCause.NORMAL_CLEARING,
        Party.AGENT,
    )
    assert event.data.talk_time_s == pytest.approx(60.0)
    assert event.data.duration_s == pytest.approx(63.0)
    assert event.sequence == 4  # created, ringing, early media, answered, ended


def test_carrier_hangs_up_and_the_agent_gets_a_bye_over_its_dialog() -> None:
    call = new_call()
    invite = dial(call)
    call.carrier_response(carrier_says(invite, 200, contact="<sip:callee@198.51.100.9>"), 1.0)
    commands = call.bye(from_caller=False, now=5.0)
    [bye] = only(commands, SendToCaller)
    assert str(bye.request.uri) == "sip:x7k2@a1b2.invalid;transport=ws;ob"
    assert (bye.request.from_.tag, bye.request.to.tag) == (call.agent_tag, "browser")
    assert ended(commands).data.ended_by is Party.CUSTOMER


def test_proxy_challenge_is_answered_once_with_the_trunks_credentials() -> None:
    carrier = DigestServer("carrier.test", b"k" * 32, proxy=True)
    call = new_call(DigestClient("trunk1", password="s3cret"))
    invite = dial(call)
    challenge = carrier_says(invite, 407, Proxy_Authenticate=carrier.challenges(0.0)[0])
    [retry] = only(call.carrier_response(challenge, 0.2), SendToCarrier)
    again = retry.request
    assert (again.call_id, again.from_.tag, again.cseq.seq) == (invite.call_id, invite.from_.tag, 2)
    assert again.via.branch != invite.via.branch
    credentials = again.headers.get("Proxy-Authorization")
    assert credentials is not None

    def lookup(user: str, algorithm: Algorithm) -> str | None:
        return ha1(user, "carrier.test", "s3cret", algorithm) if user == "trunk1" else None

    assert isinstance(carrier.verify(credentials, "INVITE", 0.3, lookup), DigestOk)
    # Refused again: the call fails with the old product's words.
    failed = call.carrier_response(
        carrier_says(again, 407, Proxy_Authenticate=carrier.challenges(0.4)[0]), 0.4
    )
    assert only(failed, AnswerCaller)[0].response.status_code == 407
    assert ended(failed).data.message == "Authentication with the carrier failed"


def test_busy_ends_the_call_with_words() -> None:
    call = new_call()
    invite = dial(call)
    commands = call.carrier_response(carrier_says(invite, 486), 2.0)
    assert only(commands, AnswerCaller)[0].response.status_code == 486
    assert only(commands, StopMedia)
    event = ended(commands)
    assert (event.data.status, event.data.sip_status, event.data.message) == (
        CallStatus.BUSY,
        486,
        "Line busy",
    )
    assert event.data.ended_by is Party.CUSTOMER
    assert call.carrier_response(carrier_says(invite, 486), 2.1) == []  # only one final event


def test_cancel_waits_for_a_provisional_then_cancels_the_same_transaction() -> None:
    call = new_call()
    invite = dial(call)
    assert call.caller_cancelled(0.2) == []
    [cancel] = only(call.carrier_response(carrier_says(invite, 100), 0.3), SendToCarrier)
    assert cancel.request.method == "CANCEL"
    assert cancel.request.via.branch == invite.via.branch  # RFC 3261 9.1
    assert (cancel.request.cseq.seq, cancel.request.cseq.method) == (1, "CANCEL")
    done = call.carrier_response(carrier_says(invite, 487), 0.4)
    assert only(done, AnswerCaller)[0].response.status_code == 487
    assert ended(done).data.status is CallStatus.CANCELED


def test_cancel_before_media_is_ready_ends_at_once() -> None:
    call = new_call()
    call.start(0.0)
    commands = call.caller_cancelled(0.1)
    assert only(commands, AnswerCaller)[0].response.status_code == 487
    assert ended(commands).data.status is CallStatus.CANCELED
    assert call.media_ready(CREATED, 0.2) == [StopMedia("the call ended before its media was ready")]


def test_a_2xx_crossing_our_cancel_is_acked_and_hung_up() -> None:
    call = new_call()
    invite = dial(call)
    call.carrier_response(carrier_says(invite, 180), 0.2)
    call.caller_cancelled(0.3)
    call.carrier_response(carrier_says(invite, 487), 0.4)
    late = call.carrier_response(carrier_says(invite, 200, contact="<sip:c@198.51.100.9>"), 0.5)
    assert [c.request.method for c in only(late, SendToCarrier)] == ["ACK", "BYE"]


def test_redirect_is_followed_to_the_contact() -> None:
    call = new_call()
    invite = dial(call)
    [follow] = only(
        call.carrier_response(carrier_says(invite, 302, contact="<sip:+995555123456@other.test>"), 0.2),
        SendToCarrier,
    )
    assert str(follow.request.uri) == "sip:+995555123456@other.test"
    assert follow.request.cseq.seq == 2


def test_no_answer_from_the_carrier_is_a_timeout() -> None:
    call = new_call()
    dial(call)
    commands = call.carrier_failed(timed_out=True, now=32.0)
    assert only(commands, AnswerCaller)[0].response.status_code == 408
    assert ended(commands).data.status is CallStatus.NO_ANSWER


def test_no_common_codec_is_a_488_for_the_agent() -> None:
    call = new_call()
    call.start(0.0)
    commands = call.media_failed("no common codec (offered G729/8000)", 0.1)
    assert only(commands, AnswerCaller)[0].response.status_code == 488
    assert ended(commands).data.message == "No common audio codec"
    assert not only(commands, StopMedia)


def test_media_timeout_hangs_up_both_legs() -> None:
    call = new_call()
    invite = dial(call)
    call.carrier_response(carrier_says(invite, 200, contact="<sip:c@198.51.100.9>"), 1.0)
    commands = call.hang_up(EndCause.MEDIA_TIMEOUT, 30.0)
    assert len(only(commands, SendToCarrier)) == 1
    assert len(only(commands, SendToCaller)) == 1
    event = ended(commands)
    assert (event.data.cause, event.data.ended_by) == (EndCause.MEDIA_TIMEOUT, Party.SYSTEM)
