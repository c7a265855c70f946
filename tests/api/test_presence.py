"""Presence and trunk registration from signaling's events, on a real nats-server: the newest
event wins whatever order they arrive in, and another tenant sees nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.api.db import Database
from services.api.ingestion import EventIngestion
from shared.bus import Bus
from shared.events import (
    AgentPresence,
    AgentPresenceData,
    PresenceState,
    TrunkRegistration,
    TrunkRegistrationData,
    TrunkState,
)
from tests.api.conftest import ApiHarness, Tenancy
from tests.api.eventing import eventually, publish


@pytest.fixture
async def ingesting(database: Database, bus: Bus) -> None:
    await EventIngestion(database).start(bus)


async def test_presence_and_registration_follow_the_newest_event(
    acme: Tenancy, api: ApiHarness, bus: Bus, ingesting: None
) -> None:
    agent = (
        await acme.client.post("/v1/agents", json={"extension": "100", "password": "password-100"})
    ).json()
    other = (
        await acme.client.post("/v1/agents", json={"extension": "101", "password": "password-101"})
    ).json()
    trunk = (
        await acme.client.post("/v1/trunks", json={"name": "Carrier", "sip_server": "sip.example"})
    ).json()
    assert (await acme.client.get(f"/v1/trunks/{trunk['id']}/registration")).json()["state"] == "unknown"

    now = datetime.now(UTC)
    online = AgentPresence(
        tenant_id=acme.tenant_id,
        agent_id=agent["id"],
        occurred_at=now - timedelta(seconds=10),
        data=AgentPresenceData(
            state=PresenceState.REGISTERED, contacts=1, transport="wss", user_agent="SIP.js/0.21"
        ),
    )
    gone = AgentPresence(
        tenant_id=acme.tenant_id,
        agent_id=agent["id"],
        occurred_at=now,
        data=AgentPresenceData(state=PresenceState.UNREGISTERED, contacts=0),
    )
    failed = TrunkRegistration(
        tenant_id=acme.tenant_id,
        trunk_id=trunk["id"],
        occurred_at=now,
        data=TrunkRegistrationData(
            state=TrunkState.FAILED,
            registrar="sip:sip.example",
            sip_status=403,
            reason="Forbidden by the carrier",
        ),
    )
    registering = TrunkRegistration(
        tenant_id=acme.tenant_id,
        trunk_id=trunk["id"],
        occurred_at=now - timedelta(seconds=5),
        data=TrunkRegistrationData(state=TrunkState.REGISTERING, registrar="sip:sip.example"),
    )
    await publish(bus, gone, online, failed, registering)  # the older ones arrive last

    async def settled() -> dict[str, Any] | None:
        body: dict[str, Any] = (await acme.client.get(f"/v1/trunks/{trunk['id']}/registration")).json()
        return body if body["state"] != "unknown" else None

    registration = await eventually(settled, "the trunk's registration never arrived")

    async def both() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = (await acme.client.get("/v1/presence")).json()
        return rows if rows[0]["changed_at"] is not None else None

    presence = await eventually(both, "presence never arrived")
    assert (registration["state"], registration["sip_status"], registration["reason"]) == (
        "failed",
        403,
        "Forbidden by the carrier",
    )
    assert [(p["extension"], p["state"], p["contacts"]) for p in presence] == [
        ("100", "unregistered", 0),
        ("101", "unregistered", 0),
    ]
    assert presence[1]["changed_at"] is None  # 101 never registered
    single = (await acme.client.get(f"/v1/agents/{other['id']}/presence")).json()
    assert single["state"] == "unregistered"

    globex = await api.tenant("Globex", "globex.example")
    assert (await globex.client.get(f"/v1/agents/{agent['id']}/presence")).status_code == 404
    assert (await globex.client.get(f"/v1/trunks/{trunk['id']}/registration")).status_code == 404
    assert (await globex.client.get("/v1/presence")).json() == []
