"""How events become the call log: pure functions of (row, event), no I/O, so every ordering of
duplicated and late events can be tested directly.

The rules that make the log exact whatever order events arrive in:

- An event is applied once: the ingestion skips an event id it has stored (services/api/ingestion.py).
- ``status`` follows the status-bearing event with the highest per-call ``sequence``: a
  ``call.ringing`` that arrives after ``call.answered`` is put on the timeline but does not move the
  status back.
- ``call.ended`` is final: once it is applied no other event changes the status, the end, or the
  final quality figures.
- Times are the events' ``occurred_at``; the earliest one stands in for the creation until
  ``call.created`` arrives.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.api.db import Call, Recording
from shared.events import (
    CallAnswered,
    CallCreated,
    CallDtmf,
    CallEarlyMedia,
    CallEnded,
    CallEvent,
    CallHeld,
    CallQuality,
    CallRecordingChanged,
    CallResumed,
    CallRinging,
    CallStatus,
    CallTransferFailed,
    CallTransferred,
    LegQuality,
    RecordingCompleted,
    RecordingCompressed,
    RecordingDeleted,
    RecordingEvent,
    RecordingFailed,
    RecordingStarted,
)


class RecordingStatus:
    RECORDING = "recording"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"


def new_call(tenant_id: str, call_id: str, first_seen: datetime) -> Call:
    """A call row before any event is applied (the first event may not be ``call.created``)."""
    return Call(
        tenant_id=tenant_id,
        id=call_id,
        status=CallStatus.INITIATED.value,
        status_sequence=-1,
        started_at=first_seen,
        recorded=False,
        quality=[],
        quality_sequence=-1,
        quality_final=False,
        events=0,
    )


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def _advance(call: Call, status: CallStatus, sequence: int) -> None:
    if call.ended_at is None and sequence > call.status_sequence:
        call.status = status.value
        call.status_sequence = sequence


def _legs(legs: list[LegQuality]) -> list[dict[str, Any]]:
    return [leg.model_dump(mode="json") for leg in legs]


def apply_call_event(call: Call, event: CallEvent) -> None:
    """Fold one (not yet applied) call event into its call's row."""
    call.events += 1
    at = event.occurred_at
    if call.direction is None and not isinstance(event, CallCreated):
        call.started_at = _earliest(call.started_at, at)
    match event:
        case CallCreated(data=data):
            call.direction = data.direction.value
            call.from_number = data.from_number
            call.to_number = data.to_number
            # A customer's call names no agent: the one who answered is its agent, whichever came first.
            call.agent_id = data.agent_id or call.answered_by
            call.trunk_id = data.trunk_id
            call.parent_call_id = data.parent_call_id
            call.recorded = call.recorded or data.recorded
            call.started_at = at
            _advance(call, data.status, event.sequence)
        case CallRinging():
            call.ringing_at = _earliest(call.ringing_at, at)
            _advance(call, CallStatus.RINGING, event.sequence)
        case CallEarlyMedia():
            call.ringing_at = _earliest(call.ringing_at, at)
            _advance(call, CallStatus.EARLY_MEDIA, event.sequence)
        case CallAnswered(data=data):
            call.answered_at = _earliest(call.answered_at, at)
            call.answered_by = data.answered_by or call.answered_by
            call.codec = data.codec or call.codec
            call.media_worker = data.media_worker or call.media_worker
            if call.direction is not None and data.answered_by and call.agent_id is None:
                call.agent_id = data.answered_by
            _advance(call, CallStatus.IN_PROGRESS, event.sequence)
        case CallHeld():
            _advance(call, CallStatus.HELD, event.sequence)
        case CallResumed():
            _advance(call, CallStatus.IN_PROGRESS, event.sequence)
        case CallTransferred(data=data):
            call.transfer_target = data.target
            call.transferred_to_call_id = data.new_call_id
            _advance(call, CallStatus.TRANSFERRED, event.sequence)
        case CallDtmf() | CallRecordingChanged() | CallTransferFailed():
            pass  # on the timeline only
        case CallQuality(data=data):
            if not call.quality_final and event.sequence > call.quality_sequence:
                call.quality = _legs(data.legs)
                call.quality_sequence = event.sequence
                call.quality_final = data.final
        case CallEnded(data=data):
            _apply_end(call, event, data.answered_at)


def _apply_end(call: Call, event: CallEnded, answered_at: datetime | None) -> None:
    if call.ended_at is not None:
        return  # a second, different end of the same call: the first one stands
    data = event.data
    call.status = data.status.value
    call.status_sequence = event.sequence
    call.ended_at = event.occurred_at
    call.end_cause = data.cause.value
    call.ended_by = data.ended_by.value
    call.sip_status = data.sip_status
    call.sip_reason = data.sip_reason
    call.message = data.message
    call.duration_s = data.duration_s
    call.talk_time_s = data.talk_time_s
    if answered_at is not None:
        call.answered_at = _earliest(call.answered_at, answered_at)
    if data.quality:
        call.quality = _legs(data.quality)
        call.quality_sequence = event.sequence
        call.quality_final = True


def was_answered(call: Call) -> bool:
    """Every answered call counts, however it ended (a ``completed`` call was answered)."""
    return call.answered_at is not None or call.status == CallStatus.COMPLETED.value


def new_recording(tenant_id: str, event: RecordingEvent) -> Recording:
    return Recording(
        tenant_id=tenant_id,
        id=event.data.recording_id,
        call_id=event.call_id,
        status=RecordingStatus.RECORDING,
        started_at=event.occurred_at,
    )


def apply_recording_event(recording: Recording, event: RecordingEvent) -> None:
    """Fold one recorder event into its recording's row; an end is never undone."""
    at = event.occurred_at
    recording.started_at = _earliest(recording.started_at, at)
    match event:
        case RecordingStarted(data=data):
            recording.format = recording.format or data.format
            recording.channels = recording.channels or data.channels
            recording.sample_rate = recording.sample_rate or data.sample_rate
        case RecordingCompleted(data=data):
            if recording.status != RecordingStatus.DELETED:
                recording.status = RecordingStatus.COMPLETED
            recording.format = data.format
            recording.channels = data.channels
            recording.sample_rate = data.sample_rate
            recording.location = data.location
            recording.duration_s = data.duration_s
            recording.size_bytes = data.size_bytes
            recording.sha256 = data.sha256
            recording.failure_reason = None
            recording.chunks_missing = data.chunks_missing
            recording.paused_s = data.paused_s
            recording.ended_at = at
        case RecordingCompressed(data=data):
            recording.compressed_location = data.location
            recording.compressed_format = data.format
            recording.compressed_size_bytes = data.size_bytes
            recording.compressed_sha256 = data.sha256
        case RecordingDeleted(data=data):
            recording.status = RecordingStatus.DELETED
            recording.deleted_at = at
            recording.deletion_reason = data.reason
        case RecordingFailed(data=data):
            if recording.status not in (RecordingStatus.COMPLETED, RecordingStatus.DELETED):
                recording.status = RecordingStatus.FAILED
                recording.failure_reason = data.reason
                recording.ended_at = at
