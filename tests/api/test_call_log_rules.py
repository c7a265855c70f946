"""The call log's folding rules (services/api/calllog.py), without I/O: every order of a call's
events gives the same row, and late or repeated events never move a call backwards."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.api.calllog import apply_call_event, new_call, was_answered
from services.api.db import Call
from shared.events import (
    CallAnswered,
    CallAnsweredData,
    CallCreated,
    CallCreatedData,
    CallEnded,
    CallEndedData,
    CallEvent,
    CallHeld,
    CallHeldData,
    CallQuality,
    CallQualityData,
    CallResumed,
    CallResumedData,
    CallRinging,
    CallStatus,
    CallTransferred,
    CallTransferredData,
    Direction,
    EndCause,
    LegKind,
    LegQuality,
    Party,
    TransferKind,
)

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def leg(mos: float) -> LegQuality:
    return LegQuality(
        leg=LegKind.CUSTOMER, codec="PCMU", packets_received=900, packets_lost=100, jitter_ms=4.0, mos=mos
    )


def call_events(tenant: str = "tnt_a", call_id: str = "call-1") -> list[CallEvent]:
    common: dict[str, Any] = {"tenant_id": tenant, "call_id": call_id}
    return [
        CallCreated(
            **common,
            sequence=0,
            occurred_at=at(0),
            data=CallCreatedData(
                direction=Direction.OUTBOUND, from_number="100", to_number="+995555123456", agent_id="agt_1"
            ),
        ),
        CallRinging(**common, sequence=1, occurred_at=at(1)),
        CallAnswered(**common, sequence=2, occurred_at=at(5), data=CallAnsweredData(codec="PCMU")),
        CallHeld(**common, sequence=3, occurred_at=at(10), data=CallHeldData(held_by=Party.AGENT)),
        CallQuality(**common, sequence=4, occurred_at=at(12), data=CallQualityData(legs=[leg(3.9)])),
        CallResumed(**common, sequence=5, occurred_at=at(20), data=CallResumedData(resumed_by=Party.AGENT)),
        CallEnded(
            **common,
            sequence=6,
            occurred_at=at(65),
            data=CallEndedData(
                status=CallStatus.COMPLETED,
                cause=EndCause.NORMAL_CLEARING,
                ended_by=Party.CUSTOMER,
                sip_status=200,
                message="Call ended by the customer",
                answered_at=at(5),
                duration_s=65,
                talk_time_s=60,
                quality=[leg(4.2)],
            ),
        ),
    ]


def fold(events: list[CallEvent]) -> Call:
    call = new_call(events[0].tenant_id, events[0].call_id, events[0].occurred_at)
    for event in events:
        apply_call_event(call, event)
    return call


def snapshot(call: Call) -> dict[str, Any]:
    names = [c.key for c in Call.__table__.columns if c.key != "updated_at"]
    return {name: getattr(call, name) for name in names}


def test_in_order_the_call_reads_as_it_happened() -> None:
    call = fold(call_events())
    assert (call.status, call.direction, call.from_number, call.to_number) == (
        "completed",
        "outbound",
        "100",
        "+995555123456",
    )
    assert (call.started_at, call.ringing_at, call.answered_at, call.ended_at) == (
        at(0),
        at(1),
        at(5),
        at(65),
    )
    assert (call.talk_time_s, call.sip_status, call.end_cause, call.ended_by) == (
        60,
        200,
        "normal_clearing",
        "customer",
    )
    assert call.quality_final
    assert call.quality[0]["mos"] == 4.2
    assert call.events == 7


def test_every_order_of_the_events_gives_the_same_row() -> None:
    events = call_events()
    expected = snapshot(fold(events))
    orders = 0
    for order in itertools.permutations(events):
        assert snapshot(fold(list(order))) == expected, [e.type for e in order]
        orders += 1
    assert orders == 5040


def test_a_late_event_never_moves_the_status_back() -> None:
    created, ringing, answered, held, _quality, resumed, ended = call_events()
    assert fold([created, answered, ringing]).status == "in-progress"
    assert fold([created, resumed, held]).status == "in-progress"
    assert fold([created, ended, ringing, answered, held]).status == "completed"
    # A periodic quality report after the final figures does not replace them.
    late = CallQuality(tenant_id="tnt_a", call_id="call-1", sequence=5, data=CallQualityData(legs=[leg(1.5)]))
    assert fold([created, ended, late]).quality[0]["mos"] == 4.2


def test_events_before_call_created_still_make_a_row() -> None:
    created, ringing, answered, *_ = call_events()
    call = fold([answered, ringing])
    assert (call.direction, call.status, call.started_at) == (None, "in-progress", at(1))
    apply_call_event(call, created)
    assert (call.direction, call.status, call.started_at) == ("outbound", "in-progress", at(0))


def test_an_answered_call_counts_as_answered_however_it_ended() -> None:
    created, _ringing, answered, *_rest = call_events()
    transferred = fold([created, answered])
    transferred.status = "transferred"
    assert was_answered(transferred)
    missed = fold(
        [
            created,
            CallEnded(
                tenant_id="tnt_a",
                call_id="call-1",
                sequence=9,
                id=uuid.uuid4(),
                data=CallEndedData(
                    status=CallStatus.NO_ANSWER,
                    cause=EndCause.NO_ANSWER,
                    ended_by=Party.SYSTEM,
                    sip_status=408,
                    message="No answer",
                    duration_s=30,
                ),
            ),
        ]
    )
    assert not was_answered(missed)
    assert missed.status == "no-answer"


def transferred_call() -> list[CallEvent]:
    """A customer's call answered by agent a100, who transferred it (RFC 3515) to extension 101."""
    common: dict[str, Any] = {"tenant_id": "tnt_a", "call_id": "call-2"}
    return [
        CallCreated(
            **common,
            sequence=0,
            occurred_at=at(0),
            data=CallCreatedData(
                direction=Direction.INBOUND, from_number="+995555123456", to_number="+995322000000"
            ),
        ),
        CallRinging(**common, sequence=1, occurred_at=at(1)),
        CallAnswered(**common, sequence=2, occurred_at=at(4), data=CallAnsweredData(answered_by="a100")),
        CallTransferred(
            **common,
            sequence=3,
            occurred_at=at(30),
            data=CallTransferredData(
                kind=TransferKind.BLIND, target="101", from_agent_id="a100", to_agent_id="a101"
            ),
        ),
        CallHeld(**common, sequence=4, occurred_at=at(40), data=CallHeldData(held_by=Party.AGENT)),
        CallEnded(
            **common,
            sequence=5,
            occurred_at=at(90),
            data=CallEndedData(
                status=CallStatus.COMPLETED,
                cause=EndCause.NORMAL_CLEARING,
                ended_by=Party.CUSTOMER,
                message="Call ended by the customer",
                answered_at=at(4),
                duration_s=90,
                talk_time_s=86,
            ),
        ),
    ]


def test_a_transferred_call_reads_as_answered_transferred_then_completed_in_any_order() -> None:
    events = transferred_call()
    created, ringing, answered, transferred, held, _ended = events
    assert fold([created, ringing, answered, transferred]).status == "transferred"
    assert fold([created, answered, transferred, held]).status == "held"  # the new agent holds
    assert fold([created, answered, held, transferred]).status == "held"  # a late transfer event
    call = fold(events)
    assert (call.status, call.transfer_target, call.transferred_to_call_id) == ("completed", "101", None)
    assert (call.agent_id, call.answered_by, call.talk_time_s) == ("a100", "a100", 86)
    assert was_answered(call)
    expected = snapshot(call)
    for order in itertools.permutations(events):
        assert snapshot(fold(list(order))) == expected, [e.type for e in order]
