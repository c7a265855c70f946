"""Tenants carry a recording policy (record their calls or not, keep recordings N days), published
to NATS KV ``tenants`` like trunks and agents: ``version`` and ``kv_published_version``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("record_calls", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("recording_retention_days", sa.Integer(), nullable=True))
        # Existing tenants start at version 1, unpublished: the publisher writes them at once.
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("kv_published_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("kv_published_version")
        batch.drop_column("version")
        batch.drop_column("recording_retention_days")
        batch.drop_column("record_calls")
