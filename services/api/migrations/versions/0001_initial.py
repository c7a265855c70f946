"""Initial schema: tenants, API keys, trunks, agents and the KV deletion outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

#: Kept in step with services/api/db/base.py: rows whose version is not yet in NATS KV.
UNPUBLISHED = "kv_published_version IS NULL OR kv_published_version <> version"


def _timestamp(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], name=f"fk_{table}_tenant_id_tenants", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("sip_domain", sa.String(253), nullable=False),
        sa.Column("default_region", sa.String(2), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("sip_domain", name="uq_tenants_sip_domain"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        _timestamp("expires_at", nullable=True),
        _timestamp("last_used_at", nullable=True),
        _timestamp("revoked_at", nullable=True),
        _tenant_fk("api_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_table(
        "trunks",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("sip_server", sa.String(253), nullable=False),
        sa.Column("sip_port", sa.Integer(), nullable=True),
        sa.Column(
            "transport",
            sa.Enum("udp", "tcp", "tls", "ws", "wss", name="trunktransport", native_enum=False, length=8),
            nullable=False,
        ),
        sa.Column("websocket_path", sa.String(255), nullable=True),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("auth_username", sa.String(128), nullable=True),
        sa.Column("password_sealed", sa.Text(), nullable=True),
        sa.Column("realm", sa.String(255), nullable=True),
        sa.Column("domain", sa.String(253), nullable=True),
        sa.Column("outbound_proxy", sa.String(255), nullable=True),
        sa.Column("stun_servers", sa.JSON(), nullable=False),
        sa.Column("turn_server", sa.String(255), nullable=True),
        sa.Column("turn_username", sa.String(128), nullable=True),
        sa.Column("turn_password_sealed", sa.Text(), nullable=True),
        sa.Column(
            "turn_credential",
            sa.Enum("password", "shared_secret", name="turncredential", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("max_concurrent_calls", sa.Integer(), nullable=False),
        sa.Column("default_region", sa.String(2), nullable=False),
        sa.Column("dids", sa.JSON(), nullable=False),
        sa.Column("allowed_prefixes", sa.JSON(), nullable=False),
        sa.Column("registers", sa.Boolean(), nullable=False),
        sa.Column("expires_s", sa.Integer(), nullable=False),
        sa.Column("keepalive_s", sa.Double(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kv_published_version", sa.Integer(), nullable=True),
        _tenant_fk("trunks"),
        sa.PrimaryKeyConstraint("id", name="pk_trunks"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_trunks_tenant_id_name"),
    )
    op.create_index("ix_trunks_tenant_id", "trunks", ["tenant_id"])
    # Exactly one default trunk per tenant is the database's rule, not the application's.
    op.create_index(
        "uq_trunks_one_default_per_tenant",
        "trunks",
        ["tenant_id"],
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    )
    op.create_index(
        "ix_trunks_unpublished",
        "trunks",
        ["id"],
        sqlite_where=sa.text(UNPUBLISHED),
        postgresql_where=sa.text(UNPUBLISHED),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("extension", sa.String(8), nullable=False),
        sa.Column("sip_username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=True),
        sa.Column("ha1_md5", sa.String(32), nullable=False),
        sa.Column("ha1_sha256", sa.String(64), nullable=False),
        sa.Column("ring_groups", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("max_concurrent_calls", sa.Integer(), nullable=False),
        sa.Column("kv_key", sa.String(400), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kv_published_version", sa.Integer(), nullable=True),
        _tenant_fk("agents"),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
        sa.UniqueConstraint("kv_key", name="uq_agents_kv_key"),
        sa.UniqueConstraint("tenant_id", "extension", name="uq_agents_tenant_id_extension"),
        sa.UniqueConstraint("tenant_id", "sip_username", name="uq_agents_tenant_id_sip_username"),
    )
    op.create_index("ix_agents_tenant_id", "agents", ["tenant_id"])
    op.create_index(
        "ix_agents_unpublished",
        "agents",
        ["id"],
        sqlite_where=sa.text(UNPUBLISHED),
        postgresql_where=sa.text(UNPUBLISHED),
    )
    op.create_table(
        "kv_deletions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("key", sa.String(400), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_kv_deletions"),
    )


def downgrade() -> None:
    op.drop_table("kv_deletions")
    op.drop_table("agents")
    op.drop_table("trunks")
    op.drop_table("api_keys")
    op.drop_table("tenants")
