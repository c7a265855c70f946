"""A customer's conversation with the tenant: their calls and text messages, newest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from services.api.schemas.calls import CallOut, RecordingOut
from shared.events import Direction


class MessageOut(BaseModel):
    id: str
    direction: Direction | None = Field(description="None until the message's sent/received event arrived")
    from_number: str | None
    to_number: str | None
    agent_id: str | None = Field(description="The agent who sent it, or who got an inbound one")
    trunk_id: str | None
    text: str | None
    content_type: str | None
    status: Literal["sent", "received", "delivered", "failed"]
    accepted_at: datetime
    delivered_at: datetime | None
    failed_at: datetime | None
    queued: bool = Field(description="It waited for the agent to register before it was delivered")
    failure_cause: str | None
    sip_status: int | None
    reason: str | None


class CallItem(BaseModel):
    kind: Literal["call"] = "call"
    at: datetime = Field(description="When the call started")
    call: CallOut
    recordings: list[RecordingOut]


class MessageItem(BaseModel):
    kind: Literal["message"] = "message"
    at: datetime = Field(description="When the message was accepted")
    message: MessageOut


ConversationItem = Annotated[CallItem | MessageItem, Field(discriminator="kind")]


class ConversationPage(BaseModel):
    number: str = Field(description="The customer's number, E.164")
    conversation_id: uuid.UUID = Field(
        description="The id every call and message event of this number carries"
    )
    items: list[ConversationItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; None at the end")
