"""A PostgreSQL database of the test run's own: created with a random name on the server the
project's machines run (127.0.0.1:5432, trust auth, user postgres; ``ECHODESK_TEST_POSTGRES_URL``
points elsewhere) and dropped afterwards. No server: skipped outside CI, failed in CI."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest

from tests.support.tools import IN_CI

SERVER_URL = os.environ.get("ECHODESK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _execute(sql: str) -> None:
    connection = await asyncpg.connect(SERVER_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def require_postgres() -> None:
    try:
        asyncio.run(_execute("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = (
            f"PostgreSQL not reachable at {SERVER_URL} ({exc}): apt-get install postgresql, or set "
            "ECHODESK_TEST_POSTGRES_URL"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new, empty database; yields its SQLAlchemy URL (asyncpg driver)."""
    require_postgres()
    name = f"echodesk_test_{secrets.token_hex(6)}"
    asyncio.run(_execute(f'CREATE DATABASE "{name}"'))
    base, _, _ = SERVER_URL.rpartition("/")
    try:
        yield base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    finally:
        asyncio.run(_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
