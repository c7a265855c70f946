"""Event-to-webhook latency: from publishing an event on JetStream to its signed POST arriving at
the receiver.

A nats-server of its own, the api's database (SQLite file by default), one tenant with one
subscription to every event, the call-log consumer and the webhook dispatcher as the api runs them
(its own durable consumers, the deliveries outbox, the worker), and a plain HTTP/1.1 receiver on
loopback. Events (whole calls) are published at a steady rate; for each the time from just before
publishing to the receiver having read the request is taken. Prints p50/p95/p99/max.

    .venv/bin/python bench/api_webhook_latency.py --events 3000 --rate 200

Target (issue 7): p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_ingest import scratch_postgres
from sqlalchemy import func, select

from services.api.db import Database, WebhookDelivery, WebhookSubscription
from services.api.db.migrate import upgrade
from services.api.ingestion import EventIngestion
from services.api.tenancy import create_tenant
from services.api.webhooks import WebhookDispatcher, WebhookPolicy
from shared.bus import Bus
from shared.sealing import seal
from tests.support.call_events import EVENTS_PER_CALL, answered_call
from tests.support.http_receiver import HttpReceiver
from tests.support.nats import NatsServer

SECRET_KEY = "bench-secret-key"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> None:
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if args.backend == "postgresql":
        async with scratch_postgres() as url:
            if url is not None:
                await measure(args, url)
    else:
        await measure(args, None)


async def measure(args: argparse.Namespace, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(store_dir=Path(tmp) / "nats").start()
        receiver = await HttpReceiver().start()
        db = Database(database_url or f"sqlite+aiosqlite:///{tmp}/bench.db")
        try:
            await upgrade(db)
            async with db.sessions() as session:
                tenant, _ = await create_tenant(session, name="Bench", sip_domain="bench.example")
                session.add(
                    WebhookSubscription(
                        tenant_id=tenant.id,
                        url=receiver.url,
                        event_types=[],
                        secret_sealed=seal("whsec_bench-secret-0123456789", SECRET_KEY),
                        status="active",
                        consecutive_failures=0,
                    )
                )
                await session.commit()
            bus = await Bus.connect(server.url, name="bench", timeout=10)
            await bus.ensure_streams()
            if not args.without_call_log:
                await EventIngestion(db).start(bus)
            dispatcher = WebhookDispatcher(db, SECRET_KEY, WebhookPolicy(allow_private_targets=True))
            await dispatcher.start(bus)

            # As the services do once started (shared/service.py): what start-up made is frozen, so
            # the collector's full passes walk only what was made since.
            gc.collect()
            gc.freeze()
            total = args.events - args.events % EVENTS_PER_CALL
            cpu0 = time.process_time()
            published: dict[str, float] = {}
            interval = 1 / args.rate
            next_at = time.perf_counter()
            for n in range(total // EVENTS_PER_CALL):
                for event in answered_call(tenant.id, f"call-{n}", datetime.now(UTC)):
                    next_at += interval
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    published[str(event.id)] = time.time()
                    await bus.publish_event(event)
            await receiver.wait_for(total, timeout=120)
            cpu_ms = (time.process_time() - cpu0) * 1000 / total
            latencies = [
                (r.at - published[r.headers["echodesk-event-id"]]) * 1000 for r in receiver.requests[:total]
            ]
            print(
                f"{total} events at {args.rate}/s to one subscription "
                f"({'without' if args.without_call_log else 'with'} the call log on the same database, "
                f"{db.dialect}): latency p50 {percentile(latencies, 50):.1f} ms, "
                f"p95 {percentile(latencies, 95):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
                f"max {max(latencies):.1f} ms; {cpu_ms:.2f} ms CPU per event in this one process "
                "(publisher, consumers, dispatcher and receiver together)"
            )
            await dispatcher.stop()
            await bus.close()
            async with db.sessions() as session:
                attempts = await session.scalar(select(func.sum(WebhookDelivery.attempts)))
                errors = (
                    await session.execute(
                        select(WebhookDelivery.last_error, func.count())
                        .where(WebhookDelivery.attempts > 1)
                        .group_by(WebhookDelivery.last_error)
                    )
                ).all()
            print(f"attempts: {attempts} for {total} deliveries; retried after: {errors or 'none'}")
        finally:
            await receiver.stop()
            await db.dispose()
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=200, help="events published per second")
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="a SQLite file of its own, or a scratch database on the local PostgreSQL",
    )
    parser.add_argument("--without-call-log", action="store_true")
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
