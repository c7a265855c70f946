"""Tenants and the API keys that act for them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, text
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db.base import Base, new_id, utcnow


class Tenant(Base):
    """A helpdesk customer. Its SIP domain is its agents' domain and digest realm, so it is unique
    and never changes (every stored HA1 is bound to it)."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("tnt"))
    name: Mapped[str] = mapped_column(String(128))
    sip_domain: Mapped[str] = mapped_column(String(253), unique=True)
    default_region: Mapped[str] = mapped_column(String(2), default="GE")
    #: None: the platform's default (signaling's ``record_calls`` setting).
    record_calls: Mapped[bool | None] = mapped_column(default=None)
    #: Recordings are deleted this many days after they were stored; None: kept until deleted.
    recording_retention_days: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Bumped by every ORM update; the KV publisher (``publishing.py``) compares it with the next.
    version: Mapped[int] = mapped_column(server_default=text("1"))
    #: The ``version`` last written to NATS KV ``tenants``; NULL before the first publish.
    kv_published_version: Mapped[int | None] = mapped_column()

    __mapper_args__ = {"version_id_col": version}


class ApiKey(Base):
    """An API key: only the SHA-256 of the secret is kept; ``id`` is the public part of the key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
