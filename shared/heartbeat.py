"""The heartbeat every service instance publishes on core NATS (not persisted: only the latest matters)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from shared.events import ContractModel, Token


class InstanceState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


class Heartbeat(ContractModel):
    service: Token
    instance_id: Token
    version: str
    state: InstanceState
    started_at: datetime
    sent_at: datetime
    interval_s: float = Field(gt=0, description="A peer missing 3 intervals is considered gone")
    #: Work in hand and how much more the instance takes (media: sessions; 0 where it does not apply).
    active: int = Field(ge=0, default=0)
    capacity: int = Field(ge=0, default=0)
    health_url: str | None = None
