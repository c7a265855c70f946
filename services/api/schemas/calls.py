"""Call log and recording responses. Rows are built from events; these are what the API shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.events import CallStatus, Direction, EndCause, LegKind, Party

StatsPeriod = Literal["today", "week", "month"]


class CallOut(BaseModel):
    id: str
    direction: Direction | None = Field(description="None until the call's call.created event arrived")
    from_number: str | None
    to_number: str | None
    agent_id: str | None
    trunk_id: str | None
    parent_call_id: str | None
    status: CallStatus
    answered: bool = Field(description="Whether the call was answered, however it ended")
    answered_by: str | None
    recorded: bool
    started_at: datetime
    ringing_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None = Field(description="Seconds from creation to end")
    talk_time_s: float | None = Field(description="Seconds from answer to end")
    end_cause: EndCause | None
    ended_by: Party | None
    sip_status: int | None
    sip_reason: str | None
    message: str | None = Field(description="Why the call ended, in words a person reads")
    codec: str | None
    transfer_target: str | None
    transferred_to_call_id: str | None


class CallPage(BaseModel):
    items: list[CallOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; None at the end")


class TimelineEntry(BaseModel):
    id: str = Field(description="The event's id")
    type: str
    occurred_at: datetime
    sequence: int | None
    data: dict[str, Any]


class LegQualityOut(BaseModel):
    leg: LegKind
    codec: str
    packets_received: int
    packets_lost: int
    loss_percent: float
    jitter_ms: float
    rtt_ms: float | None
    mos: float | None


class QualitySummary(BaseModel):
    final: bool = Field(description="The figures of the whole call (from call.ended), not a periodic report")
    legs: list[LegQualityOut]
    worst_mos: float | None
    worst_loss_percent: float | None
    max_jitter_ms: float | None


class CompressedCopy(BaseModel):
    location: str
    format: str
    size_bytes: int | None
    sha256: str | None


class RecordingOut(BaseModel):
    id: str
    call_id: str
    status: Literal["recording", "completed", "failed", "deleted"]
    format: str | None
    channels: int | None
    sample_rate: int | None
    duration_s: float | None
    size_bytes: int | None
    sha256: str | None
    location: str | None = Field(description="Where the recorder stored the audio")
    failure_reason: str | None
    chunks_missing: int | None = Field(description="Audio chunks never received (silence in the file)")
    paused_s: float | None
    compressed: CompressedCopy | None = Field(description="The compressed copy made after the call")
    deleted_at: datetime | None
    deletion_reason: str | None
    started_at: datetime
    ended_at: datetime | None


class RecordingPage(BaseModel):
    items: list[RecordingOut]
    next_cursor: str | None


class CallDetail(CallOut):
    timeline: list[TimelineEntry] = Field(description="Every event of the call, in the order it happened")
    quality: QualitySummary
    recordings: list[RecordingOut]


class CallStats(BaseModel):
    period: StatsPeriod
    since: datetime = Field(description="Start of the period (UTC calendar day, ISO week or month)")
    until: datetime
    total: int
    answered: int = Field(description="Every answered call, whatever its end (transferred ones too)")
    missed: int = Field(description="Inbound calls that ended without being answered")
    inbound: int
    outbound: int
    internal: int
    in_progress: int = Field(description="Calls not ended yet")
    answer_rate: float | None = Field(
        description="answered / calls whose outcome is known (answered, or ended unanswered); None when none"
    )
    average_duration_s: float | None = Field(description="Mean talk time of the answered calls that ended")
