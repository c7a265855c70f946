"""Text messages (RFC 3428 SIP MESSAGE), as their events tell them: one row per message.

Written only by the event ingestion (services/api/ingestion.py) from ``message.sent``/``received``
(what was said, between whom) and ``message.delivered``/``failed`` (how it ended); the REST API
reads them, beside the calls, as a customer's conversation.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db.base import Base, utcnow


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # A customer's conversation, newest first: the timeline's keyset order.
        Index(
            "ix_messages_tenant_id_customer_number_accepted_at_id",
            "tenant_id",
            "customer_number",
            "accepted_at",
            "id",
        ),
        # The retention sweep: a tenant's oldest messages first (services/api/retention.py).
        Index("ix_messages_tenant_id_accepted_at", "tenant_id", "accepted_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: None until ``message.sent``/``received`` arrived (an outcome can come first).
    direction: Mapped[str | None] = mapped_column(String(16))
    from_number: Mapped[str | None] = mapped_column(Text)
    to_number: Mapped[str | None] = mapped_column(Text)
    from_agent_id: Mapped[str | None] = mapped_column(String(64))
    to_agent_id: Mapped[str | None] = mapped_column(String(64))
    #: The helpdesk's agent: who sent it, or who got an inbound one.
    agent_id: Mapped[str | None] = mapped_column(String(64))
    trunk_id: Mapped[str | None] = mapped_column(String(64))
    customer_number: Mapped[str | None] = mapped_column(String(16))
    conversation_id: Mapped[str | None] = mapped_column(String(36))
    content_type: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column()
    #: sent or received, then delivered or failed.
    status: Mapped[str] = mapped_column(String(16))
    accepted_at: Mapped[datetime] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    failed_at: Mapped[datetime | None] = mapped_column()
    queued: Mapped[bool] = mapped_column(default=False)
    failure_cause: Mapped[str | None] = mapped_column(String(32))
    sip_status: Mapped[int | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
