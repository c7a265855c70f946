"""Live state from signaling's events: agents' presence and trunks' registration."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class AgentPresenceOut(BaseModel):
    agent_id: str
    extension: str
    state: Literal["registered", "unregistered"]
    contacts: int = Field(description="Phones (registered contacts) the agent has online")
    transport: str | None
    source: str | None = Field(description="host:port the last registration came from")
    user_agent: str | None
    changed_at: datetime | None = Field(description="When signaling last reported a change; None: never")


class TrunkRegistrationOut(BaseModel):
    trunk_id: str
    state: Literal["registering", "registered", "failed", "unregistered", "unknown"] = Field(
        description="`unknown` until signaling reports on this trunk"
    )
    registrar: str | None
    sip_status: int | None
    reason: str | None = Field(description="Why a registration failed, in words")
    expires_s: int | None
    retry_in_s: float | None
    changed_at: datetime | None
