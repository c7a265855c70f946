"""Retention of events and webhook deliveries: a tenant's own choice (``data_retention``) and the
indexes the sweep walks (a tenant's rows by time).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "data_retention",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("event_days", sa.Integer(), nullable=True),
        sa.Column("delivery_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_index("ix_events_tenant_id_occurred_at", "events", ["tenant_id", "occurred_at"])
    op.create_index(
        "ix_webhook_deliveries_tenant_id_created_at", "webhook_deliveries", ["tenant_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_tenant_id_created_at", table_name="webhook_deliveries")
    op.drop_index("ix_events_tenant_id_occurred_at", table_name="events")
    op.drop_table("data_retention")
