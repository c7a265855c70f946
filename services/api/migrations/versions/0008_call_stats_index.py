"""A covering index for ``/v1/calls/stats``: a period's calls are counted from the index alone.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_calls_tenant_id_started_at_outcome",
        "calls",
        ["tenant_id", "started_at", "direction", "status", "answered_at", "ended_at", "talk_time_s"],
    )


def downgrade() -> None:
    op.drop_index("ix_calls_tenant_id_started_at_outcome", table_name="calls")
