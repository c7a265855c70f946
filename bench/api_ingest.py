"""Call-log ingestion rate: events per second from JetStream into the database.

Publishes N events (whole calls: created, ringing, answered, dtmf, quality, ended) to CALL_EVENTS
on a nats-server of its own, then starts the api's call-log consumer (services/api/ingestion.py:
fetch, validate, fold into calls and the event store in one transaction per batch, ack) and times
it until every event is in the database. Once on SQLite (a file, WAL) and, when a server is
reachable, on PostgreSQL (a scratch database). Also prints this process's CPU per event.

    .venv/bin/python bench/api_ingest.py --events 30000

Target (issue 7): >= 2000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from services.api.db import Database, StoredEvent
from services.api.db.migrate import upgrade
from services.api.ingestion import EventIngestion
from shared import subjects
from shared.bus import Bus, Delivery
from shared.events import Event
from tests.support.call_events import EVENTS_PER_CALL, answered_call
from tests.support.nats import NatsServer

SERVER_URL = os.environ.get("ECHODESK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.asynccontextmanager
async def scratch_postgres() -> AsyncIterator[str | None]:
    """A PostgreSQL database of this run's own (dropped after), or None when no server answers."""
    base = SERVER_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    name = f"echodesk_bench_{secrets.token_hex(6)}"
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except (OSError, SQLAlchemyError) as exc:
        print(f"postgresql  skipped: no server at {SERVER_URL} ({type(exc).__name__})")
        await admin.dispose()
        yield None
        return
    try:
        yield base.rpartition("/")[0] + f"/{name}"
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def publish_calls(bus: Bus, events: int) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    pending = []
    for n in range(events // EVENTS_PER_CALL):
        for event in answered_call("tnt_bench", f"call-{n}", start + timedelta(seconds=n)):
            pending.append(
                await bus.js.publish_async(
                    subjects.event_subject(event),
                    event.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": str(event.id)},
                )
            )
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def run(url: str, database_url: str, label: str, total: int) -> None:
    db = Database(database_url)
    await upgrade(db)
    bus = await Bus.connect(url, name=f"bench-{label}", timeout=10)
    ingestion = EventIngestion(db)
    done = asyncio.Event()
    applied = 0
    sizes: list[int] = []

    async def counting(deliveries: Sequence[Delivery[Event]]) -> None:
        nonlocal applied
        await ingestion.ingest(deliveries)
        applied += len(deliveries)
        sizes.append(len(deliveries))
        if applied >= total:
            done.set()

    cpu0, t0 = time.process_time(), time.perf_counter()
    await bus.consume_event_batches(subjects.CALL_EVENTS, f"bench-{label}", counting)
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    async with db.sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(StoredEvent))
    print(
        f"{label:<11} {total} events in {elapsed:.2f} s: {total / elapsed:,.0f} events/s, "
        f"{cpu / total * 1e6:.0f} us CPU/event in this process ({stored} stored, {len(sizes)} batches)"
    )
    await bus.close()
    await db.dispose()


async def main(args: argparse.Namespace) -> None:
    total = args.events - args.events % EVENTS_PER_CALL
    # Figures taken on a busy machine are low: say how busy it was.
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(store_dir=Path(tmp) / "nats").start()
        try:
            bus = await Bus.connect(server.url, name="bench-publisher", timeout=10)
            await bus.ensure_streams()
            t0 = time.perf_counter()
            await publish_calls(bus, total)
            print(f"published {total} events in {time.perf_counter() - t0:.1f} s")
            await bus.close()
            if "sqlite" in args.backends:
                await run(server.url, f"sqlite+aiosqlite:///{tmp}/bench.db", "sqlite", total)
            if "postgresql" in args.backends:
                async with scratch_postgres() as url:
                    if url is not None:
                        await run(server.url, url, "postgresql", total)
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the event loop (the services run uvloop)",
    )
    arguments = parser.parse_args()
    if arguments.loop == "uvloop":
        import uvloop

        uvloop.install()
    asyncio.run(main(arguments))
