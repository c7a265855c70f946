"""A tenant's retention of events and webhook delivery logs."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from services.api.schemas.common import Body

Days = Annotated[int, Field(ge=0, le=36500, description="Days kept; 0: forever")]


class DataRetentionOut(BaseModel):
    event_days: int | None = Field(description="The tenant's choice; null: the platform's")
    delivery_days: int | None = Field(description="The tenant's choice; null: the platform's")
    effective_event_days: int = Field(description="What applies now (0: forever)")
    effective_delivery_days: int = Field(description="What applies now (0: forever)")


class DataRetentionUpdate(Body):
    """Only the fields present change; null goes back to the platform's setting."""

    event_days: Days | None = None
    delivery_days: Days | None = None


__all__ = ["DataRetentionOut", "DataRetentionUpdate"]
