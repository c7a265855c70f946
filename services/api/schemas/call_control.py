"""Bodies and answers of call control (hangup, hold, resume, DTMF, transfer)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.api.schemas.common import Body
from shared.events import CallStatus, LegKind


class DigitsIn(Body):
    digits: str = Field(
        pattern=r"^[0-9*#A-D]{1,32}$", description="Digits to play, in order: 0-9, *, #, A-D (1 to 32)"
    )
    duration_ms: int = Field(default=160, ge=40, le=2000, description="How long each digit sounds")
    leg: LegKind = Field(
        default=LegKind.CUSTOMER,
        description="Who hears them: the customer (an IVR to navigate) or the agent",
    )


class TransferIn(Body):
    target: str = Field(
        pattern=r"^\+?[0-9*#]{1,32}$",
        description="An agent's extension, or a number (national or +E.164) the dial plan allows",
    )


class CallCommandOut(BaseModel):
    call_id: str
    status: CallStatus = Field(description="The call's status once the command was carried out")


__all__ = ["CallCommandOut", "DigitsIn", "TransferIn"]
