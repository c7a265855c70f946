"""Downloads of recordings' audio: whole files and HTTP Range parts (RFC 9110 section 14) from the
recorder's local directory and from S3 (moto's server), ETags from the sha256, signed links that work
without an API key until they expire, and no audio of another tenant, ever."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiobotocore.session import get_session

from services.api.db import Database
from services.api.ingestion import EventIngestion
from services.api.signed_urls import RecordingLink, sign
from shared import subjects
from shared.bus import Delivery
from shared.events import (
    Event,
    RecordingCompleted,
    RecordingCompletedData,
    RecordingCompressed,
    RecordingCompressedData,
    RecordingDeleted,
    RecordingDeletedData,
    RecordingFailed,
    RecordingFailedData,
    RecordingStarted,
    RecordingStartedData,
)
from shared.recording_store import LocalStorage, S3Config, S3Storage, Storage, object_key
from shared.supervisor import free_port
from tests.api.conftest import SECRET_KEY, ApiHarness, harness
from tests.support.s3 import ACCESS_KEY, REGION, MotoServer
from tests.support.s3 import SECRET_KEY as S3_SECRET

BUCKET = "recordings"
START = datetime(2026, 3, 14, 9, 26, tzinfo=UTC)
WAV = os.urandom(200_000)  # larger than one read chunk: a range crosses chunk boundaries
OGG = os.urandom(9_000)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


def _s3_config(endpoint: str) -> S3Config:
    return S3Config(BUCKET, endpoint, REGION, ACCESS_KEY, S3_SECRET)


def _s3_settings(endpoint: str) -> dict[str, Any]:
    return {
        "s3_bucket": BUCKET,
        "s3_endpoint_url": endpoint,
        "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key": S3_SECRET,
    }


class Desk:
    """One tenant's recordings as the recorder stores and announces them."""

    def __init__(self, api: ApiHarness, db: Database, store: Storage, tmp: Path) -> None:
        self.api, self.store, self.tmp = api, store, tmp
        self.ingestion = EventIngestion(db)
        self.stream_sequence = 0

    async def ingest(self, *events: Event) -> None:
        deliveries: list[Delivery[Event]] = []
        for event in events:
            self.stream_sequence += 1
            deliveries.append(
                Delivery(
                    event,
                    subjects.event_subject(event),
                    1,
                    stream_sequence=self.stream_sequence,
                    stored_at=datetime.now(UTC),
                )
            )
        await self.ingestion.ingest(deliveries)

    async def put(self, tenant_id: str, call_id: str, recording_id: str, ext: str, data: bytes) -> str:
        source = self.tmp / f"{recording_id}.{ext}"
        source.write_bytes(data)
        key = object_key(tenant_id, START.timestamp(), call_id, recording_id, ext)
        return await self.store.put(source, key, f"audio/{ext}")

    async def recorded(
        self,
        tenant_id: str,
        call_id: str,
        recording_id: str,
        *,
        ogg: bool = True,
        location: str | None = None,
    ) -> None:
        wav_at = location or await self.put(tenant_id, call_id, recording_id, "wav", WAV)
        common: dict[str, Any] = {
            "tenant_id": tenant_id,
            "call_id": call_id,
            "occurred_at": START,
            "sequence": 0,
        }
        await self.ingest(
            RecordingCompleted(
                **common,
                data=RecordingCompletedData(
                    recording_id=recording_id,
                    location=wav_at,
                    format="wav",
                    channels=2,
                    sample_rate=8000,
                    duration_s=12.5,
                    size_bytes=len(WAV),
                    sha256=hashlib.sha256(WAV).hexdigest(),
                ),
            )
        )
        if ogg:
            await self.ingest(
                RecordingCompressed(
                    **common,
                    data=RecordingCompressedData(
                        recording_id=recording_id,
                        location=await self.put(tenant_id, call_id, recording_id, "ogg", OGG),
                        format="ogg/opus",
                        size_bytes=len(OGG),
                        sha256=hashlib.sha256(OGG).hexdigest(),
                    ),
                )
            )


