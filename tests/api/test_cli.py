"""``echodesk api migrate`` / ``create-tenant``, and an api that cannot reach its database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from services.api.app import create_app
from services.api.db import Database
from services.api.db.migrate import head_revision
from shared.supervisor import free_port
from tests.api.conftest import api_settings
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env


def echodesk(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_an_operator_creates_a_tenant_and_its_key_works(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
    env = {"ECHODESK_API_DATABASE_URL": url}
    migrated = echodesk("api", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"revision {head_revision()}" in migrated.stdout
    created = echodesk("api", "create-tenant", "--name", "Acme", "--sip-domain", "Acme.Example", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.split("store it now): ")[1].strip()
    again = echodesk("api", "create-tenant", "--name", "Acme 2", "--sip-domain", "acme.example", env=env)
    assert again.returncode == 1
    assert "has a tenant" in again.stderr
    bad = echodesk("api", "create-tenant", "--name", "X", "--sip-domain", "not a domain", env=env)
    assert bad.returncode == 2
    assert "not a SIP domain" in bad.stderr
    # A lost key is replaced from the command line (a read key here).
    reader = echodesk("api", "create-key", "--sip-domain", "acme.example", "--scope", "read", env=env)
    assert reader.returncode == 0, reader.stderr
    read_token = reader.stdout.split("store it now: ")[1].strip()
    missing = echodesk("api", "create-key", "--sip-domain", "nobody.example", env=env)
    assert missing.returncode == 1
    assert "no tenant" in missing.stderr

    db = Database(url)
    try:
        app = create_app(api_settings(url), db)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.test",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            tenant = (await client.get("/v1/tenant")).json()
            keys = (await client.get("/v1/api-keys")).json()
            read_only = await client.post(
                "/v1/trunks",
                json={"name": "t", "sip_server": "s.example"},
                headers={"Authorization": f"Bearer {read_token}"},
            )
    finally:
        await db.dispose()
    assert (tenant["name"], tenant["sip_domain"], tenant["default_region"]) == ("Acme", "acme.example", "GE")
    assert sorted(k["scopes"][0] for k in keys) == ["admin", "read"]
    assert read_only.status_code == 403


def test_an_unreachable_database_stops_the_api_with_one_line(nats_server: NatsServer) -> None:
    env = {
        **os.environ,
        **free_ports_env("api"),
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_API_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing",
        "ECHODESK_LOG_JSON": "true",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.api"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (failure,) = [line for line in lines if line["event"] == "cannot start"]
    assert "cannot be migrated" in failure["reason"]
