"""Retention: recordings past their tenant's ``retention_days`` (KV ``tenants``) are deleted by one
of several recorders, each with ``recording.deleted`` (reason ``retention``), on a local directory
and on S3 (moto's server mode); a virtual wall clock moves the calendar, a real nats-server and
real recorders do the rest."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from services.recorder.retention import LocalListing, expired, group_keys
from services.recorder.service import RecorderService
from shared import subjects
from shared.bus import Bus
from shared.events import LegKind, RecordingCompleted, RecordingDeleted
from shared.recording import RecorderJob
from shared.records import TenantRecord, tenant_key
from shared.service import ServiceContext
from tests.recorder.conftest import RecordingEvents, recorder_settings
from tests.support.nats import NatsServer
from tests.support.recording import STARTED_AT, LegAudio, call_chunks, publish_chunks, request_recording
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

pytestmark = pytest.mark.needs_nats

BUCKET = "recordings"
DAY = 86400.0


def test_a_recording_is_kept_for_the_whole_retention_and_at_most_a_day_more() -> None:
    day = date(2025, 11, 25)
    start = STARTED_AT  # 2025-11-25 12:00 UTC
    assert not expired(day, 30, start + 30 * DAY)
    # The day's end (11-26 00:00) plus 30 days: 12-26 00:00 UTC.
    boundary = start + 12 * 3600 + 30 * DAY
    assert not expired(day, 30, boundary - 1)
    assert expired(day, 30, boundary)
    assert expired(day, 1, start + 2 * DAY)


def test_only_recordings_keys_are_read_and_each_recording_is_one_group() -> None:
    keys = [
        "acme/2025/11/25/call-1-abc.wav",
        "acme/2025/11/25/call-1-abc.json",
        "acme/2025/11/25/call-1-abc.ogg",
        "acme/2025/11/26/call-2-def.wav",
        "acme/2025/13/01/call-3-ghi.wav",  # no such month
        "acme/notes.txt",
        "acme/2025/11/25/call-1-abc.wav.partial",
    ]
    groups = {(g.call_id, g.recording_id, g.day): sorted(g.keys) for g in group_keys(keys)}
    assert groups == {
        ("call-1", "abc", date(2025, 11, 25)): sorted(keys[:3]),
        ("call-2", "def", date(2025, 11, 26)): [keys[3]],
    }


class VirtualClock:
    """The wall clock recorders see: the day of the test calls (STARTED_AT), running at real speed
    from there; ``advance`` jumps the calendar."""

    def __init__(self) -> None:
        self._origin = time.monotonic()
        self._offset = STARTED_AT + 3600.0

    def __call__(self) -> float:
        return self._offset + time.monotonic() - self._origin

    def advance(self, seconds: float) -> None:
        self._offset += seconds


class Store:
    """Where the recorders store, with a way to put objects there behind their back (recordings of
    long ago) and to list what is left."""

    def __init__(self, kind: str, root: Path, moto: MotoServer | None, client: Any) -> None:
        self.kind = kind
        self.root = root
        self.moto = moto
        self.client = client

    def settings(self) -> dict[str, object]:
        if self.moto is None:
            return {}
        return {
            "storage": "s3",
            "s3_bucket": BUCKET,
            "s3_endpoint_url": self.moto.url,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": SECRET_KEY,
        }

    async def put(self, key: str, body: bytes = b"audio") -> None:
        if self.client is not None:
            await self.client.put_object(Bucket=BUCKET, Key=key, Body=body)
        else:
            (self.root / key).parent.mkdir(parents=True, exist_ok=True)
            (self.root / key).write_bytes(body)

    async def keys(self) -> set[str]:
        if self.client is not None:
            listed = await self.client.list_objects_v2(Bucket=BUCKET)
            return {item["Key"] for item in listed.get("Contents", [])}
        return {k for k in await LocalListing(self.root).keys("") if not k.startswith(".")}


@pytest.fixture
def moto_server(request: pytest.FixtureRequest) -> Iterator[MotoServer | None]:
    if request.param != "s3":
        yield None
        return
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def store(moto_server: MotoServer | None, tmp_path: Path) -> AsyncIterator[Store]:
    root = tmp_path / "recordings"
    root.mkdir()
    if moto_server is None:
        yield Store("local", root, None, None)
        return
    async with get_session().create_client(
        "s3",
        endpoint_url=moto_server.url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ) as client:
        await client.create_bucket(Bucket=BUCKET)
        yield Store("s3", root, moto_server, client)


@pytest.mark.parametrize("moto_server", ["local", "s3"], indirect=True)
async def test_recordings_past_their_tenants_retention_are_deleted_once_by_one_of_several_recorders(
    nats_server: NatsServer, bus: Bus, store: Store, recording_events: RecordingEvents
) -> None:
    clock = VirtualClock()
    tenants = await bus.bucket(subjects.TENANTS_KV)
    for record in (
        TenantRecord(tenant_id="acme", recording_retention_days=30),
        TenantRecord(tenant_id="initech", recording_retention_days=365),
        TenantRecord(tenant_id="globex", record_calls=True),  # no retention: kept until deleted
    ):
        await tenants.put(tenant_key(record.tenant_id), record.model_dump_json().encode())
    # Recordings of long ago, as an earlier recorder stored them (2025-10-01, 55 days before).
    old = "acme/2025/10/01/call-old-0ld"
    for extension in ("wav", "json", "ogg"):
        await store.put(f"{old}.{extension}")
    kept = {
        "initech/2025/10/01/call-i-1d.wav",
        "globex/2025/10/01/call-g-9e.wav",
        "acme/2025/10/01/notes.txt",  # not a recording's name: never touched
    }
    for key in kept:
        await store.put(key)

    started: list[tuple[RecorderService, Bus]] = []
    try:
        for instance in ("r1", "r2"):
            settings = recorder_settings(
                nats_server.url,
                store.root,
                instance,
                retention_interval_s=0.4,
                compressed_format="none",
                **store.settings(),
            )
            connection = await Bus.connect(nats_server.url, name=f"recorder-{instance}", timeout=10)
            service = RecorderService(settings, clock=clock)
            await service.start(ServiceContext(settings=settings, bus=connection))
            started.append((service, connection))

        # A call recorded today (STARTED_AT's day) stays; the one of 55 days ago goes.
        await request_recording(bus, "call-new")
        legs = [LegAudio(LegKind.AGENT, 440, ssrc=1), LegAudio(LegKind.CUSTOMER, 1000, ssrc=2)]
        await publish_chunks(bus, "call-new", call_chunks("acme", legs, 1.0))
        completed = await recording_events.next("call-new", "recording.completed")
        assert isinstance(completed, RecordingCompleted)
        deleted = await recording_events.next("call-old", "recording.deleted", timeout=20)
        assert isinstance(deleted, RecordingDeleted)
        assert deleted.tenant_id == "acme"
        assert (deleted.data.recording_id, deleted.data.reason) == ("0ld", "retention")
        assert sorted(deleted.data.locations) == sorted(f"{old}.{e}" for e in ("json", "ogg", "wav"))

        # More sweeps run (a run is due every 0.4 s, taken by one recorder at a time) and find
        # nothing more to delete: the old one was announced once.
        job = await bus.bucket(subjects.RECORDER_JOBS_KV)
        runs_before = RecorderJob.model_validate_json((await job.get("retention")).value or b"").runs
        async with asyncio.timeout(20):
            while (
                RecorderJob.model_validate_json((await job.get("retention")).value or b"").runs
                < runs_before + 3
            ):
                await asyncio.sleep(0.1)
        new_stem = f"acme/2025/11/25/call-new-{completed.data.recording_id}"
        assert await store.keys() == kept | {f"{new_stem}.wav", f"{new_stem}.json"}
        assert recording_events.of("call-old") == ["recording.deleted"]

        # 31 days on, today's call is past acme's 30 days; initech's 365 and globex's none keep theirs.
        clock.advance(31 * DAY)
        gone = await recording_events.next("call-new", "recording.deleted", timeout=20)
        assert isinstance(gone, RecordingDeleted)
        assert gone.data.reason == "retention"
        assert gone.data.recording_id == completed.data.recording_id
        assert await store.keys() == kept
        await asyncio.sleep(1.0)
        assert recording_events.of("call-new").count("recording.deleted") == 1
    finally:
        for service, connection in started:
            await service.stop()
            await connection.close()