@pytest.fixture(params=["local", "s3"])
async def desk(request: pytest.FixtureRequest, database: Database, tmp_path: Path) -> AsyncIterator[Desk]:
    recordings = tmp_path / "recordings"
    settings: dict[str, Any] = {"recordings_dir": recordings}
    store: Storage
    if request.param == "s3":
        moto: MotoServer = request.getfixturevalue("moto")
        async with get_session().create_client(
            "s3",
            endpoint_url=moto.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=S3_SECRET,
        ) as client:
            await client.create_bucket(Bucket=BUCKET)
        store = S3Storage(_s3_config(moto.url))
        settings |= _s3_settings(moto.url)
    else:
        store = LocalStorage(recordings)
    api = await harness(database, **settings)
    (tmp_path / "spool").mkdir()
    try:
        yield Desk(api, database, store, tmp_path / "spool")
    finally:
        await store.close()
        await api.close()


async def test_whole_file_ranges_etag_and_the_opus_copy(desk: Desk) -> None:
    acme = await desk.api.tenant("Acme", "acme.example")
    await desk.recorded(acme.tenant_id, "call-1", "rec-1")
    url = "/v1/recordings/rec-1/audio"
    etag = f'"{hashlib.sha256(WAV).hexdigest()}"'

    whole = await acme.client.get(url)
    assert whole.status_code == 200, whole.text
    assert whole.content == WAV
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(len(WAV))
    assert whole.headers["etag"] == etag
    assert whole.headers["content-disposition"] == 'inline; filename="call-1-rec-1.wav"'

    part = await acme.client.get(url, headers={"Range": "bytes=65000-140000"})
    assert part.status_code == 206
    assert part.content == WAV[65000:140001]
    assert part.headers["content-range"] == f"bytes 65000-140000/{len(WAV)}"
    assert part.headers["content-length"] == str(140001 - 65000)

    tail = await acme.client.get(url, headers={"Range": "bytes=-100"})
    assert (tail.status_code, tail.content) == (206, WAV[-100:])
    rest = await acme.client.get(url, headers={"Range": f"bytes={len(WAV) - 7}-"})
    assert (rest.status_code, rest.content) == (206, WAV[-7:])

    past = await acme.client.get(url, headers={"Range": f"bytes={len(WAV)}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(WAV)}"

    # Several ranges, or a Range whose If-Range names another file: the whole file (RFC 9110 13.1.5).
    several = await acme.client.get(url, headers={"Range": "bytes=0-1,5-6"})
    assert (several.status_code, several.content) == (200, WAV)
    other = await acme.client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"0000"'})
    assert (other.status_code, len(other.content)) == (200, len(WAV))
    same = await acme.client.get(url, headers={"Range": "bytes=0-1", "If-Range": etag})
    assert (same.status_code, same.content) == (206, WAV[:2])

    unchanged = await acme.client.get(url, headers={"If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content) == (304, b"")

    opus = await acme.client.get(url, params={"format": "ogg"}, headers={"Range": "bytes=0-9"})
    assert (opus.status_code, opus.content) == (206, OGG[:10])
    assert opus.headers["content-type"] == "audio/ogg"
    assert opus.headers["etag"] == f'"{hashlib.sha256(OGG).hexdigest()}"'

    bad = await acme.client.get(url, params={"format": "mp3"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"] == "format"


async def test_signed_links_play_without_a_key_until_they_expire(desk: Desk) -> None:
    acme = await desk.api.tenant("Acme", "acme.example")
    await desk.recorded(acme.tenant_id, "call-1", "rec-1")
    minted = await acme.client.get("/v1/recordings/rec-1/audio-url", params={"ttl_s": 60})
    assert minted.status_code == 200, minted.text
    link = minted.json()
    assert link["url"] == f"http://api.test{link['path']}"
    expires_at = datetime.fromisoformat(link["expires_at"])
    assert timedelta(seconds=55) < expires_at - datetime.now(UTC) <= timedelta(seconds=60)

    anonymous = desk.api.client(None)
    played = await anonymous.get(link["path"], headers={"Range": "bytes=10-19"})
    assert (played.status_code, played.content) == (206, WAV[10:20])
    assert played.headers["cache-control"].startswith("private, max-age=")

    path, query = urlsplit(link["path"]).path, parse_qs(urlsplit(link["path"]).query)
    params = {name: values[0] for name, values in query.items()}

    async def refused(path: str, **changes: Any) -> str:
        response = await anonymous.get(path, params={**params, **changes})
        assert response.status_code == 403, response.text
        return str(response.json()["detail"])

    for tampered in (
        await refused(path, format="ogg"),
        await refused(path, expires=int(params["expires"]) + 3600),
        await refused(path, signature=params["signature"][:-2] + "AA"),
        await refused(path.replace("rec-1", "rec-2")),
        await refused(path.replace(acme.tenant_id, "ten_other")),
    ):
        assert "signature does not match" in tampered

    expired = RecordingLink(acme.tenant_id, "rec-1", "wav", int(datetime.now(UTC).timestamp()) - 1)
    reason = await refused(path, expires=expired.expires, signature=sign(expired, SECRET_KEY))
    assert reason.startswith("the link expired at ")

    missing = await anonymous.get(path, params={"format": "wav"})
    assert missing.status_code == 422
    assert {e["field"] for e in missing.json()["detail"]} == {"expires", "signature"}

    opus = await acme.client.get("/v1/recordings/rec-1/audio-url", params={"format": "ogg"})
    assert (await anonymous.get(opus.json()["path"])).content == OGG


async def test_no_audio_of_another_tenant(desk: Desk) -> None:
    acme = await desk.api.tenant("Acme", "acme.example")
    other = await desk.api.tenant("Other", "other.example")
    await desk.recorded(acme.tenant_id, "call-1", "rec-1")
    for path in ("/v1/recordings/rec-1/audio", "/v1/recordings/rec-1/audio-url"):
        assert (await other.client.get(path)).status_code == 404
    # Other's own recording whose event names a file under acme's prefix is not served either.
    acme_wav = await desk.put(acme.tenant_id, "call-1", "rec-1", "wav", WAV)
    await desk.recorded(other.tenant_id, "call-9", "rec-9", ogg=False, location=acme_wav)
    leaked = await other.client.get("/v1/recordings/rec-9/audio")
    assert leaked.status_code == 404, leaked.text
    # A link made by other for its own recording, pointed at acme's: the signature covers the tenant.
    link = (await other.client.get("/v1/recordings/rec-9/audio-url")).json()["path"]
    moved = link.replace(f"/{other.tenant_id}/rec-9/", f"/{acme.tenant_id}/rec-1/")
    assert (await desk.api.client(None).get(moved)).status_code == 403


async def test_recordings_without_audio_say_why(desk: Desk) -> None:
    acme = await desk.api.tenant("Acme", "acme.example")
    tenant = acme.tenant_id
    common: dict[str, Any] = {"tenant_id": tenant, "occurred_at": START, "sequence": 0}
    await desk.ingest(
        RecordingStarted(
            **common,
            call_id="call-2",
            data=RecordingStartedData(recording_id="rec-2", format="wav", channels=2, sample_rate=8000),
        ),
        RecordingFailed(
            **common, call_id="call-3", data=RecordingFailedData(recording_id="rec-3", reason="no audio")
        ),
    )
    await desk.recorded(tenant, "call-4", "rec-4", ogg=False)
    await desk.recorded(tenant, "call-5", "rec-5", ogg=False)
    await desk.ingest(
        RecordingDeleted(
            **common,
            call_id="call-5",
            data=RecordingDeletedData(recording_id="rec-5", locations=[], reason="customer asked"),
        )
    )

    async def refusal(recording_id: str, **params: str) -> tuple[int, str]:
        response = await acme.client.get(f"/v1/recordings/{recording_id}/audio", params=params)
        return response.status_code, response.json()["detail"]

    assert await refusal("rec-2") == (409, "recording rec-2 is still being written; try when completed")
    assert await refusal("rec-3") == (409, "recording rec-3 failed and has no audio: no audio")
    code, detail = await refusal("rec-4", format="ogg")
    assert code == 404
    assert "has no Opus copy" in detail
    code, detail = await refusal("rec-5")
    assert code == 410
    assert detail.endswith("customer asked")
    assert (await refusal("nope"))[0] == 404
    minted = await acme.client.get("/v1/recordings/rec-4/audio-url", params={"format": "ogg"})
    assert minted.status_code == 404

    # The file went away behind the recorder's back.
    key = desk.store.key_of((await acme.client.get("/v1/recordings/rec-4")).json()["location"])
    assert key is not None
    await desk.store.delete(key)
    code, detail = await refusal("rec-4")
    assert code == 404
    assert "no longer in the store" in detail


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "s3://another-bucket/{tenant}/2026/03/14/call-1-rec-1.wav",
        "https://files.example/{tenant}/rec.wav",
    ],
)
async def test_locations_outside_this_apis_stores_are_never_read(
    location: str, database: Database, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"
    api = await harness(database, recordings_dir=recordings)
    try:
        acme = await api.tenant("Acme", "acme.example")
        desk = Desk(api, database, LocalStorage(recordings), tmp_path)
        await desk.recorded(
            acme.tenant_id, "call-1", "rec-1", ogg=False, location=location.format(tenant=acme.tenant_id)
        )
        refused = await acme.client.get("/v1/recordings/rec-1/audio")
        assert refused.status_code == 503
        assert "a store this api does not read" in refused.json()["detail"]
        # A path that climbs out of the recordings directory is outside it, however it starts.
        climbing = f"{(recordings / acme.tenant_id).as_uri()}/../../../../etc/passwd"
        await desk.recorded(acme.tenant_id, "call-2", "rec-2", ogg=False, location=climbing)
        assert (await acme.client.get("/v1/recordings/rec-2/audio")).status_code == 503
    finally:
        await api.close()


async def test_an_unreachable_store_is_503_and_links_need_the_secret_key(
    database: Database, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    api = await harness(database, **_s3_settings(nowhere))
    try:
        acme = await api.tenant("Acme", "acme.example")
        desk = Desk(api, database, LocalStorage(tmp_path), tmp_path)
        location = f"s3://{BUCKET}/{acme.tenant_id}/2026/03/14/call-1-rec-1.wav"
        await desk.recorded(acme.tenant_id, "call-1", "rec-1", ogg=False, location=location)
        response = await acme.client.get("/v1/recordings/rec-1/audio")
        assert response.status_code == 503
        assert response.json()["detail"].startswith("the recordings store did not answer")
    finally:
        await api.close()
    keyless = await harness(database, secret_key=None)
    try:
        client = keyless.client(acme.token)
        response = await client.get("/v1/recordings/rec-1/audio-url")
        assert (response.status_code, response.json()["detail"]) == (
            503,
            "signed links need a secret key: set ECHODESK_SECRET_KEY",
        )
    finally:
        await keyless.close()


def test_links_are_refused_with_another_key() -> None:
    from services.api.signed_urls import LinkRefused, verify

    link = RecordingLink("ten_a", "rec-1", "wav", 2_000_000_000)
    verify(link, sign(link, "key-1"), "key-1", datetime.now(UTC))
    with pytest.raises(LinkRefused, match="another secret key"):
        verify(link, sign(link, "key-2"), "key-1", datetime.now(UTC))
    with pytest.raises(LinkRefused, match="does not match"):
        verify(link, "é" * 43, "key-1", datetime.now(UTC))
