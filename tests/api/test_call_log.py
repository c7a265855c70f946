"""The call log from the bus: a durable consumer on a real nats-server builds calls and their
timelines, exactly once, whatever order events arrive in, and goes on past malformed ones."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
import pytest

from services.api.db import Database
from services.api.ingestion import EventIngestion
from shared import subjects
from shared.bus import Bus
from shared.events import (
    CallAnswered,
    CallCreated,
    CallCreatedData,
    CallDtmf,
    CallDtmfData,
    CallEnded,
    CallEndedData,
    CallEvent,
    CallQuality,
    CallQualityData,
    CallRinging,
    CallStatus,
    Direction,
    EndCause,
    LegKind,
    LegQuality,
    Party,
    RecordingCompleted,
    RecordingCompletedData,
    RecordingCompressed,
    RecordingCompressedData,
    RecordingDeleted,
    RecordingDeletedData,
    RecordingStarted,
    RecordingStartedData,
)
from tests.api.conftest import ApiHarness, Tenancy
from tests.api.eventing import eventually, publish, publish_again, publish_raw


@pytest.fixture
async def ingestion(database: Database, bus: Bus) -> AsyncIterator[EventIngestion]:
    consumer = EventIngestion(database)
    await consumer.start(bus, max_deliver=2)
    return consumer


def a_call(
    tenant: str,
    call_id: str,
    *,
    start: datetime,
    direction: Direction = Direction.OUTBOUND,
    agent: str | None = "agt_1",
    to: str = "+995555123456",
    answered: bool = True,
) -> list[CallEvent]:
    common: dict[str, Any] = {"tenant_id": tenant, "call_id": call_id}
    quality = LegQuality(
        leg=LegKind.CUSTOMER, codec="PCMU", packets_received=990, packets_lost=10, jitter_ms=3.5, mos=4.1
    )
    events: list[CallEvent] = [
        CallCreated(
            **common,
            sequence=0,
            occurred_at=start,
            data=CallCreatedData(direction=direction, from_number="100", to_number=to, agent_id=agent),
        ),
        CallRinging(**common, sequence=1, occurred_at=start + timedelta(seconds=1)),
    ]
    if answered:
        events += [
            CallAnswered(**common, sequence=2, occurred_at=start + timedelta(seconds=4)),
            CallDtmf(
                **common,
                sequence=3,
                occurred_at=start + timedelta(seconds=6),
                data=CallDtmfData(digit="5", duration_ms=120, leg=LegKind.CUSTOMER, method="rfc4733"),
            ),
            CallQuality(
                **common,
                sequence=4,
                occurred_at=start + timedelta(seconds=9),
                data=CallQualityData(legs=[quality]),
            ),
        ]
    events.append(
        CallEnded(
            **common,
            sequence=5,
            occurred_at=start + timedelta(seconds=34),
            data=CallEndedData(
                status=CallStatus.COMPLETED if answered else CallStatus.NO_ANSWER,
                cause=EndCause.NORMAL_CLEARING if answered else EndCause.NO_ANSWER,
                ended_by=Party.AGENT if answered else Party.SYSTEM,
                sip_status=200 if answered else 480,
                sip_reason="OK" if answered else "Temporarily Unavailable",
                message="Call ended by the agent" if answered else "No answer",
                answered_at=start + timedelta(seconds=4) if answered else None,
                duration_s=34,
                talk_time_s=30 if answered else 0,
                quality=[quality] if answered else [],
            ),
        )
    )
    return events


async def ended(tenancy: Tenancy, call_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await tenancy.client.get(f"/v1/calls/{call_id}")
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["ended_at"] is not None else None

    return await eventually(probe, f"call {call_id} never ended in the log")


async def test_a_call_and_its_timeline_from_the_bus(
    acme: Tenancy, bus: Bus, ingestion: EventIngestion
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    await publish(bus, *a_call(acme.tenant_id, "call-a", start=start))
    call = await ended(acme, "call-a")

    assert call["status"] == "completed"
    assert call["answered"] is True
    assert (call["direction"], call["from_number"], call["to_number"], call["agent_id"]) == (
        "outbound",
        "100",
        "+995555123456",
        "agt_1",
    )
    assert call["talk_time_s"] == 30
    assert (call["sip_status"], call["sip_reason"], call["ended_by"]) == (200, "OK", "agent")
    assert [e["type"] for e in call["timeline"]] == [
        "call.created",
        "call.ringing",
        "call.answered",
        "call.dtmf",
        "call.quality",
        "call.ended",
    ]
    assert call["timeline"][3]["data"]["digit"] == "5"
    quality = call["quality"]
    assert quality["final"] is True
    assert quality["legs"][0]["loss_percent"] == 1.0
    assert quality["worst_mos"] == 4.1

    page = (await acme.client.get("/v1/calls")).json()
    assert [c["id"] for c in page["items"]] == ["call-a"]
    assert page["next_cursor"] is None


async def test_duplicated_and_out_of_order_events_give_the_right_log(
    acme: Tenancy, bus: Bus, ingestion: EventIngestion
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=3)
    created, ringing, answered, dtmf, quality, end = a_call(acme.tenant_id, "call-b", start=start)
    # The end first, the ringing last (after the end), and two events delivered twice.
    await publish(bus, end, answered, dtmf)
    await publish_again(bus, answered)
    await publish(bus, created, quality, ringing)
    await publish_again(bus, end)
    await publish_again(bus, ringing)
    # A marker event on another call tells when everything before it was taken in.
    await publish(bus, *a_call(acme.tenant_id, "marker", start=start))
    await ended(acme, "marker")

    call = (await acme.client.get("/v1/calls/call-b")).json()
    assert call["status"] == "completed"
    assert call["ringing_at"] is not None
    assert call["answered"] is True
    assert call["direction"] == "outbound"
    assert datetime.fromisoformat(call["started_at"]) == start
    timeline = call["timeline"]
    assert [e["type"] for e in timeline] == [
        "call.created",
        "call.ringing",
        "call.answered",
        "call.dtmf",
        "call.quality",
        "call.ended",
    ]
    assert len({e["id"] for e in timeline}) == 6


async def test_malformed_events_are_dead_lettered_and_ingestion_goes_on(
    acme: Tenancy, bus: Bus, ingestion: EventIngestion
) -> None:
    subject = subjects.call_events(acme.tenant_id, "call-c")
    await publish_raw(bus, subject, b"{not json")
    await publish_raw(
        bus, subject, json.dumps({"type": "call.exploded", "tenant_id": acme.tenant_id}).encode()
    )
    bad_ringing = json.loads(a_call(acme.tenant_id, "call-c", start=datetime.now(UTC))[1].model_dump_json())
    bad_ringing["data"]["sip_status"] = 999
    await publish_raw(bus, subject, json.dumps(bad_ringing).encode())
    await publish(bus, *a_call(acme.tenant_id, "call-c", start=datetime.now(UTC)))

    call = await ended(acme, "call-c")
    assert len(call["timeline"]) == 6

    letters = await bus.js.pull_subscribe(
        subjects.dead_letter(subjects.CALL_EVENTS.name, "*"), durable="check", stream="DEAD_LETTERS"
    )
    messages = await letters.fetch(3, timeout=5)
    errors = sorted(m.headers["EchoDesk-Error"] for m in messages if m.headers)
    assert len(errors) == 3
    assert all(error.startswith("invalid:") for error in errors)
    assert any("sip_status" in error for error in errors)
    with pytest.raises(nats.errors.TimeoutError):  # nothing more was dead-lettered
        await letters.fetch(1, timeout=0.5)
    await letters.unsubscribe()


async def test_recordings_from_the_recorder_events(
    acme: Tenancy, bus: Bus, ingestion: EventIngestion
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=2)
    common: dict[str, Any] = {"tenant_id": acme.tenant_id, "call_id": "call-r"}
    completed = RecordingCompleted(
        **common,
        sequence=1,
        occurred_at=start + timedelta(seconds=40),
        data=RecordingCompletedData(
            recording_id="rec-1",
            location="local:2026/11/25/rec-1.wav",
            format="wav",
            channels=2,
            sample_rate=8000,
            duration_s=30.5,
            size_bytes=976_044,
            sha256="a" * 64,
        ),
    )
    started = RecordingStarted(
        **common,
        sequence=0,
        occurred_at=start + timedelta(seconds=4),
        data=RecordingStartedData(recording_id="rec-1", format="wav", channels=2, sample_rate=8000),
    )
    compressed = RecordingCompressed(
        **common,
        sequence=2,
        occurred_at=start + timedelta(seconds=50),
        data=RecordingCompressedData(
            recording_id="rec-1",
            location="local:rec-1.ogg",
            format="ogg/opus",
            size_bytes=61_000,
            sha256="b" * 64,
        ),
    )
    # The late start must not undo the completion.
    await publish(bus, compressed, completed, started)
    await publish(bus, *a_call(acme.tenant_id, "call-r", start=start))
    call = await ended(acme, "call-r")

    async def stored() -> dict[str, Any] | None:
        body: dict[str, Any] = (await acme.client.get("/v1/recordings/rec-1")).json()
        return body if body.get("status") == "completed" and body["started_at"] is not None else None

    recording = await eventually(stored, "recording never stored")
    assert (recording["call_id"], recording["duration_s"], recording["size_bytes"]) == (
        "call-r",
        30.5,
        976_044,
    )
    assert datetime.fromisoformat(recording["started_at"]) == start + timedelta(seconds=4)
    assert recording["compressed"] == {
        "location": "local:rec-1.ogg",
        "format": "ogg/opus",
        "size_bytes": 61_000,
        "sha256": "b" * 64,
    }
    detail = (await acme.client.get("/v1/calls/call-r")).json()
    assert [r["id"] for r in detail["recordings"]] == ["rec-1"]
    assert {"recording.started", "recording.completed"} <= {e["type"] for e in detail["timeline"]}
    assert call["status"] == "completed"
    listed = (await acme.client.get("/v1/recordings", params={"call_id": "call-r"})).json()
    assert [r["id"] for r in listed["items"]] == ["rec-1"]


async def test_another_tenants_calls_are_invisible(
    acme: Tenancy, api: ApiHarness, bus: Bus, ingestion: EventIngestion
) -> None:
    globex = await api.tenant("Globex", "globex.example")
    start = datetime.now(UTC) - timedelta(minutes=1)
    await publish(bus, *a_call(acme.tenant_id, "call-x", start=start))
    await publish(bus, *a_call(globex.tenant_id, "call-g", start=start))
    await ended(acme, "call-x")
    await ended(globex, "call-g")

    recording = RecordingCompleted(
        tenant_id=acme.tenant_id,
        call_id="call-x",
        sequence=0,
        data=RecordingCompletedData(
            recording_id="rec-x",
            location="local:rec-x.wav",
            format="wav",
            channels=2,
            sample_rate=8000,
            duration_s=30,
            size_bytes=480_044,
            sha256="c" * 64,
        ),
    )
    await publish(bus, recording)

    async def recorded() -> bool | None:
        return True if (await acme.client.get("/v1/recordings/rec-x")).status_code == 200 else None

    await eventually(recorded, "the recording never arrived")
    assert (await globex.client.get("/v1/recordings/rec-x")).status_code == 404
    assert (await globex.client.get("/v1/recordings")).json()["items"] == []
    assert (await globex.client.get("/v1/recordings", params={"call_id": "call-x"})).json()["items"] == []
    assert (await globex.client.get("/v1/calls/call-x")).status_code == 404
    assert [c["id"] for c in (await globex.client.get("/v1/calls")).json()["items"]] == ["call-g"]
    assert (await globex.client.get("/v1/calls/stats")).json()["total"] == 1
    assert (await acme.client.get("/v1/calls/call-g")).status_code == 404
    # The same call id in both tenants (ids come from producers): still two calls, one each.
    await publish(bus, *a_call(acme.tenant_id, "call-same", start=start, to="+995555000001"))
    await publish(bus, *a_call(globex.tenant_id, "call-same", start=start, to="+995555000002"))
    await ended(acme, "call-same")
    await ended(globex, "call-same")
    assert (await acme.client.get("/v1/calls/call-same")).json()["to_number"] == "+995555000001"
    other = (await globex.client.get("/v1/calls/call-same")).json()
    assert other["to_number"] == "+995555000002"
    assert {e["id"] for e in other["timeline"]}.isdisjoint(
        {e["id"] for e in (await acme.client.get("/v1/calls/call-same")).json()["timeline"]}
    )


async def test_a_deleted_recording_stays_deleted(acme: Tenancy, bus: Bus, ingestion: EventIngestion) -> None:
    common: dict[str, Any] = {"tenant_id": acme.tenant_id, "call_id": "call-d"}
    data = RecordingCompletedData(
        recording_id="rec-d",
        location="local:rec-d.wav",
        format="wav",
        channels=2,
        sample_rate=8000,
        duration_s=12,
        size_bytes=192_044,
        sha256="d" * 64,
    )
    deleted = RecordingDeleted(
        **common,
        sequence=5,
        data=RecordingDeletedData(
            recording_id="rec-d", locations=["local:rec-d.wav"], reason="customer asked"
        ),
    )
    # The deletion arrives first, the completion (published again by a recorder) after it.
    await publish(bus, deleted, RecordingCompleted(**common, sequence=1, data=data))

    async def settled() -> dict[str, Any] | None:
        body: dict[str, Any] = (await acme.client.get("/v1/recordings/rec-d")).json()
        return body if body.get("size_bytes") is not None else None

    recording = await eventually(settled, "the recording never arrived")
    assert (recording["status"], recording["deletion_reason"]) == ("deleted", "customer asked")
    assert recording["deleted_at"] is not None
    listed = (await acme.client.get("/v1/recordings", params={"status": "deleted"})).json()
    assert [r["id"] for r in listed["items"]] == ["rec-d"]
