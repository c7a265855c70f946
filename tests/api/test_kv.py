"""What signaling reads: trunks and agents in NATS KV after every change, in full at start-up, and
after a NATS outage (a real nats-server)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from nats.js.kv import KeyValue
from sqlalchemy import insert

from services.api.db import Agent
from services.api.publishing import ConfigPublisher, bucket_contents
from shared import subjects
from shared.bus import Bus
from shared.records import AgentRecord, TrunkRecord, agent_key, digest_ha1, trunk_key
from shared.sealing import unseal
from tests.api.conftest import SECRET_KEY, ApiHarness
from tests.support.nats import NatsServer


async def settle(api: ApiHarness) -> None:
    assert api.publisher is not None
    assert await api.publisher.settle(timeout=15), "changes did not reach NATS KV"


async def test_every_change_reaches_kv(published_api: ApiHarness, bus: Bus) -> None:
    acme = await published_api.tenant("Acme", "Acme.Example")
    trunks = await bus.bucket(subjects.TRUNKS_KV)
    agents = await bus.bucket(subjects.AGENTS_KV)

    trunk = (
        await acme.client.post(
            "/v1/trunks",
            json={
                "name": "Magti",
                "sip_server": "sip.magti.example",
                "transport": "tcp",
                "username": "995322000000",
                "password": "carrier-secret",
                "dids": ["0322 000 000"],
                "outbound_proxy": "proxy.magti.example:5070",
            },
        )
    ).json()
    agent = (
        await acme.client.post("/v1/agents", json={"extension": "100", "password": "pw-100-long"})
    ).json()
    await settle(published_api)

    record = TrunkRecord.model_validate_json(await _value(trunks, trunk_key(acme.tenant_id, trunk["id"])))
    assert (record.tenant_id, record.trunk_id, record.is_default, record.dids) == (
        acme.tenant_id,
        trunk["id"],
        True,
        ("+995322000000",),
    )
    assert record.outbound_proxy == "proxy.magti.example:5070"
    assert record.password_sealed is not None
    assert unseal(record.password_sealed, SECRET_KEY) == "carrier-secret"
    agent_kv_key = agent_key("acme.example", "100")
    published = AgentRecord.model_validate_json(await _value(agents, agent_kv_key))
    assert (published.agent_id, published.domain, published.enabled) == (agent["id"], "acme.example", True)
    assert published.ha1_md5 == digest_ha1("100", "acme.example", "pw-100-long", "MD5")
    assert published.ha1_sha256 == digest_ha1("100", "acme.example", "pw-100-long", "SHA-256")
    assert (await acme.client.get(f"/v1/agents/{agent['id']}")).json()["published"] is True

    # Disabling keeps the record, marked disabled: signaling drops the agent's registrations.
    await acme.client.patch(f"/v1/agents/{agent['id']}", json={"enabled": False, "display_name": "Nino"})
    # A new SIP username moves the agent to a new key; the old one goes.
    await acme.client.patch(
        f"/v1/agents/{agent['id']}", json={"sip_username": "nino", "password": "pw-new-long"}
    )
    await acme.client.patch(f"/v1/trunks/{trunk['id']}", json={"is_active": False})
    await settle(published_api)
    assert set(await bucket_contents(bus, subjects.AGENTS_KV)) == {agent_key("acme.example", "nino")}
    moved = AgentRecord.model_validate_json(await _value(agents, agent_key("acme.example", "nino")))
    assert (moved.enabled, moved.display_name) == (False, "Nino")
    assert moved.ha1_md5 == digest_ha1("nino", "acme.example", "pw-new-long", "MD5")
    assert (
        TrunkRecord.model_validate_json(
            await _value(trunks, trunk_key(acme.tenant_id, trunk["id"]))
        ).is_active
        is False
    )

    await acme.client.delete(f"/v1/trunks/{trunk['id']}")
    await acme.client.delete(f"/v1/agents/{agent['id']}")
    await settle(published_api)
    assert await bucket_contents(bus, subjects.TRUNKS_KV) == {}
    assert await bucket_contents(bus, subjects.AGENTS_KV) == {}


async def test_moving_the_default_republishes_both_trunks(published_api: ApiHarness, bus: Bus) -> None:
    acme = await published_api.tenant("Acme", "acme.example")
    first = (await acme.client.post("/v1/trunks", json={"name": "a", "sip_server": "a.example"})).json()
    second = (await acme.client.post("/v1/trunks", json={"name": "b", "sip_server": "b.example"})).json()
    await acme.client.post(f"/v1/trunks/{second['id']}/set-default")
    await settle(published_api)
    defaults = {
        TrunkRecord.model_validate_json(value).trunk_id: TrunkRecord.model_validate_json(value).is_default
        for value in (await bucket_contents(bus, subjects.TRUNKS_KV)).values()
    }
    assert defaults == {first["id"]: False, second["id"]: True}


async def test_start_up_publishes_in_full_and_removes_what_no_row_claims(api: ApiHarness, bus: Bus) -> None:
    acme = await api.tenant("Acme", "acme.example")
    # Made while no publisher ran (the api was down, or NATS was): only the database has them.
    trunk = (await acme.client.post("/v1/trunks", json={"name": "a", "sip_server": "a.example"})).json()
    for extension in ("100", "101"):
        await acme.client.post("/v1/agents", json={"extension": extension, "password": "password-long"})
    agents = await bus.bucket(subjects.AGENTS_KV)
    trunks = await bus.bucket(subjects.TRUNKS_KV)
    # What an older database, or `echodesk agent`, left behind.
    await agents.put(agent_key("gone.example", "200"), b"{}")
    await trunks.put(trunk_key("tnt_gone", "trk_gone"), b"{}")
    await agents.put(agent_key("acme.example", "101"), b'{"stale": true}')

    publisher = ConfigPublisher(api.db, bus)
    await publisher.publish_all()
    assert publisher.synced.is_set()
    assert set(await bucket_contents(bus, subjects.AGENTS_KV)) == {
        agent_key("acme.example", "100"),
        agent_key("acme.example", "101"),
    }
    assert set(await bucket_contents(bus, subjects.TRUNKS_KV)) == {trunk_key(acme.tenant_id, trunk["id"])}
    assert (
        AgentRecord.model_validate_json(await _value(agents, agent_key("acme.example", "101"))).extension
        == "101"
    )
    assert await publisher.pending() == 0

    # Publishing in full again writes nothing that is already right (signaling sees no churn).
    revisions = {key: (await agents.get(key)).revision for key in await agents.keys()}
    await publisher.publish_all()
    assert {key: (await agents.get(key)).revision for key in await agents.keys()} == revisions


async def test_a_nats_outage_loses_no_change(
    published_api: ApiHarness, bus: Bus, nats_server: NatsServer
) -> None:
    acme = await published_api.tenant("Acme", "acme.example")
    agent = (
        await acme.client.post("/v1/agents", json={"extension": "100", "password": "password-long"})
    ).json()
    await settle(published_api)
    assert published_api.publisher is not None

    await asyncio.to_thread(nats_server.stop)
    # The API keeps working while NATS is down; the changes wait in the database.
    responses = [
        await acme.client.post("/v1/agents", json={"extension": "101", "password": "password-long"}),
        await acme.client.delete(f"/v1/agents/{agent['id']}"),
        await acme.client.post("/v1/trunks", json={"name": "a", "sip_server": "a.example"}),
    ]
    assert [r.status_code for r in responses] == [201, 204, 201]
    await asyncio.sleep(1.0)  # the publisher tries, and fails, meanwhile
    assert await published_api.publisher.pending() == 3

    await asyncio.to_thread(nats_server.start)
    await settle(published_api)
    assert set(await bucket_contents(bus, subjects.AGENTS_KV)) == {agent_key("acme.example", "101")}
    assert len(await bucket_contents(bus, subjects.TRUNKS_KV)) == 1


async def _value(kv: KeyValue, key: str) -> bytes:
    entry = await kv.get(key)
    assert entry.value is not None
    return entry.value


async def test_a_row_that_cannot_be_published_holds_up_no_other(published_api: ApiHarness, bus: Bus) -> None:
    acme = await published_api.tenant("Acme", "acme.example")
    agents = await bus.bucket(subjects.AGENTS_KV)
    # Written around the API (by hand, or by an older version): "1" is no extension signaling takes.
    bad_key = agent_key("acme.example", "bad")
    async with published_api.db.engine.begin() as connection:
        await connection.execute(
            insert(Agent).values(
                id="agt_bad",
                tenant_id=acme.tenant_id,
                extension="1",
                sip_username="bad",
                ha1_md5="0" * 32,
                ha1_sha256="0" * 64,
                ring_groups=[],
                enabled=True,
                max_concurrent_calls=1,
                kv_key=bad_key,
                created_at=datetime.now(UTC),
                updated_at=datetime.now(UTC),
                version=1,
            )
        )
    # The key's last good record goes in after the row exists: a full publish running meanwhile (the
    # publisher's own, at start) removes keys that no row names, and would take one written first.
    await agents.put(bad_key, b'{"last": "good record"}')
    await acme.client.post("/v1/agents", json={"extension": "100", "password": "password-long"})
    assert published_api.publisher is not None
    publisher = published_api.publisher
    # The good agent goes out; the bad row alone stays unpublished.
    async with asyncio.timeout(10):
        while (
            agent_key("acme.example", "100") not in await bucket_contents(bus, subjects.AGENTS_KV)
            or await publisher.pending() != 1
        ):
            await asyncio.sleep(0.05)
    # Publishing in full keeps the bad row's last record rather than deleting its key.
    await publisher.publish_all()
    assert (await agents.get(bad_key)).value == b'{"last": "good record"}'
