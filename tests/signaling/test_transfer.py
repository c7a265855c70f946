"""Blind transfer (RFC 3515) of a call that rang agents: the agent who answered sends REFER, the new
agent's phones ring with a leg the worker prepared, the customer's leg stays. Driven by scripted
responses on a virtual clock (no sockets, no sleeps)."""

from __future__ import annotations

import pytest

from services.signaling.b2bua.call import HandOverMedia, Phase, SendToBranch, SendToCaller, StartTimer
from services.signaling.b2bua.referral import SIPFRAG, ReferError, notify, refer_target
from services.signaling.b2bua.ringing import COMPLETED_ELSEWHERE, TRANSFER_TIMER, RingCall, RingTarget
from services.signaling.sip.auth import DigestClient
from services.signaling.sip.message import Request, parse_message
from shared.events import CallEnded, CallStatus, CallTransferFailed, CallTransferred, EndCause, LegKind, Party
from shared.media import DiscardLegs, Hold, LegMedia, PrepareLeg, ReplaceLeg
from tests.signaling.test_ringing_call import UDP, events, new_call, only, ringing, says, target

A = "sip:a@a.invalid;transport=ws"


def refer(call: RingCall, refer_to: str = "<sip:102@acme.test>", cseq: int = 2) -> Request:
    """A REFER from the agent who answered (in its dialog: our tag is its To tag)."""
    winner = call.winner
    assert winner is not None
    assert winner.dialog is not None
    dialog = winner.dialog
    text = (
        f"REFER sip:echodesk@gw.test:8089;transport=wss SIP/2.0\r\n"
        f"Via: SIP/2.0/WSS a.invalid;branch=z9hG4bKrefer{cseq}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:100@acme.test>;tag={dialog.remote_tag}\r\n"
        f"To: <sip:+995555123456@acme.test>;tag={dialog.local_tag}\r\n"
        f"Call-ID: {dialog.call_id}\r\n"
        f"CSeq: {cseq} REFER\r\n"
        f"Refer-To: {refer_to}\r\n"
        "Contact: <sip:a@a.invalid;transport=ws>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def connected() -> RingCall:
    """A customer's call answered by agent a100's browser (branch 0)."""
    call = new_call(target("a100", A))
    (invite,) = ringing(call)
    call.branch_response(0, says(invite, 200, tag="agent-a", body=b"v=0 a"), 2.0)
    assert call.phase is Phase.CONNECTED
    return call


def sipfrags(commands: list[object], branch: int = 0) -> list[tuple[str, str]]:
    """(sipfrag status line, Subscription-State) of each NOTIFY sent to ``branch``."""
    out = []
    for command in commands:
        if isinstance(command, SendToBranch) and command.branch == branch:
            request = command.request
            if request.method == "NOTIFY":
                assert request.headers.get("Event") == f"refer;id={2}"
                assert request.headers.get("Content-Type") == SIPFRAG
                out.append((request.body.decode().strip(), request.headers.get("Subscription-State") or ""))
    return out


def test_refer_target_reads_the_extension_or_number_and_refuses_what_it_cannot_carry_out() -> None:
    call = connected()
    assert refer_target(refer(call)).dialed == "102"
    assert refer_target(refer(call, '"Sales" <sip:%2B995-322-000-001@acme.test;user=phone>')).dialed == (
        "+995322000001"
    )
    assert refer_target(refer(call, "<tel:+995-555-00-11-22>")).dialed == "+995555001122"
    for refer_to, status, words in (
        ("<mailto:boss@acme.test>", 416, "scheme"),
        ("<sip:102@acme.test?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>", 501, "Attended"),
        ("<sip:acme.test>", 400, "no extension"),
        ("<<garbage", 400, "Malformed"),
    ):
        with pytest.raises(ReferError) as refused:
            refer_target(refer(call, refer_to))
        assert (refused.value.status, words in refused.value.reason) == (status, True), refer_to
    twice = refer(call)
    twice.headers.add("Refer-To", "<sip:103@acme.test>")
    with pytest.raises(ReferError, match="More than one"):
        refer_target(twice)


def test_a_transfer_rings_the_new_agent_with_a_prepared_leg_and_hands_the_call_over() -> None:
    call = connected()
    request = refer(call)
    b_browser, b_phone = (
        target("a102", "sip:b@b.invalid;transport=ws"),
        target("a102", "sip:b@10.0.0.7", webrtc=False),
    )
    started = call.start_transfer(request, "102", (b_browser, b_phone), 10.0, to_agent_id="a102")
    assert sipfrags(started) == [("SIP/2.0 100 Trying", "active;expires=60")]
    steps = [c.request for c in only(started, HandOverMedia)]
    assert steps == [
        Hold(leg=LegKind.AGENT, held=True),
        Hold(leg=LegKind.CUSTOMER, held=True),
        PrepareLeg(leg=LegKind.AGENT, media=LegMedia.WEBRTC),
        PrepareLeg(leg=LegKind.AGENT, media=LegMedia.RTP),
    ]
    assert {c.key for c in only(started, HandOverMedia)} == {"webrtc"}  # the call's one session
    assert only(started, StartTimer)[0].name == TRANSFER_TIMER
    assert only(started, StartTimer)[0].at == 40.0
    assert call.transfer_refusal(from_caller=False) == (491, "A transfer of this call is already in progress")
    # Each kind of phone rings once the worker has its offer; the customer is shown to them.
    (to_browser,) = [c.request for c in only(call.transfer_offer(True, "v=0 webrtc", 10.1), SendToBranch)]
    (to_phone,) = [c.request for c in only(call.transfer_offer(False, "v=0 rtp", 10.1), SendToBranch)]
    assert (to_browser.body, to_phone.body) == (b"v=0 webrtc", b"v=0 rtp")
    assert str(to_phone.uri) == "sip:b@10.0.0.7"
    assert (to_phone.headers.get("From") or "").startswith('"Nino" <sip:+995555123456@')
    call.branch_response(1, says(to_browser, 180), 11.0)
    call.branch_response(2, says(to_phone, 180), 11.0)
    answered = call.branch_response(2, says(to_phone, 200, tag="desk", body=b"v=0 desk answer"), 15.0)
    sent = [(c.branch, c.request.method) for c in only(answered, SendToBranch)]
    assert sent == [(2, "ACK"), (1, "CANCEL"), (0, "NOTIFY"), (0, "BYE")]
    assert only(answered, SendToBranch)[1].request.headers.get("Reason") == COMPLETED_ELSEWHERE
    assert sipfrags(answered) == [("SIP/2.0 200 OK", "terminated;reason=noresource")]
    (replace,) = [c.request for c in only(answered, HandOverMedia)]
    assert replace == ReplaceLeg(leg=LegKind.AGENT, media=LegMedia.RTP, answer="v=0 desk answer")
    (transferred,) = events(answered)
    assert isinstance(transferred, CallTransferred)
    data = transferred.data
    assert (data.status, data.target, data.from_agent_id, data.to_agent_id) == (
        CallStatus.TRANSFERRED,
        "102",
        "a100",
        "a102",
    )
    # The call goes on with the new agent: its BYE ends the call, the customer gets ours.
    assert call.winner is not None
    assert call.winner.target.agent_id == "a102"
    side = call.side(from_caller=False)
    assert side is not None
    assert (side.dialog.call_id, side.media_leg, side.other_leg) == (
        to_phone.call_id,
        LegKind.AGENT,
        LegKind.CUSTOMER,
    )
    assert call.timer_fired(TRANSFER_TIMER, 40.0) == []
    ended = call.bye(from_caller=False, now=75.0)
    assert [c.request.method for c in only(ended, SendToCaller)] == ["BYE"]
    (end,) = events(ended)
    assert isinstance(end, CallEnded)
    assert (end.data.status, end.data.cause, end.data.ended_by, end.data.talk_time_s) == (
        CallStatus.COMPLETED,
        EndCause.NORMAL_CLEARING,
        Party.AGENT,
        73.0,
    )


def test_a_busy_new_agent_returns_the_customer_to_the_transferor() -> None:
    call = connected()
    call.start_transfer(refer(call), "102", (target("a102", "sip:b@b.invalid;transport=ws"),), 10.0)
    (invite,) = [c.request for c in only(call.transfer_offer(True, "v=0 webrtc", 10.1), SendToBranch)]
    failed = call.branch_response(1, says(invite, 486), 12.0)
    assert sipfrags(failed) == [("SIP/2.0 486 Busy Here", "terminated;reason=noresource")]
    assert [c.request for c in only(failed, HandOverMedia)] == [
        DiscardLegs(leg=LegKind.AGENT),
        Hold(leg=LegKind.AGENT, held=False),
        Hold(leg=LegKind.CUSTOMER, held=False),
    ]
    (failure,) = events(failed)
    assert isinstance(failure, CallTransferFailed)
    assert (
        failure.data.target,
        failure.data.from_agent_id,
        failure.data.sip_status,
        failure.data.reason,
    ) == (
        "102",
        "a100",
        486,
        "Busy Here",
    )
    assert call.phase is Phase.CONNECTED
    assert call.transfer_refusal(from_caller=False) is None  # the agent may try again
    assert call.winner is not None
    assert call.winner.target.agent_id == "a100"
    # A second try: the first try's timer, firing during it, is not this one's.
    again = call.start_transfer(
        refer(call, cseq=3), "103", (target("a103", "sip:c@c.invalid;transport=ws"),), 20.0
    )
    assert only(again, StartTimer)[0].at == 50.0
    assert call.timer_fired(TRANSFER_TIMER, 40.0) == []
    assert call.transfer is not None


def test_nobody_answering_is_cancelled_at_the_ring_timeout_and_reported() -> None:
    call = connected()
    call.start_transfer(refer(call), "102", (target("a102", "sip:b@b.invalid;transport=ws"),), 10.0)
    (invite,) = [c.request for c in only(call.transfer_offer(True, "v=0 webrtc", 10.1), SendToBranch)]
    call.branch_response(1, says(invite, 180), 11.0)
    assert call.timer_fired(TRANSFER_TIMER, 39.9) == []  # not due yet
    timeout = call.timer_fired(TRANSFER_TIMER, 40.0)
    assert [(c.branch, c.request.method) for c in only(timeout, SendToBranch)] == [
        (0, "NOTIFY"),
        (1, "CANCEL"),
    ]
    assert sipfrags(timeout) == [("SIP/2.0 408 No answer", "terminated;reason=noresource")]
    assert call.branch_response(1, says(invite, 487), 40.1) == []
    assert call.phase is Phase.CONNECTED


def test_a_transferor_who_left_and_a_failed_transfer_end_the_call_with_a_clear_cause() -> None:
    call = connected()
    call.start_transfer(refer(call), "102", (target("a102", "sip:b@b.invalid;transport=ws"),), 10.0)
    (invite,) = [c.request for c in only(call.transfer_offer(True, "v=0 webrtc", 10.1), SendToBranch)]
    assert call.bye(from_caller=False, now=10.5) == []  # the transferor hangs up: the call waits
    assert call.phase is Phase.CONNECTED
    failed = call.branch_response(1, says(invite, 603), 12.0)
    assert sipfrags(failed) == []  # its dialog is over: nothing to notify
    assert [c.request.method for c in only(failed, SendToCaller)] == ["BYE"]
    failure, end = events(failed)
    assert isinstance(failure, CallTransferFailed)
    assert isinstance(end, CallEnded)
    assert (end.data.cause, end.data.status, end.data.ended_by, end.data.sip_status) == (
        EndCause.TRANSFER_FAILED,
        CallStatus.COMPLETED,
        Party.SYSTEM,
        603,
    )
    assert end.data.message == "Call ended: the transfer to 102 failed (603 Decline)"


def test_a_refused_transfer_is_reported_at_once_and_changes_nothing() -> None:
    call = connected()
    refused = call.start_transfer(
        refer(call), "+88290000000", (), 10.0, refusal=(403, "premium-rate numbers are blocked")
    )
    assert sipfrags(refused) == [
        ("SIP/2.0 100 Trying", "active;expires=60"),
        ("SIP/2.0 403 premium-rate numbers are blocked", "terminated;reason=noresource"),
    ]
    assert only(refused, HandOverMedia) == []
    (failure,) = events(refused)
    assert isinstance(failure, CallTransferFailed)
    assert (failure.data.sip_status, failure.data.reason) == (403, "premium-rate numbers are blocked")
    assert call.transfer is None
    assert len(call.branches) == 1


def test_the_customer_hanging_up_during_a_transfer_cancels_it_and_ends_the_call() -> None:
    call = connected()
    call.start_transfer(refer(call), "102", (target("a102", "sip:b@b.invalid;transport=ws"),), 10.0)
    (invite,) = [c.request for c in only(call.transfer_offer(True, "v=0 webrtc", 10.1), SendToBranch)]
    call.branch_response(1, says(invite, 180), 11.0)
    gone = call.bye(from_caller=True, now=12.0)
    assert [(c.branch, c.request.method) for c in only(gone, SendToBranch)] == [
        (0, "NOTIFY"),
        (1, "CANCEL"),
        (0, "BYE"),
    ]
    assert sipfrags(gone) == [("SIP/2.0 487 Request Terminated", "terminated;reason=noresource")]
    (end,) = events(gone)
    assert isinstance(end, CallEnded)
    assert (end.data.cause, end.data.ended_by) == (EndCause.NORMAL_CLEARING, Party.CUSTOMER)
    # The new agent answering as the CANCEL crosses: acknowledged and released.
    late = call.branch_response(1, says(invite, 200, tag="late", body=b"v=0"), 12.1)
    assert [c.request.method for c in only(late, SendToBranch)] == ["ACK", "BYE"]


def test_who_may_transfer() -> None:
    call = new_call(target("a100", A))
    assert call.transfer_refusal(from_caller=False) == (491, "The call is not answered yet")
    call = connected()
    assert call.transfer_refusal(from_caller=True) == (
        403,
        "Only the agent who answered can transfer this call",
    )
    assert call.transfer_refusal(from_caller=False) is None


def test_notify_carries_the_status_as_a_sipfrag_in_the_dialog() -> None:
    call = connected()
    winner = call.winner
    assert winner is not None
    assert winner.dialog is not None
    request = notify(winner.dialog, refer(call), 180, "Ringing\r\nX: y", via_host="gw.test", transport="wss")
    assert request.method == "NOTIFY"
    assert request.body == b"SIP/2.0 180 Ringing X: y\r\n"  # one status line, never injected headers
    assert request.headers.get("Subscription-State") == "active;expires=60"
    assert request.call_id == winner.dialog.call_id


def test_a_transfer_out_calls_the_number_as_the_trunk_and_answers_its_challenge() -> None:
    call = connected()
    out = RingTarget(
        agent_id=None,
        extension="+995555000111",
        domain="carrier.test",
        contact="sip:+995555000111@carrier.test",
        address=UDP,
        webrtc=False,
        trunk_id="geo",
        caller_id="995322000000",
        credentials=DigestClient("geo-user", password="trunk-secret"),
    )
    started = call.start_transfer(refer(call), "+995555000111", (out,), 10.0)
    assert [c.request for c in only(started, HandOverMedia)][-1] == PrepareLeg(
        leg=LegKind.AGENT, media=LegMedia.RTP
    )
    (invite,) = [c.request for c in only(call.transfer_offer(False, "v=0 rtp", 10.1), SendToBranch)]
    assert str(invite.uri) == "sip:+995555000111@carrier.test"
    assert (invite.headers.get("From") or "").startswith("<sip:995322000000@carrier.test>;tag=")
    challenge = says(invite, 401)
    challenge.headers.add("WWW-Authenticate", 'Digest realm="carrier.test", nonce="n1", algorithm=MD5')
    (retry,) = [c.request for c in only(call.branch_response(1, challenge, 10.2), SendToBranch)]
    assert (retry.call_id, retry.from_.tag, retry.cseq.seq) == (invite.call_id, invite.from_.tag, 2)
    assert 'username="geo-user"' in (retry.headers.get("Authorization") or "")
    # The same challenge again: the credentials are wrong, the transfer fails with the carrier's words.
    failed = call.branch_response(1, says(retry, 401), 10.3)
    assert sipfrags(failed) == [("SIP/2.0 401 Unauthorized", "terminated;reason=noresource")]
    answered = call.start_transfer(refer(call, cseq=3), "+995555000111", (out,), 20.0)
    assert only(answered, StartTimer)
    (invite,) = [c.request for c in only(call.transfer_offer(False, "v=0 rtp", 20.1), SendToBranch)]
    done = call.branch_response(2, says(invite, 200, tag="far", body=b"v=0 far"), 22.0)
    (transferred,) = events(done)
    assert isinstance(transferred, CallTransferred)
    assert (transferred.data.target, transferred.data.to_agent_id) == ("+995555000111", None)
    assert call.transfer_refusal(from_caller=False) == (
        403,
        "Only the agent who answered can transfer this call",
    )
    ended = call.bye(from_caller=False, now=30.0)
    end = events(ended)[0]
    assert isinstance(end, CallEnded)
    assert end.data.ended_by is Party.CUSTOMER  # the outside party is no agent


def test_a_transfer_the_api_asked_for_sends_no_notify_and_says_who_asked() -> None:
    call = connected()
    started = call.start_transfer(
        None,
        "102",
        (target("a102", "sip:b@b.invalid;transport=ws"),),
        10.0,
        to_agent_id="a102",
        asked_by=Party.API,
    )
    assert sipfrags(started) == []
    (invite,) = [c.request for c in only(call.transfer_offer(True, "v=0 webrtc", 10.1), SendToBranch)]
    done = call.branch_response(1, says(invite, 200, tag="b", body=b"v=0 b"), 12.0)
    assert [(c.branch, c.request.method) for c in only(done, SendToBranch)] == [(1, "ACK"), (0, "BYE")]
    (transferred,) = events(done)
    assert isinstance(transferred, CallTransferred)
    assert (transferred.data.transferred_by, transferred.data.from_agent_id) == (Party.API, "a100")
