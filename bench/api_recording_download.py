"""Recording downloads through the api: what an audio player seeking in a long call asks for.

A 30-minute stereo WAV (8 kHz, 16-bit: 57.6 MB) is stored by the recorder's own store classes in a
local directory and in S3 (moto's server on loopback), announced as ``recording.completed``, and
fetched through the api in process over ASGI (auth, database, Range): 64 KiB ranges at random
offsets, as a player seeks, and once the whole file. Prints p50/p99 per store, and the S3 ranges
once more with a fresh S3 client per request (what the api did before one client was shared), for
the ratio within this run.

    .venv/bin/python bench/api_recording_download.py --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from aiobotocore.session import get_session

from services.api.app import create_app
from services.api.db import Database
from services.api.db.migrate import upgrade
from services.api.ingestion import EventIngestion
from services.api.recording_stores import RecordingStores
from services.api.tenancy import create_tenant
from shared import subjects
from shared.bus import Delivery
from shared.events import Event, RecordingCompleted, RecordingCompletedData
from shared.recording_store import LocalStorage, S3Config, S3Storage, Storage, object_key
from shared.settings import ApiSettings
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

BUCKET = "bench-recordings"
SIZE = 30 * 60 * 8000 * 2 * 2 + 44
RANGE = 64 * 1024


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def announce(db: Database, tenant_id: str, recording_id: str, location: str, sha256: str) -> None:
    event = RecordingCompleted(
        tenant_id=tenant_id,
        call_id=f"call-{recording_id}",
        sequence=0,
        data=RecordingCompletedData(
            recording_id=recording_id,
            location=location,
            format="wav",
            channels=2,
            sample_rate=8000,
            duration_s=1800,
            size_bytes=SIZE,
            sha256=sha256,
        ),
    )
    delivery: Delivery[Event] = Delivery(
        event, subjects.event_subject(event), 1, stream_sequence=1, stored_at=datetime.now(UTC)
    )
    await EventIngestion(db).ingest([delivery])


async def timed(client: httpx.AsyncClient, path: str, requests: int, rng: random.Random) -> list[float]:
    times = []
    for _ in range(requests):
        start = rng.randrange(0, SIZE - RANGE)
        t = time.perf_counter()
        response = await client.get(path, headers={"Range": f"bytes={start}-{start + RANGE - 1}"})
        times.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 206, response.status_code
        assert len(response.content) == RANGE
    return times


async def main(args: argparse.Namespace) -> None:
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    moto = MotoServer().start()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            audio = os.urandom(SIZE)
            source = root / "call.wav"
            source.write_bytes(audio)
            sha256 = hashlib.sha256(audio).hexdigest()
            async with get_session().create_client(
                "s3",
                endpoint_url=moto.url,
                region_name=REGION,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
            ) as s3:
                await s3.create_bucket(Bucket=BUCKET)
            settings = ApiSettings(
                database_url=f"sqlite+aiosqlite:///{root / 'api.db'}",
                recordings_dir=root / "recordings",
                s3_bucket=BUCKET,
                s3_endpoint_url=moto.url,
                s3_region=REGION,
                s3_access_key_id=ACCESS_KEY,
                s3_secret_access_key=SECRET_KEY,
            )
            db = Database(settings.database_url)
            await upgrade(db)
            async with db.sessions() as session:
                tenant, token = await create_tenant(session, name="Bench", sip_domain="bench.example")
                await session.commit()
            s3_config = S3Config(BUCKET, moto.url, REGION, ACCESS_KEY, SECRET_KEY)
            stores: dict[str, Storage] = {
                "local": LocalStorage(settings.recordings_dir),
                "s3": S3Storage(s3_config),
            }
            for name, store in stores.items():
                key = object_key(tenant.id, time.time(), f"call-{name}", name, "wav")
                await announce(db, tenant.id, name, await store.put(source, key, "audio/wav"), sha256)
                await store.close()

            app = create_app(settings, db)
            rng = random.Random(5)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://api.bench",
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                for name in stores:
                    path = f"/v1/recordings/{name}/audio"
                    await timed(client, path, 5, rng)  # warm
                    times = await timed(client, path, args.requests, rng)
                    t = time.perf_counter()
                    whole = await client.get(path)
                    whole_ms = (time.perf_counter() - t) * 1000
                    assert whole.content == audio
                    print(
                        f"{name:<6} 64 KiB range p50 {percentile(times, 50):6.1f} ms  "
                        f"p99 {percentile(times, 99):6.1f} ms  ({len(times)} requests); "
                        f"whole 57.6 MB file {whole_ms:.0f} ms"
                    )
                shared = await timed(client, "/v1/recordings/s3/audio", 20, rng)
                await app.state.recording_stores.close()

                # Before: a store (and so an S3 client) made for each request.
                fresh: list[float] = []
                for _ in range(20):
                    app.state.recording_stores = RecordingStores(settings)
                    fresh += await timed(client, "/v1/recordings/s3/audio", 1, rng)
                    await app.state.recording_stores.close()
                print(
                    f"s3 ranges: p50 {percentile(shared, 50):.1f} ms with one client, "
                    f"{percentile(fresh, 50):.1f} ms with a client per request "
                    f"({percentile(fresh, 50) / percentile(shared, 50):.1f}x)"
                )
            await db.dispose()
    finally:
        moto.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
