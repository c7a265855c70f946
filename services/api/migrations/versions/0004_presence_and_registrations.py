"""Agents' presence and trunks' registration state, from signaling's events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "agent_presence",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "agent_id", name=op.f("pk_agent_presence")),
    )
    op.create_table(
        "trunk_registrations",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("trunk_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("registrar", sa.Text(), nullable=False),
        sa.Column("sip_status", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("expires_s", sa.Integer(), nullable=True),
        sa.Column("retry_in_s", sa.Double(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "trunk_id", name=op.f("pk_trunk_registrations")),
    )


def downgrade() -> None:
    op.drop_table("trunk_registrations")
    op.drop_table("agent_presence")
