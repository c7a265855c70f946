"""The call log, built from the bus: one row per call and every event the api has taken in.

Rows are written only by the event ingestion (services/api/ingestion.py); the REST API reads them.
Ids come from the producers (a call's id from signaling, an event's UUID), so they are strings of
the bus's token shape, not ids we make.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db.base import Base, utcnow


class Call(Base):
    """One call as its events tell it. ``status_sequence`` is the ``sequence`` of the event that
    set ``status``: an older event arriving late never moves the status back, and once the call
    ended nothing but its end decides it."""

    __tablename__ = "calls"
    __table_args__ = (
        # The call log's keyset order (newest first) within a tenant, plain and by agent.
        Index("ix_calls_tenant_id_started_at_id", "tenant_id", "started_at", "id"),
        Index("ix_calls_tenant_id_agent_id_started_at_id", "tenant_id", "agent_id", "started_at", "id"),
        # "Missed calls", "calls in progress": a status filter walks only its own calls.
        Index("ix_calls_tenant_id_status_started_at_id", "tenant_id", "status", "started_at", "id"),
        # /v1/calls/stats reads a period's calls from this index alone (an index-only scan in
        # PostgreSQL, a covering index in SQLite): no row of the table is visited.
        Index(
            "ix_calls_tenant_id_started_at_outcome",
            "tenant_id",
            "started_at",
            "direction",
            "status",
            "answered_at",
            "ended_at",
            "talk_time_s",
        ),
        Index("ix_calls_tenant_id_from_number", "tenant_id", "from_number"),
        Index("ix_calls_tenant_id_to_number", "tenant_id", "to_number"),
    )

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: None until ``call.created`` arrived (events can come before it).
    direction: Mapped[str | None] = mapped_column(String(16))
    from_number: Mapped[str | None] = mapped_column(Text)
    to_number: Mapped[str | None] = mapped_column(Text)
    agent_id: Mapped[str | None] = mapped_column(String(64))
    trunk_id: Mapped[str | None] = mapped_column(String(64))
    parent_call_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    status_sequence: Mapped[int] = mapped_column(BigInteger)
    recorded: Mapped[bool] = mapped_column(default=False)
    #: When the call was created; the earliest event's time until ``call.created`` arrives.
    started_at: Mapped[datetime] = mapped_column()
    ringing_at: Mapped[datetime | None] = mapped_column()
    answered_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    answered_by: Mapped[str | None] = mapped_column(String(64))
    codec: Mapped[str | None] = mapped_column(Text)
    media_worker: Mapped[str | None] = mapped_column(Text)
    end_cause: Mapped[str | None] = mapped_column(String(32))
    ended_by: Mapped[str | None] = mapped_column(String(16))
    sip_status: Mapped[int | None] = mapped_column()
    sip_reason: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column()
    talk_time_s: Mapped[float | None] = mapped_column()
    transfer_target: Mapped[str | None] = mapped_column(Text)
    transferred_to_call_id: Mapped[str | None] = mapped_column(String(64))
    #: The latest per-leg quality figures (``call.quality``, the final ones from ``call.ended``).
    quality: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    quality_sequence: Mapped[int] = mapped_column(BigInteger, default=-1)
    quality_final: Mapped[bool] = mapped_column(default=False)
    events: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StoredEvent(Base):
    """Every event the api took in, once (its id is the key): the calls' timelines, and where each
    event sits in its JetStream stream, so live streams can be resumed from an event id."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_tenant_id_call_id_occurred_at", "tenant_id", "call_id", "occurred_at"),
        # The retention sweep: a tenant's oldest events first (services/api/retention.py).
        Index("ix_events_tenant_id_occurred_at", "tenant_id", "occurred_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    call_id: Mapped[str | None] = mapped_column(String(64))
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column()
    stream: Mapped[str] = mapped_column(String(32))
    stream_sequence: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[datetime | None] = mapped_column()
    #: The event's ``data`` as the producer sent it.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Recording(Base):
    """A call's recording, from the recorder's events: metadata only, the audio stays where the
    recorder stored it (``location``)."""

    __tablename__ = "recordings"
    __table_args__ = (
        Index("ix_recordings_tenant_id_started_at_id", "tenant_id", "started_at", "id"),
        Index("ix_recordings_tenant_id_call_id", "tenant_id", "call_id"),
    )

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64))
    #: ``recording``, then ``completed`` or ``failed``, and ``deleted`` last; a late event never
    #: undoes an end, nor anything a deletion.
    status: Mapped[str] = mapped_column(String(16))
    format: Mapped[str | None] = mapped_column(Text)
    channels: Mapped[int | None] = mapped_column()
    sample_rate: Mapped[int | None] = mapped_column()
    location: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column()
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    #: Audio chunks that never arrived and seconds paused (both silence in the file).
    chunks_missing: Mapped[int | None] = mapped_column()
    paused_s: Mapped[float | None] = mapped_column()
    #: The compressed copy made after the call (``recording.compressed``), when there is one.
    compressed_location: Mapped[str | None] = mapped_column(Text)
    compressed_format: Mapped[str | None] = mapped_column(Text)
    compressed_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    compressed_sha256: Mapped[str | None] = mapped_column(String(64))
    #: A recording deleted on request (``recording.deleted``): when, and the reason it gave.
    deleted_at: Mapped[datetime | None] = mapped_column()
    deletion_reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentPresenceRow(Base):
    """Whether an agent's phones are registered, from signaling's ``agent.presence`` events. Kept
    apart from ``agents`` so presence never bumps an agent's version (and its KV publishing)."""

    __tablename__ = "agent_presence"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    contacts: Mapped[int] = mapped_column()
    transport: Mapped[str | None] = mapped_column(String(8))
    source: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    #: The newest event's time: an older event arriving late does not overwrite it.
    changed_at: Mapped[datetime] = mapped_column()


class TrunkRegistrationRow(Base):
    """A trunk's registration with its carrier, from signaling's ``trunk.registration`` events."""

    __tablename__ = "trunk_registrations"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    trunk_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    registrar: Mapped[str] = mapped_column(Text)
    sip_status: Mapped[int | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    expires_s: Mapped[int | None] = mapped_column()
    retry_in_s: Mapped[float | None] = mapped_column()
    changed_at: Mapped[datetime] = mapped_column()
