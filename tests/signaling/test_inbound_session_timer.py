"""RFC 4028 session timers on the caller's leg of a call that rings agents (the carrier's inbound
call, where we are the UAS), in virtual time: our 2xx states the interval and the refresher; the
carrier's refreshes keep the call and an overdue one ends it; when we refresh, a re-INVITE goes at
half the interval and its failure ends the call."""

from __future__ import annotations

from services.signaling.b2bua.call import AnswerCaller, Phase, SendToCaller, StartTimer
from services.signaling.b2bua.ringing import CALLER_EXPIRE, CALLER_REFRESH, RingCall
from services.signaling.b2bua.session_timer import SessionExpires, expire_at, refresh_at
from services.signaling.sip.message import Response, make_response
from shared.events import CallEnded, EndCause
from tests.signaling.test_ringing_call import events, new_call, only, ringing, says, target

ANSWERED_AT = 1.0


def connected(session: SessionExpires, *, supports_timer: bool = True) -> tuple[RingCall, Response]:
    """An inbound call answered by agent 100's browser; returns the call and our 2xx to the carrier."""
    call = new_call(target("a100", "sip:x@a.invalid;transport=ws"))
    call.caller_session = session
    call.caller_supports_timer = supports_timer
    (invite,) = ringing(call)
    commands = call.branch_response(0, says(invite, 200, body=b"v=0 browser"), ANSWERED_AT)
    assert call.phase is Phase.CONNECTED
    (answer,) = [c.response for c in only(commands, AnswerCaller) if c.response.status_code == 200]
    assert isinstance(answer, Response)
    timers = {t.name: t.at for t in only(commands, StartTimer)}
    if session.refresher == "uac":
        assert timers[CALLER_EXPIRE] == expire_at(ANSWERED_AT, session.interval_s)
    else:
        assert timers[CALLER_REFRESH] == refresh_at(ANSWERED_AT, session.interval_s)
    return call, answer


def test_the_2xx_states_the_interval_and_the_carrier_refreshes_for_hours() -> None:
    call, answer = connected(SessionExpires(1800, "uac"))
    assert answer.headers.get("Session-Expires") == "1800;refresher=uac"
    assert answer.headers.get("Require") == "timer"
    now = ANSWERED_AT
    for _ in range(8):  # four hours of refreshes every 15 minutes
        now += 900
        # A timer armed before the refresh fires late: it is superseded and does nothing.
        assert call.timer_fired(CALLER_EXPIRE, now) == []
        assert call.session_header(from_caller=True) == "1800;refresher=uac"
        (armed,) = call.session_refreshed(from_caller=True, now=now)
        assert armed == StartTimer(CALLER_EXPIRE, expire_at(now, 1800))
    assert call.phase is Phase.CONNECTED
    assert call.session_refreshed(from_caller=False, now=now) == []  # the agent's end has no timer


def test_an_overdue_refresh_from_the_carrier_ends_the_call_on_both_legs() -> None:
    call, _ = connected(SessionExpires(90, "uac"))
    due = expire_at(ANSWERED_AT, 90)
    assert call.timer_fired(CALLER_EXPIRE, due - 1) == []
    commands = call.timer_fired(CALLER_EXPIRE, due)
    byes = [c.request.method for c in commands if isinstance(c, SendToCaller)]
    assert byes == ["BYE"]
    (ended,) = [e for e in events(commands) if isinstance(e, CallEnded)]
    assert ended.data.cause is EndCause.SESSION_TIMER_EXPIRED
    assert call.phase is Phase.ENDED


def test_we_refresh_a_caller_that_cannot_and_keep_refreshing() -> None:
    call, answer = connected(SessionExpires(600, "uas"), supports_timer=False)
    assert answer.headers.get("Session-Expires") == "600;refresher=uas"
    assert answer.headers.get("Require") is None  # RFC 4028 9: not to a UAC without timer support
    now = refresh_at(ANSWERED_AT, 600)
    for _ in range(3):
        (sent,) = only(call.timer_fired(CALLER_REFRESH, now), SendToCaller)
        refresh = sent.request
        assert refresh.method == "INVITE"
        assert refresh.headers.get("Session-Expires") == "600;refresher=uas"
        assert refresh.body == b"v=0 answer"  # our SDP to the carrier, unchanged
        # No second refresh while one is in flight.
        assert call.timer_fired(CALLER_REFRESH, now) == []
        commands = call.caller_response(make_response(refresh, 200, to_tag="carrier"), now + 0.05)
        (ack,) = only(commands, SendToCaller)
        assert (ack.request.method, ack.request.cseq.seq) == ("ACK", refresh.cseq.seq)
        (armed,) = only(commands, StartTimer)
        now = refresh_at(now + 0.05, 600)
        assert armed == StartTimer(CALLER_REFRESH, now)
    assert call.phase is Phase.CONNECTED


def test_a_refresh_that_times_out_or_gets_481_ends_the_call_and_a_glare_is_retried() -> None:
    for status in (None, 481, 408):
        call, _ = connected(SessionExpires(600, "uas"), supports_timer=False)
        now = refresh_at(ANSWERED_AT, 600)
        (sent,) = only(call.timer_fired(CALLER_REFRESH, now), SendToCaller)
        response = None if status is None else make_response(sent.request, status, to_tag="carrier")
        ended = [e for e in events(call.caller_response(response, now + 1)) if isinstance(e, CallEnded)]
        assert [e.data.cause for e in ended] == [EndCause.SESSION_TIMER_EXPIRED], status
    call, _ = connected(SessionExpires(600, "uas"), supports_timer=False)
    now = refresh_at(ANSWERED_AT, 600)
    (sent,) = only(call.timer_fired(CALLER_REFRESH, now), SendToCaller)
    (retry,) = call.caller_response(make_response(sent.request, 491, to_tag="carrier"), now + 1)
    assert retry == StartTimer(CALLER_REFRESH, now + 1 + 10.0)
    assert call.phase is Phase.CONNECTED


def test_no_session_timer_asked_means_none_in_the_2xx() -> None:
    call = new_call(target("a100", "sip:x@a.invalid;transport=ws"))
    (invite,) = ringing(call)
    commands = call.branch_response(0, says(invite, 200, body=b"v=0 browser"), ANSWERED_AT)
    (answer,) = [c.response for c in only(commands, AnswerCaller) if c.response.status_code == 200]
    assert answer.headers.get("Session-Expires") is None
    assert not [t for t in only(commands, StartTimer) if t.name in (CALLER_EXPIRE, CALLER_REFRESH)]
