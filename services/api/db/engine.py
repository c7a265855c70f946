"""The async engine and session factory for ``ApiSettings.database_url``.

SQLite (the development default) gets what makes it a sound single-node database: foreign keys on,
WAL, a busy timeout, and transactions that start with ``BEGIN IMMEDIATE`` so concurrent writers
queue for the lock instead of failing half-way (the driver's legacy transaction handling is off,
as SQLAlchemy's SQLite documentation recommends). PostgreSQL (asyncpg) needs nothing special.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 15000


class UnsupportedDatabase(ValueError):
    pass


def _check(url: URL) -> None:
    if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise UnsupportedDatabase(
            f"database URL {url.drivername}://... is not supported: use sqlite+aiosqlite:///path.db "
            "or postgresql+asyncpg://user@host/db"
        )


def create_engine(database_url: str) -> AsyncEngine:
    url = make_url(database_url)
    _check(url)
    if url.drivername.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_async_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: URL) -> AsyncEngine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """One engine and its sessions; what the app's dependencies and background tasks share."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(database_url)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )
        self._sqlite_turns = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction, committed on leaving. On SQLite this process's
        transactions take turns on an asyncio lock first: every transaction there begins with the
        write lock (``BEGIN IMMEDIATE``), and one that finds it taken sleeps in SQLite's busy
        handler in steps of up to 100 ms, where the background consumers would wait far longer
        than their work takes."""
        turn = self._sqlite_turns if self.dialect == "sqlite" else contextlib.nullcontext()
        async with turn, self.sessions() as session, session.begin():
            yield session

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        """The URL without its password, for logs."""
        return self.engine.url.render_as_string(hide_password=True)

    async def ping(self) -> bool:
        with contextlib.suppress(Exception):
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                return True
        return False

    async def dispose(self) -> None:
        await self.engine.dispose()
