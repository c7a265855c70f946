"""``/v1/sip-outcomes``: what a final SIP status means, in the words the softphone shows."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.events import CallStatus, EndCause


class SipOutcomeOut(BaseModel):
    sip_status: int = Field(description="A final status (300-699)")
    status: CallStatus = Field(description="What the call log records for it")
    cause: EndCause
    message: str = Field(description="The message a person reads")


class SipClassOutcomeOut(BaseModel):
    sip_class: int = Field(ge=3, le=6, description="3 for 3xx ... 6 for 6xx")
    status: CallStatus
    cause: EndCause
    message: str


class SipOutcomes(BaseModel):
    statuses: list[SipOutcomeOut] = Field(description="Statuses with a message of their own")
    classes: list[SipClassOutcomeOut] = Field(description="The message for any other status of a class")
