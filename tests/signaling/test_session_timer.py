"""Session timers on the carrier leg (RFC 4028), in virtual time: we ask for an interval, refresh
when the carrier makes us the refresher, and end the call when a refresh fails or is overdue."""

from __future__ import annotations

import pytest

from services.signaling.b2bua.call import OutboundCall, SendToCarrier, StartTimer, StopMedia
from services.signaling.b2bua.session_timer import (
    SessionExpires,
    TooBrief,
    expire_at,
    parse_min_se,
    parse_session_expires,
    refresh_at,
    uas_session,
)
from services.signaling.sip.message import Request
from shared.events import EndCause
from tests.signaling.outbound import carrier_says, dial, ended, new_call, only


def answered(call: OutboundCall, invite: Request, session_expires: str | None, at: float = 10.0) -> list:  # type: ignore[type-arg]
    extra = {"Session_Expires": session_expires} if session_expires else {}
    response = carrier_says(invite, 200, body=b"v=0 final", contact="<sip:callee@198.51.100.9>", **extra)
    return call.carrier_response(response, at)


def test_the_invite_asks_for_an_interval() -> None:
    invite = dial(new_call())
    assert (invite.headers.get("Session-Expires"), invite.headers.get("Min-SE")) == ("1800", "90")
    assert "timer" in (invite.headers.get("Supported") or "")


def test_we_refresh_at_half_the_interval_when_the_carrier_makes_us_refresher() -> None:
    call = new_call()
    invite = dial(call)
    [timer] = only(answered(call, invite, "1800;refresher=uac"), StartTimer)
    assert (timer.name, timer.at) == ("session-refresh", 910.0)
    assert call.timer_fired("session-refresh", 909.0) == []  # not yet due (a stale handle)
    [refresh] = only(call.timer_fired("session-refresh", 910.0), SendToCarrier)
    request = refresh.request
    assert (request.method, request.cseq.seq, str(request.uri)) == ("INVITE", 2, "sip:callee@198.51.100.9")
    assert request.headers.get("Session-Expires") == "1800;refresher=uac"
    assert request.body == b"v=0 offer-rtp"  # the same offer again: nothing changes but the deadline
    done = call.carrier_response(
        carrier_says(request, 200, body=b"v=0 final", Session_Expires="1800;refresher=uac"), 910.1
    )
    [ack] = only(done, SendToCarrier)
    assert (ack.request.method, ack.request.cseq.seq) == ("ACK", 2)
    assert [(t.name, t.at) for t in only(done, StartTimer)] == [("session-refresh", 1810.1)]


def test_a_refresh_answered_481_ends_the_call() -> None:
    call = new_call()
    invite = dial(call)
    answered(call, invite, "600")  # no refresher named: the UAC (us) refreshes (RFC 4028 7.2)
    [refresh] = only(call.timer_fired("session-refresh", 310.0), SendToCarrier)
    over = call.carrier_response(carrier_says(refresh.request, 481), 310.2)
    assert [c.request.method for c in only(over, SendToCarrier)] == ["BYE"]
    assert ended(over).data.cause is EndCause.SESSION_TIMER_EXPIRED


def test_a_refresh_that_times_out_ends_the_call_and_a_glare_is_retried() -> None:
    call = new_call()
    invite = dial(call)
    answered(call, invite, "600;refresher=uac")
    [refresh] = only(call.timer_fired("session-refresh", 310.0), SendToCarrier)
    retry = call.carrier_response(carrier_says(refresh.request, 491), 310.1)
    assert [(t.name, t.at) for t in only(retry, StartTimer)] == [("session-refresh", 320.1)]
    [again] = only(call.timer_fired("session-refresh", 320.1), SendToCarrier)
    assert again.request.cseq.seq == 3
    over = call.carrier_failed(timed_out=True, now=352.1)
    assert ended(over).data.cause is EndCause.SESSION_TIMER_EXPIRED


def test_when_the_carrier_refreshes_an_overdue_refresh_ends_the_call() -> None:
    call = new_call()
    invite = dial(call)
    [timer] = only(answered(call, invite, "1800;refresher=uas"), StartTimer)
    assert (timer.name, timer.at) == ("session-expire", 1778.0)
    [rearmed] = only(call.session_refreshed(from_caller=False, now=900.0), StartTimer)
    assert rearmed.at == 2668.0
    assert call.session_refreshed(from_caller=True, now=900.0) == []  # the agent's re-INVITE is no refresh
    assert call.timer_fired("session-expire", 1778.0) == []  # the old deadline passed
    over = call.timer_fired("session-expire", 2668.0)
    assert [c.request.method for c in only(over, SendToCarrier)] == ["BYE"]
    assert only(over, StopMedia)
    assert ended(over).data.cause is EndCause.SESSION_TIMER_EXPIRED
    assert call.session_header(from_caller=False) == "1800;refresher=uac"


def test_no_session_expires_in_the_answer_means_no_timer() -> None:
    call = new_call()
    invite = dial(call)
    assert only(answered(call, invite, None), StartTimer) == []
    assert call.timer_fired("session-refresh", 10_000.0) == []


def test_422_asks_again_with_the_carriers_minimum_once() -> None:
    call = new_call()
    invite = dial(call)
    [retry] = only(call.carrier_response(carrier_says(invite, 422, Min_SE="3600"), 0.3), SendToCarrier)
    assert (retry.request.cseq.seq, retry.request.headers.get("Session-Expires")) == (2, "3600")
    failed = call.carrier_response(carrier_says(retry.request, 422, Min_SE="3600"), 0.4)
    assert ended(failed).data.sip_status == 422


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1800;refresher=uac", SessionExpires(1800, "uac")),
        ("90 ; Refresher = UAS", SessionExpires(90, "uas")),
        ("600", SessionExpires(600, None)),
        ("600;refresher=both", SessionExpires(600, None)),
        ("soon", None),
        ("0", None),
        (None, None),
    ],
)
def test_session_expires_parsing(value: str | None, expected: SessionExpires | None) -> None:
    assert parse_session_expires(value) == expected


def test_min_se_and_deadlines() -> None:
    assert (parse_min_se("120;x=y"), parse_min_se("abc"), parse_min_se(None)) == (120, None, None)
    assert refresh_at(100.0, 1800) == 1000.0
    assert expire_at(0.0, 1800) == 1768.0  # minus 32 s
    assert expire_at(0.0, 90) == 60.0  # minus a third


@pytest.mark.parametrize(
    ("session_expires", "supported", "expected"),
    [
        (None, ("timer",), None),  # not asked: no timer
        ("1800", ("timer",), SessionExpires(1800, "uac")),  # the caller refreshes when it can
        ("1800;refresher=uas", ("timer",), SessionExpires(1800, "uas")),
        ("1800;refresher=uac", ("timer", "100rel"), SessionExpires(1800, "uac")),
        ("1800", (), SessionExpires(1800, "uas")),  # a proxy asked for a caller without timers
        ("1800;refresher=uac", (), SessionExpires(1800, "uas")),
        ("60", ("timer",), TooBrief(90)),  # RFC 4028 9: 422 with Min-SE
        ("garbage", ("timer",), None),
    ],
)
def test_what_our_2xx_says_of_the_callers_session_timer(
    session_expires: str | None, supported: tuple[str, ...], expected: SessionExpires | TooBrief | None
) -> None:
    assert uas_session(session_expires, supported) == expected
