"""Blind transfer through the api: ``POST /v1/calls/{id}/transfer`` reaches the real signaling
instance holding a customer's call (sipp as the carrier, desk phones as agents 100 and 101), which
rings the new agent and hands the call over; refusals come back as 409 with the dial plan's words,
a malformed target as 422 naming the field; the call log folds the real events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.api import keys
from services.api.db import Database, Tenant
from services.api.ingestion import EventIngestion
from shared import subjects
from shared.bus import Delivery
from shared.events import CallTransferred, Event, Party
from tests.api.conftest import ApiHarness, harness
from tests.support.desk_phone import DeskPhone
from tests.support.gateway import (
    AGENT_PASSWORD,
    DOMAIN,
    Gateway,
    add_agent,
    add_inbound_trunk,
    call_events,
    gateway_stack,
    inbound_carrier,
)
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer

pytestmark = [pytest.mark.needs_nats, pytest.mark.needs_sipp]

DID = "+995322000000"


@pytest.fixture
async def stack(
    nats_server: NatsServer, tmp_path: Path, database: Database
) -> AsyncIterator[tuple[Gateway, int, ApiHarness]]:
    settings = {"ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS": "MD5"}
    async with gateway_stack(nats_server, tmp_path, signaling_settings=settings) as (gateway, _carrier):
        await add_agent(gateway.bus, "101", "pw-101")
        port = await add_inbound_trunk(gateway.bus, (DID,))
        api = await harness(database, bus=gateway.bus)
        try:
            yield gateway, port, api
        finally:
            await api.close()


async def _admin(api: ApiHarness) -> str:
    async with api.db.sessions() as session:
        session.add(Tenant(id="acme", name="Acme", sip_domain=DOMAIN, default_region="GE"))
        await session.flush()
        _key, token = keys.issue(session, tenant_id="acme", name="admin", scopes=[keys.Scope.ADMIN])
        await session.commit()
    return token


async def _answer(phone: DeskPhone, audio: RtpPeer) -> None:
    invite = await asyncio.to_thread(phone.wait_request, "INVITE")
    audio.learn(invite.body.decode())
    phone.reply(invite, 200, body=audio.description().encode())
    await asyncio.to_thread(phone.wait_request, "ACK")


async def test_the_api_transfers_a_customers_call_to_another_agent(
    stack: tuple[Gateway, int, ApiHarness], tmp_path: Path
) -> None:
    gateway, port, api = stack
    client = api.client(await _admin(api))
    first = await asyncio.to_thread(DeskPhone.registered, gateway.sip, "100", DOMAIN, AGENT_PASSWORD)
    audio_first, audio_second = await RtpPeer.open("127.0.0.1"), await RtpPeer.open("127.0.0.1")
    second: DeskPhone | None = None
    try:
        carrier = await inbound_carrier(tmp_path, gateway, port, DID, talk_ms=8000).start_async()
        await _answer(first, audio_first)
        created = (await call_events(gateway.bus, call_count=0, at_least=1))[0]
        transfer = f"/v1/calls/{created.call_id}/transfer"
        for body, field in (({"target": "abc"}, "target"), ({}, "target"), ({"target": "101", "x": 1}, "x")):
            bad = await client.post(transfer, json=body)
            assert bad.status_code == 422, bad.text
            assert bad.json()["detail"][0]["field"] == field
        for target, detail in (
            ("+19005550100", "the transfer to +19005550100 was refused (403): premium-rate numbers such as"),
            ("199", "the transfer to 199 was refused (404): no agent has extension 199"),
            ("101", "the transfer to 101 was refused (480): nobody is registered at extension 101"),
        ):
            refused = await client.post(transfer, json={"target": target})
            assert refused.status_code == 409, refused.text
            assert refused.json()["detail"].startswith(detail), refused.json()
        second = await asyncio.to_thread(DeskPhone.registered, gateway.sip, "101", DOMAIN, "pw-101")
        accepted = await client.post(transfer, json={"target": "101"})
        assert (accepted.status_code, accepted.json()) == (
            200,
            {"call_id": created.call_id, "status": "in-progress"},
        )
        again = await client.post(transfer, json={"target": "101"})
        assert (again.status_code, again.json()["detail"]) == (
            409,
            "A transfer of this call is already in progress",
        )
        await _answer(second, audio_second)
        bye = await asyncio.to_thread(first.wait_request, "BYE")  # no REFER, so no NOTIFY first
        first.reply(bye, 200)
        assert [r.method for r in first.received if r.method == "NOTIFY"] == []
        bye = await asyncio.to_thread(second.wait_request, "BYE")  # the customer hangs up
        second.reply(bye, 200)
        (await carrier.wait_async(timeout=30)).assert_success(1)
    finally:
        audio_first.close()
        audio_second.close()
        first.close()
        if second is not None:
            second.close()
    events = await call_events(gateway.bus)
    transferred = next(e for e in events if isinstance(e, CallTransferred))
    assert (
        transferred.data.transferred_by,
        transferred.data.from_agent_id,
        transferred.data.to_agent_id,
    ) == (
        Party.API,
        "a100",
        "a101",
    )
    deliveries: list[Delivery[Event]] = [
        Delivery(e, subjects.event_subject(e), 1, stream_sequence=i + 1, stored_at=e.occurred_at)  # type: ignore[arg-type]
        for i, e in enumerate(events)
    ]
    await EventIngestion(api.db).ingest(deliveries)
    logged = (await client.get(f"/v1/calls/{created.call_id}")).json()
    assert (logged["status"], logged["transfer_target"], logged["agent_id"]) == ("completed", "101", "a100")
