"""The event contract: every type round-trips, the union discriminates, bad events are refused,
and the committed JSON Schemas match the models."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from shared import docs, subjects
from shared.events import (
    EVENT_TYPES,
    AgentPresence,
    AgentPresenceData,
    CallAnswered,
    CallCreated,
    CallCreatedData,
    CallDtmf,
    CallDtmfData,
    CallEarlyMedia,
    CallEnded,
    CallEndedData,
    CallHeld,
    CallHeldData,
    CallQuality,
    CallQualityData,
    CallRecordingChanged,
    CallRecordingData,
    CallResumed,
    CallResumedData,
    CallRinging,
    CallStatus,
    CallTransferFailed,
    CallTransferFailedData,
    CallTransferred,
    CallTransferredData,
    Direction,
    EndCause,
    EventEnvelope,
    LegKind,
    LegQuality,
    MessageContent,
    MessageDelivered,
    MessageDeliveredData,
    MessageFailed,
    MessageFailedData,
    MessageFailure,
    MessageReceived,
    MessageSent,
    Party,
    PresenceState,
    RecordingCompleted,
    RecordingCompletedData,
    RecordingCompressed,
    RecordingCompressedData,
    RecordingDeleted,
    RecordingDeletedData,
    RecordingFailed,
    RecordingFailedData,
    RecordingStarted,
    RecordingStartedData,
    RecordingState,
    TransferKind,
    TrunkRegistration,
    TrunkRegistrationData,
    TrunkState,
    parse_event,
)
from tests.support.tools import REPO_ROOT

CALL = {"tenant_id": "acme", "call_id": "c-1"}


MESSAGE = {
    "tenant_id": "acme",
    "message_id": "m-1",
    "customer_number": "+995555123456",
    "conversation_id": uuid.UUID("4f7c9a52-7d0e-5a3b-9c1d-2e6f8a0b1c2d"),
}


def one_of_each() -> list[EventEnvelope]:
    quality = LegQuality(
        leg=LegKind.CUSTOMER,
        codec="PCMU",
        packets_received=500,
        packets_lost=2,
        jitter_ms=3.5,
        rtt_ms=40,
        mos=4.3,
    )
    return [
        CallCreated(
            **CALL,
            sequence=0,
            data=CallCreatedData(
                direction=Direction.OUTBOUND,
                from_number="100",
                to_number="+995555123456",
                agent_id="a-1",
                trunk_id="t-1",
            ),
        ),
        CallRinging(**CALL, sequence=1),
        CallEarlyMedia(**CALL, sequence=2),
        CallAnswered(**CALL, sequence=3),
        CallHeld(**CALL, sequence=4, data=CallHeldData(held_by=Party.AGENT)),
        CallResumed(**CALL, sequence=5, data=CallResumedData(resumed_by=Party.AGENT)),
        CallRecordingChanged(
            **CALL, sequence=5, data=CallRecordingData(state=RecordingState.PAUSED, changed_by=Party.API)
        ),
        CallDtmf(
            **CALL,
            sequence=6,
            data=CallDtmfData(digit="5", duration_ms=160, leg=LegKind.AGENT, method="sip-info"),
        ),
        CallQuality(**CALL, sequence=7, data=CallQualityData(legs=[quality])),
        CallTransferred(**CALL, sequence=8, data=CallTransferredData(kind=TransferKind.BLIND, target="101")),
        CallTransferFailed(
            **CALL,
            sequence=8,
            data=CallTransferFailedData(
                kind=TransferKind.BLIND, target="102", sip_status=486, reason="Busy Here"
            ),
        ),
        CallEnded(
            **CALL,
            sequence=9,
            data=CallEndedData(
                status=CallStatus.BUSY,
                cause=EndCause.BUSY,
                ended_by=Party.CUSTOMER,
                sip_status=486,
                sip_reason="Busy Here",
                message="Line busy",
                duration_s=4.2,
                quality=[quality],
            ),
        ),
        TrunkRegistration(
            tenant_id="acme",
            trunk_id="t-1",
            data=TrunkRegistrationData(
                state=TrunkState.FAILED,
                registrar="sip:carrier.example:5060",
                sip_status=403,
                reason="Authentication with the carrier failed",
                retry_in_s=30,
            ),
        ),
        AgentPresence(
            tenant_id="acme",
            agent_id="a-1",
            data=AgentPresenceData(
                state=PresenceState.REGISTERED, contacts=1, transport="wss", source="203.0.113.5:51000"
            ),
        ),
        RecordingStarted(
            **CALL,
            sequence=10,
            data=RecordingStartedData(recording_id="r-1", format="wav", channels=2, sample_rate=8000),
        ),
        RecordingCompleted(
            **CALL,
            sequence=11,
            data=RecordingCompletedData(
                recording_id="r-1",
                location="acme/2026/11/25/c-1.wav",
                format="wav",
                channels=2,
                sample_rate=8000,
                duration_s=61.2,
                size_bytes=979244,
                sha256="0" * 64,
            ),
        ),
        RecordingCompressed(
            **CALL,
            sequence=12,
            data=RecordingCompressedData(
                recording_id="r-1",
                location="s3://recordings/acme/2026/11/25/c-1-r-1.ogg",
                format="ogg/opus",
                size_bytes=48211,
                sha256="1" * 64,
            ),
        ),
        RecordingDeleted(
            **CALL,
            sequence=13,
            data=RecordingDeletedData(
                recording_id="r-1",
                locations=["s3://recordings/acme/2026/11/25/c-1-r-1.wav"],
                reason="erasure request 4711",
            ),
        ),
        RecordingFailed(
            **CALL, sequence=12, data=RecordingFailedData(recording_id="r-1", reason="disk full")
        ),
        MessageReceived(
            **MESSAGE,
            data=MessageContent(
                direction=Direction.INBOUND,
                from_number="+995555123456",
                to_number="+99532200200",
                trunk_id="geo",
                text="გამარჯობა",
                size_bytes=27,
            ),
        ),
        MessageSent(
            **MESSAGE,
            agent_id="a-1",
            data=MessageContent(
                direction=Direction.OUTBOUND,
                from_number="100",
                to_number="+995555123456",
                from_agent_id="a-1",
                text="Thanks, we call you back",
                size_bytes=24,
            ),
        ),
        MessageDelivered(**MESSAGE, agent_id="a-1", data=MessageDeliveredData(sip_status=200, waited_s=0.2)),
        MessageFailed(
            **MESSAGE,
            data=MessageFailedData(
                cause=MessageFailure.EXPIRED, sip_status=480, reason="not registered in time", waited_s=604800
            ),
        ),
    ]


def test_one_of_each_covers_every_type() -> None:
    assert {e.type for e in one_of_each()} == set(EVENT_TYPES)  # type: ignore[attr-defined]


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: e.type)  # type: ignore[attr-defined]
def test_round_trip_through_json_and_the_union(event: EventEnvelope) -> None:
    parsed = parse_event(event.model_dump_json())
    assert parsed == event
    assert type(parsed) is type(event)


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: e.type)  # type: ignore[attr-defined]
def test_every_event_validates_against_its_published_schema(event: EventEnvelope) -> None:
    directory = REPO_ROOT / "docs" / "events"
    instance = json.loads(event.model_dump_json())
    for name in (f"{event.type}.json", "event.json"):  # type: ignore[attr-defined]
        jsonschema.validate(instance, json.loads((directory / name).read_text()))


def test_envelope_defaults() -> None:
    event = CallRinging(**CALL, sequence=1)
    assert isinstance(event.id, uuid.UUID)
    assert event.occurred_at.tzinfo is not None
    assert event.occurred_at <= datetime.now(UTC)
    assert event.data.status is CallStatus.RINGING


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.update(type="call.exploded"), "type"),
        (lambda e: e.update(tenant_id="acme.evil"), "tenant_id"),
        (lambda e: e.update(call_id="a b"), "call_id"),
        (lambda e: e.update(sequence=-1), "sequence"),
        (lambda e: e.update(surprise=1), "surprise"),
        (lambda e: e["data"].update(sip_status=99), "sip_status"),
        (lambda e: e["data"].update(status="in-progress"), "status"),
        (lambda e: e.pop("tenant_id"), "tenant_id"),
    ],
)
def test_bad_events_are_refused_naming_the_field(mutate: object, field: str) -> None:
    event = json.loads(one_of_each()[9].model_dump_json())
    mutate(event)  # type: ignore[operator]
    with pytest.raises(ValidationError) as caught:
        parse_event(json.dumps(event))
    assert field in str(caught.value)


def test_not_json_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        parse_event(b"\xff\x00garbage")


def test_subjects_follow_the_event() -> None:
    events = {e.type: e for e in one_of_each()}  # type: ignore[attr-defined]
    assert subjects.event_subject(events["call.ended"]) == "calls.events.acme.c-1"
    assert subjects.event_subject(events["recording.completed"]) == "recordings.events.acme.c-1"
    assert subjects.event_subject(events["trunk.registration"]) == "trunks.events.acme.t-1"
    assert subjects.event_subject(events["agent.presence"]) == "agents.events.acme.a-1"
    assert subjects.event_subject(events["message.sent"]) == "messages.events.acme.m-1"
    for event in events.values():
        subject = subjects.event_subject(event)
        assert any(_matches(pattern, subject) for spec in subjects.STREAMS for pattern in spec.subjects)


def test_subject_tokens_are_checked() -> None:
    with pytest.raises(ValueError, match="not a valid subject token"):
        subjects.call_events("acme", "x.>")
    with pytest.raises(ValueError, match="not a valid subject token"):
        subjects.media_session("w 1", "s", "close")


def test_committed_generated_docs_are_current() -> None:
    stale = docs.stale(REPO_ROOT / "docs")
    assert stale == [], f"run `echodesk docs`: stale {stale}"


def test_staleness_is_detected(tmp_path: Path) -> None:
    docs.write(tmp_path)
    assert docs.stale(tmp_path) == []
    (tmp_path / "events" / "call.ended.json").write_text("{}\n")
    (tmp_path / "events" / "call.retired.json").write_text("{}\n")
    (tmp_path / "configuration.md").unlink()
    assert docs.stale(tmp_path) == ["configuration.md", "events/call.ended.json", "events/call.retired.json"]


def _matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match for the single-token ``*`` our stream subjects use."""
    p, s = pattern.split("."), subject.split(".")
    return len(p) == len(s) and all(a in ("*", b) for a, b in zip(p, s, strict=True))
