"""Webhook subscriptions and their deliveries (the delivery log, and the outbox the delivery
worker drains: a delivery is written before it is attempted, so a restart loses none)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db.base import Base, new_id, utcnow


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    #: Nothing is attempted; deliveries wait until the subscription is resumed.
    PAUSED = "paused"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    #: Every attempt failed; kept in the log, never tried again unless redelivered by hand.
    FAILED = "failed"


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whk"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(255))
    #: Event types delivered (``call.ended``, ...); empty means all of them.
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Fernet token (shared.sealing) of the signing secret; never the secret itself.
    secret_sealed: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.ACTIVE.value)
    paused_at: Mapped[datetime | None] = mapped_column()
    paused_reason: Mapped[str | None] = mapped_column(Text)
    #: Attempts that failed in a row (any delivery); a success sets it back to 0.
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # One delivery per event and subscription, however often the event is consumed.
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_subscription_id_created_at", "subscription_id", "created_at"),
        # The retention sweep: a tenant's oldest deliveries first (services/api/retention.py).
        Index("ix_webhook_deliveries_tenant_id_created_at", "tenant_id", "created_at"),
        # What the worker looks for: pending deliveries by when they are due.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whd"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(32))
    #: The event as published on the bus: exactly the body POSTed.
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    last_duration_ms: Mapped[float | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()
