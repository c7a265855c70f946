"""Alembic environment, async (SQLAlchemy's asyncio engine for both aiosqlite and asyncpg).

Two ways in: the api passes its own connection (``config.attributes["connection"]``, see
services/api/db/migrate.py), or the ``alembic`` command line builds an engine from
``sqlalchemy.url`` (else ``ECHODESK_API_DATABASE_URL``). Logging is left to the service's
configuration; no ``fileConfig`` here.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text

from services.api.db import Base
from services.api.db.engine import create_engine

#: Key of the PostgreSQL advisory lock that serializes migrations of several api replicas.
MIGRATION_LOCK = 0x45444B4D  # "EDKM"

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from shared.settings import ApiSettings

    return ApiSettings().database_url


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters tables by copying them; batch mode does that for later revisions.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together: the first migrates, the others wait and find it done.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (given := config.attributes.get("connection")) is not None:
    run_migrations(given)
else:
    asyncio.run(_run_async())
