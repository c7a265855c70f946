"""How long a tenant's events and webhook delivery logs are kept, when it chose for itself.

Apart from ``tenants`` so that changing it is not a tenant change (no new version to publish to
NATS KV: signaling has no use for it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db.base import Base, utcnow


class DataRetention(Base):
    __tablename__ = "data_retention"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    #: Days events (calls' timelines) are kept; None: the platform's setting; 0: forever.
    event_days: Mapped[int | None] = mapped_column()
    #: Days finished webhook deliveries (their log) are kept; None: the platform's; 0: forever.
    delivery_days: Mapped[int | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
