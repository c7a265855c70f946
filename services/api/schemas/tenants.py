"""The caller's tenant and its API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field

from services.api.keys import Scope
from services.api.schemas.common import Body


class TenantOut(BaseModel):
    id: str
    name: str
    sip_domain: str = Field(description="Agents' SIP domain and digest realm")
    default_region: str
    created_at: datetime


class ApiKeyCreate(Body):
    name: Annotated[str, Field(min_length=1, max_length=128, examples=["helpdesk integration"])]
    scopes: list[Scope] = Field(
        min_length=1, max_length=3, description="admin implies write, write implies read"
    )
    expires_at: AwareDatetime | None = Field(None, description="None: valid until revoked")


class ApiKeyOut(BaseModel):
    id: str
    name: str
    scopes: list[Scope]
    prefix: str = Field(description="How the key starts, to recognise it; the rest is never shown again")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="To within five minutes")
    revoked_at: datetime | None
    active: bool


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself, shown this once: store it now")
