"""A call's snapshot (b2bua/snapshot.py) taken, restored on a new instance's clock, and carried on.

Sans-I/O on a virtual clock: the old instance's loop clock and the new one's differ (``wall_offset``
translates both to epoch seconds), and every in-dialog request the restored call sends or accepts is
checked against the dialogs the original call had (RFC 3261 12: Call-ID, tags, CSeq, route set).
"""

from __future__ import annotations

import pytest

from services.signaling.b2bua.bridged import CALLEE, BridgedCall
from services.signaling.b2bua.call import (
    OutboundCall,
    Publish,
    SendToBranch,
    SendToCaller,
    StartTimer,
    StopMedia,
)
from services.signaling.b2bua.snapshot import (
    SEQUENCE_BLOCK,
    CallSnapshot,
    FlowRef,
    Flows,
    abandon,
    ack_for,
    capture,
    restore,
)
from services.signaling.sip.dialog import Dialog, DialogError
from services.signaling.sip.message import Request, make_response
from shared.events import CallEnded, CallHeld, EndCause, LegKind, Party
from tests.signaling import test_ringing_call as ringing
from tests.signaling.outbound import carrier_says, dial, new_call, only

BROWSER = FlowRef(transport="wss", host="192.0.2.10", port=50123, aor="acme/a100", instance="<urn:uuid:1>")
CARRIER = FlowRef(transport="udp", host="203.0.113.1", port=5060)
DESK = FlowRef(transport="udp", host="192.0.2.20", port=5062)
#: Epoch minus the old instance's loop clock, and minus the new one's (it started later, at 0).
OLD_OFFSET = 1_700_000_000.0
NEW_OFFSET = OLD_OFFSET + 100.0
SESSIONS = {"main": ("w1", "s1")}


def connected_outbound(*, session_expires: str | None = "1800;refresher=uac") -> OutboundCall:
    call = new_call()
    invite = dial(call)
    extra = {"Session_Expires": session_expires} if session_expires else {}
    call.carrier_response(carrier_says(invite, 180), 1.0)
    ok = carrier_says(invite, 200, body=b"v=0 carrier", contact="<sip:carrier@203.0.113.1:5060>", **extra)
    ok.headers.add("Record-Route", "<sip:proxy.carrier.test;lr>")
    call.carrier_response(ok, 2.0)
    return call


def round_trip(
    call: OutboundCall | BridgedCall, flows: Flows, *, now: float, taken_at: float = OLD_OFFSET
) -> BridgedCall:
    """Snapshot on a clock ``taken_at`` behind epoch, restored on the new instance's."""
    snapshot = capture(call, flows, SESSIONS, taken_at)
    assert snapshot is not None
    data = snapshot.model_dump_json(exclude_defaults=True).encode()
    restored = restore(
        CallSnapshot.model_validate_json(data), now=now, wall_offset=NEW_OFFSET, source="sig-1"
    )
    return restored.call


def same_dialog(a: Dialog, b: Dialog) -> None:
    for name in (
        "call_id",
        "local_tag",
        "remote_tag",
        "local_seq",
        "remote_seq",
        "invite_seq",
        "local_contact",
    ):
        assert getattr(a, name) == getattr(b, name), name
    assert str(a.remote_target) == str(b.remote_target)
    assert str(a.local_uri) == str(b.local_uri)
    assert str(a.remote_uri) == str(b.remote_uri)
    assert [str(r) for r in a.route_set] == [str(r) for r in b.route_set]


