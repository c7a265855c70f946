"""Contract tests: schemathesis generates requests from the app's own OpenAPI document (valid ones
and every kind of malformed one: wrong types, huge numbers, odd Unicode, missing fields) for every
operation, sent with an admin key of a tenant that has a trunk, an agent, a call, a recording and a
webhook. No input may make the api fail: every answer is a 4xx naming what is wrong, a success, or a
503 saying what is not there (the bus, in these tests)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi
from sqlalchemy import text

from services.api.app import create_app, openapi_document
from services.api.db import Database
from services.api.db.migrate import upgrade
from services.api.ingestion import EventIngestion
from services.api.tenancy import create_tenant
from shared import subjects
from shared.bus import Delivery
from shared.events import Event, RecordingCompleted, RecordingCompletedData
from shared.recording_store import LocalStorage, object_key
from tests.api.conftest import BACKENDS, TABLES, api_settings
from tests.support.call_events import answered_call

#: Examples per operation; ~45 operations. Raise it locally to dig deeper (hypothesis keeps a
#: failing example's shape small, so a 500 shows as the simplest request that causes it).
EXAMPLES = 40


async def _prepare(url: str, recordings: Path) -> str:
    """An empty, migrated database with a tenant, its answered call and the call's recording (the
    file too); returns the tenant's admin key."""
    db = Database(url)
    try:
        await upgrade(db)
        if db.dialect == "postgresql":
            async with db.engine.begin() as connection:
                await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        async with db.sessions() as session:
            tenant, token = await create_tenant(session, name="Acme", sip_domain="acme.example")
            await session.commit()
        deliveries: list[Delivery[Event]] = []
        wav = os.urandom(4000)
        key = object_key(tenant.id, time.time(), "call-1", "rec-1", "wav")
        stored = await LocalStorage(recordings).put(_written(recordings / "spool.wav", wav), key, "audio/wav")
        completed = RecordingCompleted(
            tenant_id=tenant.id,
            call_id="call-1",
            sequence=0,
            data=RecordingCompletedData(
                recording_id="rec-1",
                location=stored,
                format="wav",
                channels=2,
                sample_rate=8000,
                duration_s=0.25,
                size_bytes=len(wav),
                sha256=hashlib.sha256(wav).hexdigest(),
            ),
        )
        events = [*answered_call(tenant.id, "call-1", datetime.now(UTC)), completed]
        for n, event in enumerate(events, 1):
            deliveries.append(
                Delivery(
                    event, subjects.event_subject(event), 1, stream_sequence=n, stored_at=datetime.now(UTC)
                )
            )
        await EventIngestion(db).ingest(deliveries)
        return token
    finally:
        await db.dispose()


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A client of the app in schemathesis's event loop (one for all its requests, so the app's
    database engine is first used there), with the tenant's admin key."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('contract') / 'api.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    recordings = tmp_path_factory.mktemp("recordings")
    token = asyncio.run(_prepare(url, recordings))
    app = create_app(api_settings(url, recordings_dir=recordings), Database(url))
    with asgi.get_client(cast(Any, app)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        for path, body in (
            ("/v1/trunks", {"name": "Magti", "sip_server": "sip.example.ge"}),
            ("/v1/agents", {"extension": "100", "password": "agent-password-100"}),
            ("/v1/webhooks", {"url": "https://hooks.example/voice"}),
        ):
            created = client.post(f"http://{asgi.HOST}{path}", json=body)
            assert created.status_code == 201, created.text
        yield client


#: The document ``echodesk docs`` publishes: what integrators generate their clients from.
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_makes_the_api_fail(case: Any, client: Any) -> None:
    response = case.call(session=client, base_url=f"http://{asgi.HOST}")
    assert response.status_code < 500 or response.status_code == 503, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}\n"
        f"{case.as_curl_command()}"
    )
    if response.status_code == 503:
        assert response.json()["detail"], response.text
