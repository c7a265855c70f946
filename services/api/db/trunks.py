"""Trunks: the old product's "SIP configurations", how a tenant reaches its carrier."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Enum, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db.base import UNPUBLISHED, Base, new_id, utcnow
from shared.records import TrunkTransport
from shared.sealing import seal


class TurnCredential(StrEnum):
    #: ``turn_password`` is the TURN server's long-term password, handed to the softphone.
    PASSWORD = "password"
    #: ``turn_password`` is the TURN server's shared secret (coturn ``static-auth-secret``): the
    #: softphone gets a short-lived username and HMAC credential made from it, never the secret.
    SHARED_SECRET = "shared_secret"


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


class Trunk(Base):
    __tablename__ = "trunks"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        # At most one default trunk per tenant, whatever the application does (and however
        # many requests race): a partial unique index, on SQLite as on PostgreSQL.
        Index(
            "uq_trunks_one_default_per_tenant",
            "tenant_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
        Index(
            "ix_trunks_unpublished",
            "id",
            sqlite_where=text(UNPUBLISHED),
            postgresql_where=text(UNPUBLISHED),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("trk"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    sip_server: Mapped[str] = mapped_column(String(253))
    sip_port: Mapped[int | None] = mapped_column()
    transport: Mapped[TrunkTransport] = mapped_column(
        Enum(TrunkTransport, native_enum=False, length=8, values_callable=_values, validate_strings=True)
    )
    websocket_path: Mapped[str | None] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(128), default="")
    auth_username: Mapped[str | None] = mapped_column(String(128))
    #: Fernet token (shared.sealing) of the carrier password; never the password itself.
    password_sealed: Mapped[str | None] = mapped_column(Text)
    realm: Mapped[str | None] = mapped_column(String(255))
    domain: Mapped[str | None] = mapped_column(String(253))
    outbound_proxy: Mapped[str | None] = mapped_column(String(255))
    stun_servers: Mapped[list[str]] = mapped_column(JSON, default=list)
    turn_server: Mapped[str | None] = mapped_column(String(255))
    turn_username: Mapped[str | None] = mapped_column(String(128))
    turn_password_sealed: Mapped[str | None] = mapped_column(Text)
    turn_credential: Mapped[TurnCredential] = mapped_column(
        Enum(TurnCredential, native_enum=False, length=16, values_callable=_values, validate_strings=True),
        default=TurnCredential.PASSWORD,
    )
    is_active: Mapped[bool] = mapped_column(default=True)
    is_default: Mapped[bool] = mapped_column(default=False)
    max_concurrent_calls: Mapped[int] = mapped_column(default=30)
    default_region: Mapped[str] = mapped_column(String(2), default="GE")
    dids: Mapped[list[str]] = mapped_column(JSON, default=list)
    allowed_prefixes: Mapped[list[str]] = mapped_column(JSON, default=list)
    registers: Mapped[bool] = mapped_column(default=True)
    expires_s: Mapped[int] = mapped_column(default=3600)
    keepalive_s: Mapped[float] = mapped_column(default=30.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: Bumped by every ORM update (optimistic locking); what the KV publisher compares against.
    version: Mapped[int] = mapped_column()
    #: The ``version`` last written to NATS KV; NULL before the first publish.
    kv_published_version: Mapped[int | None] = mapped_column()

    __mapper_args__ = {"version_id_col": version}

    def set_password(self, password: str, secret_key: str) -> None:
        """Keep the carrier password sealed (shared.sealing); only signaling opens it."""
        self.password_sealed = seal(password, secret_key)

    def set_turn_password(self, password: str, secret_key: str) -> None:
        self.turn_password_sealed = seal(password, secret_key)

    @property
    def published(self) -> bool:
        return self.kv_published_version == self.version
