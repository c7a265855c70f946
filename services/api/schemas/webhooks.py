"""Webhook subscription bodies. The signing secret is shown once, when it is made."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, SecretStr

from services.api.schemas.common import Body
from shared.events import EVENT_TYPES


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; the signature authenticates us to you")
    return value


def _event_type(value: str) -> str:
    if value not in EVENT_TYPES:
        raise ValueError(f"unknown event type; one of: {', '.join(sorted(EVENT_TYPES))}")
    return value


def _secret(value: SecretStr) -> SecretStr:
    if not 16 <= len(value.get_secret_value()) <= 256:
        raise ValueError("must be 16 to 256 characters long")
    return value


WebhookUrl = Annotated[
    str,
    Field(min_length=1, max_length=2000, examples=["https://helpdesk.example/hooks/voice"]),
    AfterValidator(_url),
]
EventType = Annotated[
    str,
    Field(max_length=32, examples=["call.ended"], json_schema_extra={"enum": sorted(EVENT_TYPES)}),
    AfterValidator(_event_type),
]
EventTypes = Annotated[
    list[EventType],
    Field(max_length=len(EVENT_TYPES), description="Event types to deliver; empty: all of them"),
]
SigningSecret = Annotated[SecretStr, AfterValidator(_secret)]


class WebhookCreate(Body):
    url: WebhookUrl
    description: Annotated[str, Field(max_length=255)] | None = None
    event_types: EventTypes = Field(default_factory=list)
    secret: SigningSecret | None = Field(
        None, description="Write-only; made for you (and shown once in the response) when left out"
    )


class WebhookUpdate(Body):
    """Only the fields present change."""

    url: WebhookUrl | None = None
    description: Annotated[str, Field(max_length=255)] | None = None
    event_types: EventTypes | None = None


class WebhookOut(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    status: Literal["active", "paused"]
    paused_at: datetime | None
    paused_reason: str | None = Field(description="Why the subscription is paused, in words")
    consecutive_failures: int
    pending_deliveries: int
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="The signing secret: shown now and never again (rotate to get a new one)")


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_duration_ms: float | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
