"""The declarative base every table derives from: constraint names, UTC timestamps, id generation."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

#: Deterministic constraint names, so migrations can name what they alter on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Rows whose current ``version`` is not yet in NATS KV (services/api/publishing.py); the same text
#: is the predicate of a partial index, so finding them never scans the table.
UNPUBLISHED = "kv_published_version IS NULL OR kv_published_version <> version"


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps are aware and in UTC on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UtcDateTime}


def utcnow() -> datetime:
    return datetime.now(UTC)


_ID = re.compile(r"^[a-z]{3}_[0-9a-f]{20}$")


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id we make (anything else cannot name a row)."""
    return bool(_ID.match(value))


def new_id(prefix: str) -> str:
    """``trk_3f9c...``: a random id whose prefix names what it identifies (and a valid bus token)."""
    return f"{prefix}_{secrets.token_hex(10)}"