def test_a_connected_outbound_call_comes_back_with_both_dialogs_and_its_media() -> None:
    call = connected_outbound()
    assert call.agent_dialog is not None
    assert call.carrier_dialog is not None
    restored = round_trip(call, Flows(caller=BROWSER, callee=None, carrier=CARRIER), now=0.0)
    same_dialog(restored.caller.dialog, call.agent_dialog)
    assert restored.callee is not None
    same_dialog(restored.callee.dialog, call.carrier_dialog)
    assert (restored.media_worker, restored.media_session) == ("w1", "s1")
    assert (restored.caller.media_leg, restored.callee.media_leg) == (LegKind.AGENT, LegKind.CUSTOMER)
    assert restored.caller_call_id == "sipjs-call-1"
    assert restored.trunk_id == "trunk-1"
    assert restored.agent_ids == ("a100",)
    # Times move to the new clock: answered 2 s into the old one is -98 s on the new one.
    assert restored.answered_at == pytest.approx(2.0 - 100.0)
    side = restored.side(from_caller=True)
    assert side is not None
    assert (side.media_leg, side.other_leg, side.party) == (
        LegKind.AGENT,
        LegKind.CUSTOMER,
        Party.AGENT,
    )


def test_a_bye_from_the_carrier_after_the_restart_ends_both_legs_with_the_next_sequences() -> None:
    call = connected_outbound()
    used = call._sequence
    assert call.agent_dialog is not None
    agent_seq = call.agent_dialog.local_seq
    restored = round_trip(call, Flows(caller=DESK, callee=None, carrier=CARRIER), now=0.0)
    commands = restored.bye(from_caller=False, now=20.0)
    (bye,) = only(commands, SendToCaller)
    assert (bye.request.method, bye.request.call_id, bye.request.cseq.seq) == (
        "BYE",
        "sipjs-call-1",
        agent_seq + 1,
    )
    assert bye.request.to.tag == "browser"
    assert bye.request.from_.tag == call.agent_tag
    assert str(bye.request.uri) == "sip:x7k2@a1b2.invalid;transport=ws;ob"
    (stop,) = only(commands, StopMedia)
    assert stop.key == "main"
    (ended,) = [c.event for c in only(commands, Publish)]
    assert isinstance(ended, CallEnded)
    assert ended.data.cause is EndCause.NORMAL_CLEARING
    assert ended.data.ended_by is Party.CUSTOMER
    # Never a sequence the old instance may have used; at most a block skipped.
    assert used < ended.sequence <= used + 2 * SEQUENCE_BLOCK
    assert ended.data.talk_time_s == pytest.approx(20.0 + 100.0 - 2.0)
    assert restored.bye(from_caller=True, now=21.0) == []  # over


