"""Fixtures of the api tests: every test that takes ``database`` (or what builds on it) runs twice,
on SQLite and on PostgreSQL (a database of this run's own, emptied between tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from services.api.app import create_app
from services.api.db import Database
from services.api.db.migrate import upgrade
from services.api.publishing import ConfigPublisher
from services.api.tenancy import create_tenant
from services.api.webhooks import WebhookDispatcher
from shared.bus import Bus
from shared.settings import ApiSettings
from tests.support.postgres import scratch_database

SECRET_KEY = "test-secret-key"
TABLES = (
    "data_retention",
    "webhook_deliveries",
    "agent_presence",
    "trunk_registrations",
    "webhook_subscriptions",
    "events",
    "calls",
    "recordings",
    "kv_deletions",
    "agents",
    "trunks",
    "api_keys",
    "tenants",
)

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.needs_postgres)]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """This run's PostgreSQL database, migrated once (tests empty its tables instead)."""
    import asyncio

    with scratch_database() as url:

        async def migrate() -> None:
            db = Database(url)
            try:
                await upgrade(db)
            finally:
                await db.dispose()

        asyncio.run(migrate())
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await upgrade(db)
    if db.dialect == "postgresql":
        async with db.engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    try:
        yield db
    finally:
        await db.dispose()


def api_settings(database_url: str, **overrides: object) -> ApiSettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": SECRET_KEY,
        "public_sip_wss_url": "wss://voice.example:8089/ws",
        # The tests' webhook receivers listen on loopback (test_webhook_targets.py checks the guard).
        "webhook_allow_private_targets": True,
        **overrides,
    }
    return ApiSettings(**values)  # type: ignore[arg-type]


@dataclass
class Tenancy:
    """One tenant as its admin sees the API."""

    api: ApiHarness
    client: httpx.AsyncClient
    tenant_id: str
    sip_domain: str
    token: str

    def as_key(self, token: str) -> httpx.AsyncClient:
        """A client of the same app that authenticates with another key."""
        return self.api.client(token)


async def add_tenant(db: Database, name: str, domain: str) -> tuple[str, str]:
    async with db.sessions() as session:
        tenant, token = await create_tenant(session, name=name, sip_domain=domain)
        await session.commit()
    return tenant.id, token


@dataclass
class ApiHarness:
    db: Database
    settings: ApiSettings
    publisher: ConfigPublisher | None
    transport: httpx.ASGITransport
    opened: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self, token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        client = httpx.AsyncClient(transport=self.transport, base_url="http://api.test", headers=headers)
        self.opened.append(client)
        return client

    async def tenant(self, name: str, domain: str) -> Tenancy:
        tenant_id, token = await add_tenant(self.db, name, domain)
        return Tenancy(self, self.client(token), tenant_id, domain, token)

    async def close(self) -> None:
        for client in self.opened:
            await client.aclose()
        await self.transport.app.state.recording_stores.close()  # type: ignore[attr-defined]


async def harness(
    db: Database,
    publisher: ConfigPublisher | None = None,
    *,
    webhooks: WebhookDispatcher | None = None,
    bus: Bus | None = None,
    **settings: object,
) -> ApiHarness:
    config = api_settings(db.describe(), **settings)
    app = create_app(config, db, publisher=publisher, webhooks=webhooks, bus=bus)
    return ApiHarness(db, config, publisher, httpx.ASGITransport(app=app))


@pytest.fixture
async def api(database: Database) -> AsyncIterator[ApiHarness]:
    """The app over the database, without NATS (changes wait in the database, unpublished)."""
    built = await harness(database)
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def acme(api: ApiHarness) -> Tenancy:
    return await api.tenant("Acme", "acme.example")


@pytest.fixture
async def published_api(database: Database, bus: Bus) -> AsyncIterator[ApiHarness]:
    """The app with a running KV publisher on a real nats-server."""
    publisher = ConfigPublisher(database, bus, retry_interval_s=0.2)
    publisher.start()
    built = await harness(database, publisher)
    try:
        yield built
    finally:
        await built.close()
        await publisher.stop()
