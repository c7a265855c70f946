"""Recordings stored on an S3-compatible store (moto's server mode), and a store that stays away."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from shared import subjects
from shared.bus import Bus
from shared.events import LegKind, RecordingCompleted, RecordingCompressed, RecordingFailed
from shared.recording import DeleteRecording, RecordingDeletion
from shared.supervisor import free_port
from tests.recorder.conftest import RecordingEvents, StartRecorder
from tests.support.recording import LegAudio, call_chunks, publish_chunks, request_recording
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

BUCKET = "recordings"


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def s3(moto: MotoServer) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "s3",
        endpoint_url=moto.url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ) as client:
        await client.create_bucket(Bucket=BUCKET)
        yield client


def _s3_settings(endpoint: str) -> dict[str, object]:
    return {
        "storage": "s3",
        "s3_bucket": BUCKET,
        "s3_endpoint_url": endpoint,
        "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key": SECRET_KEY,
    }


def _chunks() -> list[Any]:
    legs = [LegAudio(LegKind.AGENT, 440, ssrc=1), LegAudio(LegKind.CUSTOMER, 1000, ssrc=2)]
    return call_chunks("acme", legs, 2.0)


async def _object(s3: Any, key: str) -> bytes:
    response = await s3.get_object(Bucket=BUCKET, Key=key)
    async with response["Body"] as body:
        data: bytes = await body.read()
    return data


async def test_recordings_go_to_s3_under_tenant_and_date_with_metadata_and_the_opus_copy(
    bus: Bus,
    moto: MotoServer,
    s3: Any,
    start_recorder: StartRecorder,
    recording_events: RecordingEvents,
    tmp_path: Path,
) -> None:
    await start_recorder("r1", **_s3_settings(moto.url))
    await request_recording(bus, "call-s3")
    await publish_chunks(bus, "call-s3", _chunks())
    completed = await recording_events.next("call-s3", "recording.completed")
    assert isinstance(completed, RecordingCompleted)
    key = f"acme/2025/11/25/call-s3-{completed.data.recording_id}"
    assert completed.data.location == f"s3://{BUCKET}/{key}.wav"
    wav = await _object(s3, f"{key}.wav")
    assert wav[:4] == b"RIFF"
    assert len(wav) == completed.data.size_bytes == 44 + 2 * 8000 * 4
    assert hashlib.sha256(wav).hexdigest() == completed.data.sha256
    assert b'"sha256": "' + completed.data.sha256.encode() in await _object(s3, f"{key}.json")
    compressed = await recording_events.next("call-s3", "recording.compressed", timeout=90)
    assert isinstance(compressed, RecordingCompressed)
    assert compressed.data.location == f"s3://{BUCKET}/{key}.ogg"
    assert (await _object(s3, f"{key}.ogg"))[:4] == b"OggS"
    # Nothing stays behind in the spool once the copies are stored.
    async with asyncio.timeout(20):
        while _listing(tmp_path / "recordings" / ".spool"):
            await asyncio.sleep(0.05)
    # Deleted on request: all three objects.
    request = DeleteRecording(
        tenant_id="acme",
        call_id="call-s3",
        recording_id=completed.data.recording_id,
        location=completed.data.location,
        reason="retention",
    )
    reply = await bus.request(subjects.recording_command("delete"), request, RecordingDeletion, timeout=10)
    assert sorted(reply.deleted) == sorted(f"{key}.{ext}" for ext in ("wav", "json", "ogg"))
    listing = await s3.list_objects_v2(Bucket=BUCKET, Prefix="acme/")
    assert listing.get("KeyCount", 0) == 0


async def test_an_unreachable_store_fails_the_recording_with_the_reason_and_keeps_the_audio(
    bus: Bus, start_recorder: StartRecorder, recording_events: RecordingEvents, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    await start_recorder("r1", storage_retry_s=0.5, **_s3_settings(nowhere))
    await request_recording(bus, "call-lost-s3")
    await publish_chunks(bus, "call-lost-s3", _chunks())
    failed = await recording_events.next("call-lost-s3", "recording.failed")
    assert isinstance(failed, RecordingFailed)
    assert "storage unreachable" in failed.data.reason
    assert "s3 put recordings/acme/2025/11/25/call-lost-s3-" in failed.data.reason
    kept = _listing(tmp_path / "recordings" / ".unstored")
    assert len(kept) == 1
    assert kept[0].name in failed.data.reason
    assert kept[0].stat().st_size == 44 + 2 * 8000 * 4


def _listing(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []
