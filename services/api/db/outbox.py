"""KV keys to delete: written in the same transaction as the row change that retires them, so a
deletion survives a NATS outage and an api restart (a transactional outbox).

The mapper events below make it impossible to forget: deleting a trunk or an agent through the
ORM, or changing an agent's KV key (its SIP username), queues the old key here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, String, event, insert, inspect
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from services.api.db.agents import Agent
from services.api.db.base import Base, utcnow
from services.api.db.trunks import Trunk
from shared import subjects
from shared.records import trunk_key


class KvDeletion(Base):
    __tablename__ = "kv_deletions"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def _retire(connection: Connection, bucket: str, key: str) -> None:
    connection.execute(insert(KvDeletion).values(bucket=bucket, key=key, created_at=utcnow()))


@event.listens_for(Trunk, "after_delete")
def _trunk_deleted(_mapper: Mapper[Trunk], connection: Connection, target: Trunk) -> None:
    _retire(connection, subjects.TRUNKS_KV.name, trunk_key(target.tenant_id, target.id))


@event.listens_for(Agent, "after_delete")
def _agent_deleted(_mapper: Mapper[Agent], connection: Connection, target: Agent) -> None:
    history = inspect(target).attrs.kv_key.history
    for key in {*(history.deleted or ()), target.kv_key}:
        _retire(connection, subjects.AGENTS_KV.name, key)


@event.listens_for(Agent, "before_update")
def _agent_rekeyed(_mapper: Mapper[Agent], connection: Connection, target: Agent) -> None:
    history = inspect(target).attrs.kv_key.history
    for key in history.deleted or ():
        if key != target.kv_key:
            _retire(connection, subjects.AGENTS_KV.name, key)
