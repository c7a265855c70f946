"""Text messages (RFC 3428 SIP MESSAGE) from their events: one row per message, found by the
customer's number for the conversation timeline.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=True),
        sa.Column("from_number", sa.Text(), nullable=True),
        sa.Column("to_number", sa.Text(), nullable=True),
        sa.Column("from_agent_id", sa.String(length=64), nullable=True),
        sa.Column("to_agent_id", sa.String(length=64), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("trunk_id", sa.String(length=64), nullable=True),
        sa.Column("customer_number", sa.String(length=16), nullable=True),
        sa.Column("conversation_id", sa.String(length=36), nullable=True),
        sa.Column("content_type", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued", sa.Boolean(), nullable=False),
        sa.Column("failure_cause", sa.String(length=32), nullable=True),
        sa.Column("sip_status", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_messages")),
    )
    op.create_index(
        "ix_messages_tenant_id_customer_number_accepted_at_id",
        "messages",
        ["tenant_id", "customer_number", "accepted_at", "id"],
    )
    op.create_index("ix_messages_tenant_id_accepted_at", "messages", ["tenant_id", "accepted_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_tenant_id_accepted_at", table_name="messages")
    op.drop_index("ix_messages_tenant_id_customer_number_accepted_at_id", table_name="messages")
    op.drop_table("messages")
