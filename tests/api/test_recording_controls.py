"""A tenant's recording policy through the api, published to NATS KV ``tenants``; and pausing,
resuming or stopping a live call's recording, which the api sends to the signaling instance
holding the call (here a responder of our own on a real nats-server: the route is the unit under
test; the whole path through signaling and the media worker is in tests/test_call_end_to_end.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.api.db import Database
from services.api.publishing import ConfigPublisher
from shared import subjects
from shared.bus import Bus, Rejected
from shared.commands import CommandAccepted, ControlRecording
from shared.events import (
    CallAnswered,
    CallAnsweredData,
    CallCreated,
    CallCreatedData,
    CallEnded,
    CallEndedData,
    CallStatus,
    Direction,
    EndCause,
    Party,
)
from shared.records import TenantRecord, tenant_key
from tests.api.conftest import ApiHarness, harness

pytestmark = pytest.mark.needs_nats


async def _record(bus: Bus, tenant_id: str) -> TenantRecord | None:
    kv = await bus.bucket(subjects.TENANTS_KV)
    try:
        entry = await kv.get(tenant_key(tenant_id))
    except Exception:
        return None
    return TenantRecord.model_validate_json(entry.value or b"")


async def test_the_recording_policy_is_validated_and_reaches_kv(published_api: ApiHarness, bus: Bus) -> None:
    acme = await published_api.tenant("Acme", "acme.example")
    assert published_api.publisher is not None
    assert await published_api.publisher.settle(timeout=15)
    # A tenant nobody configured follows the platform's defaults.
    assert await _record(bus, acme.tenant_id) == TenantRecord(tenant_id=acme.tenant_id)
    policy = (await acme.client.get("/v1/tenant/recording-policy")).json()
    assert policy == {"record_calls": None, "retention_days": None, "published": True}

    for body, field in (
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": "forever"}, "retention_days"),
        ({"record_calls": "sometimes"}, "record_calls"),
        ({"retain": 3}, "retain"),
    ):
        refused = await acme.client.patch("/v1/tenant/recording-policy", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["field"] == field

    changed = await acme.client.patch(
        "/v1/tenant/recording-policy", json={"record_calls": False, "retention_days": 30}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["record_calls"] is False
    assert await published_api.publisher.settle(timeout=15)
    assert await _record(bus, acme.tenant_id) == TenantRecord(
        tenant_id=acme.tenant_id, record_calls=False, recording_retention_days=30
    )
    # A field left out keeps its value; null goes back to the default.
    await acme.client.patch("/v1/tenant/recording-policy", json={"record_calls": None})
    assert await published_api.publisher.settle(timeout=15)
    assert await _record(bus, acme.tenant_id) == TenantRecord(
        tenant_id=acme.tenant_id, record_calls=None, recording_retention_days=30
    )
    assert (await acme.client.get("/v1/tenant/recording-policy")).json()["published"] is True


async def test_changing_the_policy_needs_an_admin_key(published_api: ApiHarness) -> None:
    acme = await published_api.tenant("Acme", "acme.example")
    created = await acme.client.post("/v1/api-keys", json={"name": "reader", "scopes": ["read"]})
    reader = acme.as_key(created.json()["key"])
    assert (await reader.get("/v1/tenant/recording-policy")).status_code == 200
    refused = await reader.patch("/v1/tenant/recording-policy", json={"record_calls": False})
    assert refused.status_code == 403


@pytest.fixture
async def commanding_api(database: Database, bus: Bus) -> AsyncIterator[ApiHarness]:
    publisher = ConfigPublisher(database, bus, retry_interval_s=0.2)
    built = await harness(database, publisher, bus=bus)
    try:
        yield built
    finally:
        await built.close()


async def _publish_call(bus: Bus, tenant_id: str, call_id: str, *, ended: bool = False) -> None:
    envelope = {"tenant_id": tenant_id, "call_id": call_id, "source": "sig-1"}
    await bus.publish_event(
        CallCreated(
            **envelope,
            sequence=0,
            data=CallCreatedData(direction=Direction.OUTBOUND, from_number="100", to_number="+995555123456"),
        )
    )
    await bus.publish_event(CallAnswered(**envelope, sequence=1, data=CallAnsweredData()))
    if ended:
        await bus.publish_event(
            CallEnded(
                **envelope,
                sequence=2,
                data=CallEndedData(
                    status=CallStatus.COMPLETED,
                    cause=EndCause.NORMAL_CLEARING,
                    ended_by=Party.AGENT,
                    message="Call completed",
                    duration_s=10.0,
                ),
            )
        )


async def test_the_api_pauses_resumes_and_stops_a_calls_recording(
    commanding_api: ApiHarness, bus: Bus
) -> None:
    acme = await commanding_api.tenant("Acme", "acme.example")
    asked: list[ControlRecording] = []

    async def signaling(request: ControlRecording) -> CommandAccepted:
        asked.append(request)
        if request.action == "resume" and asked[0].action == "stop":
            raise Rejected("not_allowed", "the call's recording was stopped and cannot be resumed")
        return CommandAccepted(call_id=request.call_id, status=CallStatus.IN_PROGRESS)

    await bus.serve(subjects.call_command("sig-1", "recording"), ControlRecording, signaling)
    await _publish_call(bus, acme.tenant_id, "c1")

    paused = await acme.client.post("/v1/calls/c1/recording", json={"action": "pause"})
    assert paused.status_code == 200, paused.text
    assert paused.json() == {"call_id": "c1", "recording": "paused", "status": "in-progress"}
    assert (asked[0].tenant_id, asked[0].call_id, asked[0].action) == (acme.tenant_id, "c1", "pause")
    assert asked[0].requested_by is not None

    asked.clear()
    assert (await acme.client.post("/v1/calls/c1/recording", json={"action": "stop"})).status_code == 200
    refused = await acme.client.post("/v1/calls/c1/recording", json={"action": "resume"})
    assert refused.status_code == 409
    assert refused.json()["detail"] == "the call's recording was stopped and cannot be resumed"

    bad = await acme.client.post("/v1/calls/c1/recording", json={"action": "rewind"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"] == "action"
    assert (await acme.client.post("/v1/calls/c!1/recording", json={"action": "pause"})).status_code == 422
    # No such call, another tenant's call: 404; a call that ended: 409; signaling is not asked.
    asked.clear()
    other = await commanding_api.tenant("Other", "other.example")
    await _publish_call(bus, acme.tenant_id, "c2", ended=True)
    for client, call_id, code in (
        (acme.client, "nope", 404),
        (other.client, "c1", 404),
        (acme.client, "c2", 409),
    ):
        refused = await client.post(f"/v1/calls/{call_id}/recording", json={"action": "pause"})
        assert refused.status_code == code, refused.text
    assert asked == []


async def test_a_call_whose_signaling_instance_is_gone_is_a_503(commanding_api: ApiHarness, bus: Bus) -> None:
    acme = await commanding_api.tenant("Acme", "acme.example")
    await _publish_call(bus, acme.tenant_id, "c1")
    gone = await acme.client.post("/v1/calls/c1/recording", json={"action": "pause"})
    assert gone.status_code == 503
    assert "did not answer" in gone.json()["detail"]
