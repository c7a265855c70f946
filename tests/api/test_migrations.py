"""The Alembic migrations build exactly the schema the models describe, and go down and up again."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from services.api.db import Base, Database
from services.api.db.migrate import current_revision, downgrade, head_revision, upgrade


async def test_the_migrations_match_the_models(database: Database) -> None:
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
            )
        )
    assert differences == []
    assert await current_revision(database) == head_revision()


async def test_downgrade_to_nothing_and_up_again(database: Database) -> None:
    await downgrade(database, "base")
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(tables) <= {"alembic_version"}
    await upgrade(database)
    await upgrade(database)  # nothing to do the second time
    assert await current_revision(database) == head_revision()
