"""The real ``python -m services.api``: start-up migrates the database, bootstraps the development
tenant (credentials printed once), publishes to NATS KV in full, and serves with what it printed."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select

from services.api.db import Database, Tenant
from services.api.publishing import bucket_contents
from shared import subjects
from shared.bus import Bus
from shared.records import AgentRecord, TrunkRecord, agent_key, digest_ha1, trunk_key
from tests.api.test_call_log import a_call
from tests.support.nats import NatsServer
from tests.support.processes import free_ports_env, health_url, start_service


def api_env(nats_server: NatsServer, database_url: str) -> dict[str, str]:
    return {
        **free_ports_env("api"),
        "ECHODESK_NATS_URL": nats_server.url,
        "ECHODESK_API_DATABASE_URL": database_url,
        "ECHODESK_ENVIRONMENT": "development",
        "ECHODESK_SECRET_KEY": "process-test-secret",
        "ECHODESK_LOG_JSON": "true",
        "ECHODESK_API_KV_RETRY_INTERVAL_S": "0.5",
    }


def stop(process: subprocess.Popen[str]) -> list[dict[str, object]]:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


async def keys_of(bus: Bus, spec: subjects.BucketSpec) -> set[str]:
    return set(await bucket_contents(bus, spec))


async def test_start_up_migrates_bootstraps_and_publishes(
    nats_server: NatsServer, database: Database, database_url: str, tmp_path: Path
) -> None:
    env = api_env(nats_server, database_url)
    bus = await Bus.connect(nats_server.url, name="probe", timeout=5)
    try:
        process = await asyncio.to_thread(start_service, "api", env)
        try:
            # Ready means the agents are already in KV for signaling.
            assert await keys_of(bus, subjects.AGENTS_KV) == {
                agent_key("dev.echodesk.local", "100"),
                agent_key("dev.echodesk.local", "101"),
            }
        finally:
            lines = await asyncio.to_thread(stop, process)
        created = [
            line
            for line in lines
            if line["event"] == "development tenant created; its credentials are shown only now"
        ]
        assert len(created) == 1
        api_key = next(str(line["api_key"]) for line in lines if line["event"] == "development admin API key")
        agents = {str(line["extension"]): line for line in lines if line["event"] == "development agent"}
        assert set(agents) == {"100", "101"}
        assert agents["100"]["uri"] == "sip:100@dev.echodesk.local"
        kv = await bus.bucket(subjects.AGENTS_KV)
        record = AgentRecord.model_validate_json(
            (await kv.get(agent_key("dev.echodesk.local", "100"))).value or b""
        )
        assert record.ha1_md5 == digest_ha1(
            "100", "dev.echodesk.local", str(agents["100"]["password"]), "MD5"
        )

        # Something KV has but the database does not: the next start-up removes it.
        await kv.put(agent_key("stray.example", "999"), b"{}")
        # A call made while no api runs reaches the call log once one does.
        async with database.sessions() as session:
            tenant_id = (await session.scalars(select(Tenant.id))).one()
        for event in a_call(tenant_id, "call-while-down", start=datetime.now(UTC)):
            await bus.publish_event(event)
        process = await asyncio.to_thread(start_service, "api", env)
        try:
            assert agent_key("stray.example", "999") not in await keys_of(bus, subjects.AGENTS_KV)
            base = health_url("api", env, "")
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {api_key}"}
            ) as client:
                listed = (await client.get("/v1/agents")).json()
                assert [a["extension"] for a in listed] == ["100", "101"]
                response = await client.post(
                    "/v1/trunks",
                    json={"name": "Carrier", "sip_server": "sip.carrier.example", "password": "pw"},
                )
                assert response.status_code == 201, response.text
                trunk = response.json()
                key = trunk_key(str((await client.get("/v1/tenant")).json()["id"]), trunk["id"])
                trunks = await bus.bucket(subjects.TRUNKS_KV)
                async with asyncio.timeout(10):
                    while key not in await keys_of(bus, subjects.TRUNKS_KV):
                        await asyncio.sleep(0.1)
                assert TrunkRecord.model_validate_json((await trunks.get(key)).value or b"").is_default
                async with asyncio.timeout(20):
                    while (await client.get("/v1/calls/call-while-down")).status_code != 200:
                        await asyncio.sleep(0.1)
                call = (await client.get("/v1/calls/call-while-down")).json()
                assert call["status"] == "completed"
                assert len(call["timeline"]) == 6
        finally:
            lines = await asyncio.to_thread(stop, process)
        assert not any(line["event"].startswith("development tenant created") for line in lines)
    finally:
        await bus.close()
