"""``POST /v1/messages`` through the real signaling service on a real nats-server: the api sends as
an agent, a registered colleague's phone gets the text byte for byte, one who is not registered
gets it when they do; refusals are 422s naming the field; the events reach the customer-less
message log (the ingestion) like any other message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from services.api import keys
from services.api.db import Database, Message, Tenant
from services.api.ingestion import EventIngestion
from shared import subjects
from shared.bus import Delivery
from shared.events import Event
from tests.api.conftest import ApiHarness, harness
from tests.support.gateway import DOMAIN, Gateway, add_agent, gateway_stack
from tests.support.messaging import GEORGIAN, message_events, receive_message
from tests.support.nats import NatsServer
from tests.support.sip_client import SipClient

pytestmark = [pytest.mark.needs_nats, pytest.mark.needs_sipp]


@pytest.fixture
async def stack(
    nats_server: NatsServer, tmp_path: Path, database: Database
) -> AsyncIterator[tuple[Gateway, ApiHarness]]:
    async with gateway_stack(nats_server, tmp_path) as (gateway, _carrier):
        await add_agent(gateway.bus, "101", "pw-101")
        await add_agent(gateway.bus, "102", "pw-102")
        api = await harness(database, bus=gateway.bus)
        try:
            yield gateway, api
        finally:
            await api.close()


async def _admin(api: ApiHarness) -> str:
    async with api.db.sessions() as session:
        session.add(Tenant(id="acme", name="Acme", sip_domain=DOMAIN, default_region="GE"))
        await session.flush()
        _key, token = keys.issue(session, tenant_id="acme", name="admin", scopes=[keys.Scope.ADMIN])
        await session.commit()
    return token


async def test_the_api_sends_as_an_agent(stack: tuple[Gateway, ApiHarness]) -> None:
    gateway, api = stack
    client = api.client(await _admin(api))
    phone = SipClient(gateway.sip, "udp", timeout=10)
    assert (await asyncio.to_thread(phone.register, "101", DOMAIN, "pw-101")).status_code == 200
    receiving = asyncio.create_task(asyncio.to_thread(receive_message, phone))
    response = await client.post("/v1/messages", json={"agent_id": "a100", "to": "101", "text": GEORGIAN})
    assert response.status_code == 202, response.text
    sent = response.json()
    assert (sent["outcome"], sent["sip_status"], sent["reason"]) == ("delivered", 200, "OK")
    delivered = await receiving
    assert delivered.body == GEORGIAN.encode()
    assert f"sip:100@{DOMAIN}" in (delivered.headers.get("From") or "")

    # 102 is not registered: the message waits, and the api says so.
    waiting = await client.post("/v1/messages", json={"agent_id": "a100", "to": "102", "text": "call me"})
    assert waiting.status_code == 202
    assert (waiting.json()["outcome"], waiting.json()["sip_status"]) == ("pending", 202)

    for body, field, message in (
        ({"agent_id": "a100", "to": "555", "text": "hi"}, "to", "no agent has extension 555"),
        (
            {"agent_id": "nobody", "to": "101", "text": "hi"},
            "agent_id",
            "no enabled agent nobody in this tenant",
        ),
        ({"agent_id": "a.b", "to": "101", "text": "hi"}, "agent_id", "not an agent id"),
        (
            {"agent_id": "a100", "to": "101", "text": "ა" * 2000},
            "text",
            "Message too large: 6000 bytes, at most 4096",
        ),
        ({"agent_id": "a100", "to": "101", "text": "a\x00b"}, "text", "NUL character in the body at byte 1"),
        # Without an agent it is the tenant writing: to customers' numbers only.
        ({"to": "101", "text": "hi"}, "to", "101 is not a customer's phone number"),
    ):
        refused = await client.post("/v1/messages", json=body)
        assert refused.status_code == 422, refused.text
        [detail] = refused.json()["detail"]
        assert (detail["loc"], detail["msg"]) == (["body", field], message)
    phone.sock.settimeout(1.0)
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(phone.receive_message)  # nothing else reached the phone
    phone.close()

    # The events, taken into the api's database as its consumer would.
    events = await message_events(gateway.bus, 5)
    deliveries: list[Delivery[Event]] = [
        Delivery(event, subjects.event_subject(event), 1, stream_sequence=n)  # type: ignore[arg-type]
        for n, event in enumerate(events, 1)
    ]
    await EventIngestion(api.db).ingest(deliveries)
    async with api.db.sessions() as session:
        rows = list(await session.scalars(select(Message).where(Message.tenant_id == "acme")))
    by_target = {row.to_number: row for row in rows}
    assert (by_target["101"].status, by_target["101"].text, by_target["101"].agent_id) == (
        "delivered",
        GEORGIAN,
        "a100",
    )
    assert by_target["102"].status == "sent"
    assert (by_target["555"].status, by_target["555"].failure_cause) == ("failed", "no_route")