def test_in_dialog_requests_are_checked_against_the_restored_cseq() -> None:
    call = connected_outbound()
    restored = round_trip(call, Flows(caller=DESK, callee=None, carrier=CARRIER), now=0.0)
    assert restored.callee is not None
    dialog = restored.callee.dialog
    stale = Request(
        "INVITE",
        "sip:gw@gw.test",
        [
            ("Via", "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKre1"),
            ("From", str(dialog.remote_uri)),
            ("To", str(dialog.local_uri)),
            ("Call-ID", dialog.call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", "<sip:carrier@203.0.113.9:5070>"),
        ],
    )
    dialog.accept_request(stale)
    assert str(dialog.remote_target) == "sip:carrier@203.0.113.9:5070"  # a target refresh moves it
    with pytest.raises(DialogError):
        dialog.accept_request(stale)  # RFC 3261 12.2.2: not above the last one


def test_the_session_timer_runs_on_and_its_refresh_reinvite_continues_the_carrier_dialog() -> None:
    call = connected_outbound()
    due = call._due["session-refresh"]  # on the old clock: 2 + 1800/2
    assert call.carrier_dialog is not None
    carrier_seq = call.carrier_dialog.local_seq
    restored = round_trip(call, Flows(caller=DESK, callee=None, carrier=CARRIER), now=0.0)
    (timer,) = restored.start(0.0)
    assert isinstance(timer, StartTimer)
    assert timer.name == "session-refresh"
    assert timer.at == pytest.approx(due - 100.0)
    assert restored.timer_fired("session-refresh", timer.at - 5) == []  # not yet
    (sent,) = restored.timer_fired("session-refresh", timer.at)
    assert isinstance(sent, SendToBranch)
    assert sent.branch == CALLEE
    refresh = sent.request
    assert (refresh.method, refresh.cseq.seq, refresh.body) == ("INVITE", carrier_seq + 1, b"v=0 offer-rtp")
    assert refresh.headers.get("Session-Expires") == "1800;refresher=uac"
    assert refresh.headers.get("Route") == "<sip:proxy.carrier.test;lr>"
    ok = make_response(refresh, 200, headers=(("Session-Expires", "1800;refresher=uac"),))
    ok.headers.add("Contact", "<sip:carrier@203.0.113.1:5060>")
    answered = restored.branch_response(CALLEE, ok, timer.at + 0.1)
    ack, rearmed = answered
    assert isinstance(ack, SendToBranch)
    assert (ack.request.method, ack.request.cseq.seq) == (
        "ACK",
        carrier_seq + 1,
    )
    assert isinstance(rearmed, StartTimer)
    assert rearmed.at == pytest.approx(timer.at + 0.1 + 900)
    # The refreshed state is what the next snapshot carries.
    again = round_trip(restored, Flows(caller=DESK, callee=CARRIER), now=0.0, taken_at=NEW_OFFSET)
    assert again.callee is not None
    assert again.callee.dialog.local_seq == carrier_seq + 1
    assert again.due["session-refresh"] == pytest.approx(rearmed.at)


def test_a_refresh_nobody_answers_ends_the_restored_call() -> None:
    restored = round_trip(connected_outbound(), Flows(caller=DESK, callee=None, carrier=CARRIER), now=0.0)
    (timer,) = restored.start(0.0)
    assert isinstance(timer, StartTimer)
    restored.timer_fired("session-refresh", timer.at)
    commands = restored.branch_failed(CALLEE, timed_out=True, now=timer.at + 32)
    assert [c.request.method for c in only(commands, SendToCaller) + only(commands, SendToBranch)] == [
        "BYE",
        "BYE",
    ]
    (ended,) = [c.event for c in only(commands, Publish)]
    assert ended.data.cause is EndCause.SESSION_TIMER_EXPIRED


def test_hold_and_hang_up_by_the_api_on_a_restored_call() -> None:
    restored = round_trip(
        connected_outbound(session_expires=None), Flows(caller=DESK, callee=None, carrier=CARRIER), now=0.0
    )
    assert restored.start(0.0) == []  # no session timer asked by the carrier
    (held,) = [c.event for c in only(restored.hold_changed(Party.API, True, 1.0), Publish)]
    assert isinstance(held, CallHeld)
    assert restored.held_by(Party.API)
    commands = restored.hang_up(EndCause.NORMAL_CLEARING, 2.0, by=Party.API)
    assert len(only(commands, SendToCaller)) == 1
    assert len(only(commands, SendToBranch)) == 1
    (ended,) = [c.event for c in only(commands, Publish)]
    assert ended.data.ended_by is Party.API
    assert ended.sequence == held.sequence + 1


def test_an_inbound_call_an_agent_answered_comes_back_with_the_agent_as_callee() -> None:
    call = ringing.new_call(ringing.target("a100", "sip:x@a.invalid;transport=ws"))
    (first,) = ringing.ringing(call)
    call.branch_response(0, ringing.says(first, 200), 2.0)
    assert call.winner is not None
    assert call.winner.dialog is not None
    assert call.caller_dialog is not None
    flows = Flows(caller=CARRIER, callee=BROWSER)
    snapshot = capture(call, flows, {"webrtc": ("w1", "s-webrtc")}, OLD_OFFSET)
    assert snapshot is not None
    assert snapshot.connected
    restored = restore(snapshot, now=0.0, wall_offset=NEW_OFFSET, source="sig-1")
    assert restored.session == ("w1", "s-webrtc")
    assert restored.callee_flow == BROWSER
    bridged = restored.call
    same_dialog(bridged.caller.dialog, call.caller_dialog)
    assert bridged.callee is not None
    same_dialog(bridged.callee.dialog, call.winner.dialog)
    assert (bridged.caller.party, bridged.callee.party, bridged.callee.agent_id) == (
        Party.CUSTOMER,
        Party.AGENT,
        "a100",
    )
    assert (bridged.caller.media_leg, bridged.callee.media_leg) == (LegKind.CUSTOMER, LegKind.AGENT)
    commands = bridged.bye(from_caller=True, now=5.0)
    (stop,) = only(commands, StopMedia)
    assert stop.key == "webrtc"  # the session's key on the original call
    (bye,) = only(commands, SendToBranch)
    assert (bye.branch, bye.request.method, bye.request.call_id) == (CALLEE, "BYE", call.winner.sip_call_id)
    (ended,) = [c.event for c in only(commands, Publish)]
    assert ended.data.ended_by is Party.CUSTOMER


def test_a_call_still_ringing_is_ended_on_both_legs() -> None:
    call = new_call()
    invite = dial(call)
    call.carrier_response(carrier_says(invite, 180), 1.0)
    snapshot = capture(call, Flows(caller=DESK, callee=None, carrier=CARRIER), SESSIONS, OLD_OFFSET)
    assert snapshot is not None
    assert not snapshot.connected
    assert b"v=0" not in snapshot.model_dump_json().encode()  # no bodies kept: heads only
    ending = abandon(
        CallSnapshot.model_validate_json(snapshot.model_dump_json()), now_epoch=OLD_OFFSET + 9, source="sig-1"
    )
    assert ending.answer is not None
    response, where = ending.answer
    assert (response.status_code, response.to.tag, where) == (487, call.agent_tag, DESK)
    assert response.headers.get_all("Via") == call.agent_invite.headers.get_all("Via")
    ((cancel, pending, to),) = ending.cancels
    assert to == CARRIER
    assert cancel.method == "CANCEL"
    assert cancel.headers.get_all("Via") == invite.headers.get_all("Via")[:1]
    assert (cancel.cseq.seq, cancel.call_id, str(cancel.uri)) == (
        invite.cseq.seq,
        invite.call_id,
        str(invite.uri),
    )
    assert ending.ended.data.cause is EndCause.SIGNALING_RESTARTED
    assert ending.ended.sequence > call._sequence - 1
    assert ending.ended.data.duration_s == pytest.approx(9.0)
    # The carrier's 487 to the INVITE is acknowledged without the dead transaction (RFC 3261 17.1.1.3).
    terminated = make_response(pending, 487, to_tag="carrier-tag")
    ack = ack_for(pending, terminated)
    assert (ack.method, ack.cseq.seq, ack.to.tag) == ("ACK", invite.cseq.seq, "carrier-tag")
    assert ack.headers.get_all("Via") == invite.headers.get_all("Via")[:1]


def test_a_call_waiting_for_its_media_has_nothing_to_cancel() -> None:
    call = new_call()
    call.start(0.0)
    snapshot = capture(call, Flows(caller=DESK, callee=None), {}, OLD_OFFSET)
    assert snapshot is not None
    ending = abandon(snapshot, now_epoch=OLD_OFFSET, source="sig-1")
    assert ending.cancels == []
    assert ending.answer is not None


def test_an_ended_call_has_no_snapshot() -> None:
    call = connected_outbound()
    call.bye(from_caller=True, now=3.0)
    assert capture(call, Flows(caller=DESK, callee=None, carrier=CARRIER), SESSIONS, OLD_OFFSET) is None


def test_a_snapshot_of_a_newer_version_with_more_fields_is_still_read() -> None:
    snapshot = capture(
        connected_outbound(), Flows(caller=DESK, callee=None, carrier=CARRIER), SESSIONS, OLD_OFFSET
    )
    assert snapshot is not None
    data = snapshot.model_dump(mode="json") | {"version": 2, "future_field": [1, 2]}
    assert CallSnapshot.model_validate(data).call_id == "c1"
