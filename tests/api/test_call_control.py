"""Call control through the api: ``POST /v1/calls/{id}/hangup|hold|resume|dtmf`` reach the real
signaling instance holding the call (the whole gateway of tests/support/gateway.py: media worker,
signaling, sipp as the carrier) and its answers and refusals come back as HTTP; a call that is
unknown, another tenant's, ended, or on a node that is gone gets 404, 409 or 503 with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.api import keys
from services.api.db import Database, Tenant
from services.api.ingestion import EventIngestion
from services.signaling.sip.message import Request, make_response
from shared import subjects
from shared.bus import Bus, Delivery
from shared.events import (
    CallAnswered,
    CallAnsweredData,
    CallCreated,
    CallCreatedData,
    CallStatus,
    Direction,
    Event,
    Party,
)
from tests.api.conftest import ApiHarness, Tenancy, harness
from tests.support.desk_phone import acknowledge, place_call
from tests.support.gateway import DOMAIN, Gateway, call_events, gateway_stack
from tests.support.nats import NatsServer
from tests.support.rtp_peer import RtpPeer
from tests.support.sipp import Sipp

pytestmark = pytest.mark.needs_nats


async def _tenant_of_the_gateway(api: ApiHarness) -> Tenancy:
    """The gateway's directory puts agent 100 and its trunk in tenant ``acme``: the api's tenant
    must be that one, with an admin key."""
    async with api.db.sessions() as session:
        session.add(Tenant(id="acme", name="Acme", sip_domain=DOMAIN, default_region="GE"))
        await session.flush()
        _key, token = keys.issue(session, tenant_id="acme", name="admin", scopes=[keys.Scope.ADMIN])
        await session.commit()
    return Tenancy(api, api.client(token), "acme", DOMAIN, token)


@pytest.fixture
async def stack(
    nats_server: NatsServer, tmp_path: Path, database: Database
) -> AsyncIterator[tuple[Gateway, Sipp, ApiHarness]]:
    async with gateway_stack(nats_server, tmp_path) as (gateway, carrier):
        api = await harness(database, bus=gateway.bus)
        try:
            yield gateway, carrier, api
        finally:
            await api.close()


@pytest.mark.needs_sipp
async def test_hold_resume_digits_and_hangup_of_a_live_call(stack: tuple[Gateway, Sipp, ApiHarness]) -> None:
    gateway, carrier, api = stack
    acme = await _tenant_of_the_gateway(api)
    other = await api.tenant("Other", "other.example")
    phone = await RtpPeer.open("127.0.0.1")
    try:
        client, answered, _ = await asyncio.to_thread(place_call, gateway.sip, phone.description())
        assert answered.status_code == 200, answered
        phone.learn(answered.body.decode())
        acknowledge(client, answered)
        phone.start_tone(1000)
        created = (await call_events(gateway.bus, call_count=0, at_least=1))[0]
        calls = f"/v1/calls/{created.call_id}"

        assert (await acme.client.post("/v1/calls/nope/hold")).status_code == 404
        foreign = await other.client.post(f"{calls}/hangup")
        assert (foreign.status_code, foreign.json()["detail"]) == (
            404,
            f"no call {created.call_id} in this tenant",
        )

        held = await acme.client.post(f"{calls}/hold")
        assert held.status_code == 200, held.text
        assert held.json() == {"call_id": created.call_id, "status": "held"}
        twice = await acme.client.post(f"{calls}/hold")
        assert (twice.status_code, twice.json()["detail"]) == (409, "the call is already on hold")
        resumed = await acme.client.post(f"{calls}/resume")
        assert (resumed.status_code, resumed.json()["status"]) == (200, "in-progress")
        again = await acme.client.post(f"{calls}/resume")
        assert (again.status_code, again.json()["detail"]) == (409, "the call is not on hold")

        for body, field in (
            ({"digits": "12x"}, "digits"),
            ({"digits": ""}, "digits"),
            ({"digits": "1", "duration_ms": 5}, "duration_ms"),
            ({"digits": "1", "leg": "carrier"}, "leg"),
            ({"digits": "1", "volume": 3}, "volume"),
        ):
            refused = await acme.client.post(f"{calls}/dtmf", json=body)
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"][0]["field"] == field
        digits = await acme.client.post(f"{calls}/dtmf", json={"digits": "12", "duration_ms": 100})
        assert (digits.status_code, digits.json()["status"]) == (200, "in-progress")
        await asyncio.sleep(1.0)
        assert {1, 2} <= {e["event"] for e in phone.events() if e["end"]}, phone.events()[-6:]

        hung = await acme.client.post(f"{calls}/hangup")
        assert (hung.status_code, hung.json()["status"]) == (200, "completed")
        bye = await asyncio.to_thread(client.receive_message)
        assert isinstance(bye, Request)
        assert bye.method == "BYE"
        client.send(make_response(bye, 200).encode())
        client.close()
    finally:
        phone.close()
    (await carrier.wait_async(timeout=20)).assert_success(calls=2)
    events = await call_events(gateway.bus)
    assert [e.type for e in events if e.type in ("call.held", "call.resumed")] == [  # type: ignore[attr-defined]
        "call.held",
        "call.resumed",
    ]
    ended = events[-1].data  # type: ignore[attr-defined]
    assert (ended.ended_by, ended.status) == (Party.API, CallStatus.COMPLETED)
    # Once the call has ended: 409, and no signaling instance is asked.
    after = await acme.client.post(f"{calls}/hangup")
    assert (after.status_code, after.json()["detail"]) == (
        409,
        f"call {created.call_id} has ended (completed)",
    )


async def _publish_live_call(bus: Bus, tenant_id: str, call_id: str, node: str) -> None:
    envelope: dict[str, Any] = {"tenant_id": tenant_id, "call_id": call_id, "source": node}
    data = CallCreatedData(direction=Direction.OUTBOUND, from_number="100", to_number="+995555123456")
    await bus.publish_event(CallCreated(**envelope, sequence=0, data=data))
    await bus.publish_event(CallAnswered(**envelope, sequence=1, data=CallAnsweredData()))


async def test_a_node_that_is_gone_a_call_only_in_the_log_and_no_bus(database: Database, bus: Bus) -> None:
    api = await harness(database, bus=bus)
    try:
        acme = await api.tenant("Acme", "acme.example")
        await _publish_live_call(bus, acme.tenant_id, "c1", "signaling-gone")
        gone = await acme.client.post("/v1/calls/c1/hold")
        assert gone.status_code == 503
        assert gone.json()["detail"].startswith(
            "the call's signaling instance (signaling-gone) did not answer"
        )

        # In the call log but no longer on the bus (aged out of the stream): not in progress.
        old = datetime(2025, 1, 1, tzinfo=UTC)
        created = CallCreated(
            tenant_id=acme.tenant_id,
            call_id="c-old",
            sequence=0,
            occurred_at=old,
            data=CallCreatedData(direction=Direction.INBOUND, from_number="+995322000000", to_number="100"),
        )
        delivery: Delivery[Event] = Delivery(
            created, subjects.event_subject(created), 1, stream_sequence=1, stored_at=old
        )
        await EventIngestion(database).ingest([delivery])
        logged = await acme.client.post("/v1/calls/c-old/hangup")
        assert (logged.status_code, logged.json()["detail"]) == (
            409,
            "call c-old is initiated: it is no longer in progress",
        )
        for path in ("/v1/calls/c!1/hangup", "/v1/calls/" + "x" * 65 + "/hold"):
            assert (await acme.client.post(path)).status_code == 422
        reader = (await acme.client.post("/v1/api-keys", json={"name": "r", "scopes": ["read"]})).json()
        forbidden = await api.client(reader["key"]).post("/v1/calls/c1/hangup")
        assert forbidden.status_code == 403
    finally:
        await api.close()
    busless = await harness(database)
    try:
        response = await busless.client(acme.token).post("/v1/calls/c1/hangup")
        assert (response.status_code, response.json()["detail"]) == (
            503,
            "the api is not connected to the bus: call control needs NATS",
        )
    finally:
        await busless.close()
