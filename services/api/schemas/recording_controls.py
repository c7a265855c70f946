"""A tenant's recording policy, and pausing, resuming or stopping a live call's recording."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from services.api.schemas.common import Body
from shared.events import CallStatus, RecordingState

RetentionDays = Annotated[int, Field(ge=1, le=36500, examples=[90])]


class RecordingPolicy(BaseModel):
    record_calls: bool | None = Field(
        description="Whether the tenant's calls are recorded; null: the platform's default"
    )
    retention_days: int | None = Field(
        description="Recordings are deleted this many days after they were stored (recording.deleted, "
        "reason `retention`); null: kept until deleted on request"
    )
    published: bool = Field(description="The signaling and recorder services have this version")


class RecordingPolicyUpdate(Body):
    """Fields left out keep their value; ``null`` goes back to the default."""

    record_calls: bool | None = None
    retention_days: RetentionDays | None = None


class RecordingAction(Body):
    action: Literal["pause", "resume", "stop"] = Field(
        description="`pause` (a customer reads a card number: the span is silence in the file), "
        "`resume`, or `stop` for the rest of the call (what was recorded is kept)"
    )


class RecordingActionDone(BaseModel):
    call_id: str
    recording: RecordingState
    status: CallStatus
