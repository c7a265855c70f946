"""An index of calls by status in keyset order: lists of missed or ongoing calls walk only those.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_calls_tenant_id_status_started_at_id", "calls", ["tenant_id", "status", "started_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_calls_tenant_id_status_started_at_id", table_name="calls")
