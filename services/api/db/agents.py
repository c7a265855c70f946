"""Agents: the SIP identities browsers register as. Only digest HA1 values are stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db.base import UNPUBLISHED, Base, new_id, utcnow
from shared.records import agent_key, digest_ha1


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (
        UniqueConstraint("tenant_id", "extension"),
        UniqueConstraint("tenant_id", "sip_username"),
        Index(
            "ix_agents_unpublished",
            "id",
            sqlite_where=text(UNPUBLISHED),
            postgresql_where=text(UNPUBLISHED),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("agt"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    extension: Mapped[str] = mapped_column(String(8))
    sip_username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(128))
    #: H(username:realm:password) with MD5 and SHA-256 (RFC 7616 3.4.2); the realm is the
    #: tenant's SIP domain. The password itself is never stored.
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    ring_groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    max_concurrent_calls: Mapped[int] = mapped_column(default=2)
    #: Key of this agent in KV ``agents`` (shared.records.agent_key); unique across tenants since
    #: SIP domains are.
    kv_key: Mapped[str] = mapped_column(String(400), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column()
    kv_published_version: Mapped[int | None] = mapped_column()

    __mapper_args__ = {"version_id_col": version}

    def set_credentials(self, *, domain: str, sip_username: str, password: str) -> None:
        """Keep the digest hashes of ``password`` (never the password) and the matching KV key.

        The username and realm are part of HA1, so changing the username needs the password again.
        """
        realm = domain.lower()
        self.sip_username = sip_username
        self.ha1_md5 = digest_ha1(sip_username, realm, password, "MD5")
        self.ha1_sha256 = digest_ha1(sip_username, realm, password, "SHA-256")
        self.kv_key = agent_key(realm, sip_username)

    @property
    def published(self) -> bool:
        return self.kv_published_version == self.version
