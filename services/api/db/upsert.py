"""``INSERT ... ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase


async def insert_new(session: AsyncSession, model: type[DeclarativeBase], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, silently leaving out those whose key or unique columns are taken."""
    if not rows:
        return
    await session.execute(_insert(session, model).on_conflict_do_nothing(), rows)


async def insert_new_returning_ids(
    session: AsyncSession, model: type[DeclarativeBase], rows: list[dict[str, Any]]
) -> set[str]:
    """:func:`insert_new`, telling which rows (by ``id``) were inserted."""
    if not rows:
        return set()
    id_column = model.__table__.c.id
    result = await session.execute(
        _insert(session, model).on_conflict_do_nothing().returning(id_column), rows
    )
    return {str(value) for value in result.scalars()}


def _insert(session: AsyncSession, model: type[DeclarativeBase]) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)
