"""Call-log list latency with 1,000,000 calls in PostgreSQL, through the api (FastAPI, auth,
SQLAlchemy, keyset pagination), in process over ASGI.

Fills a scratch database's ``calls`` table by COPY: one large tenant (90 % of the rows, 200
agents, six months of calls) and ten small ones, then ANALYZE. Then it times ``GET /v1/calls``
as the large tenant, each shape of query many times: the first page, a page deep in the log
(a cursor at a random point), by agent, missed inbound calls (direction and status), by number,
one day's calls, and ``/v1/calls/stats?period=month``. Prints p50/p99 per shape, and the
statistics once more without their covering index (migration 0008) for the ratio.

    .venv/bin/python bench/api_call_list.py --rows 1000000 --requests 300

Target (issue 7): list p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from api_ingest import scratch_postgres
from sqlalchemy import text

from services.api import cursors
from services.api.app import create_app
from services.api.db import Database
from services.api.db.migrate import upgrade
from services.api.tenancy import create_tenant
from shared.settings import ApiSettings

COLUMNS = (
    "tenant_id",
    "id",
    "direction",
    "from_number",
    "to_number",
    "agent_id",
    "status",
    "status_sequence",
    "recorded",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "talk_time_s",
    "quality",
    "quality_sequence",
    "quality_final",
    "events",
    "updated_at",
)
OUTCOMES = [
    ("completed", 65),
    ("no-answer", 12),
    ("canceled", 10),
    ("busy", 5),
    ("failed", 3),
    ("in-progress", 5),
]
DIRECTIONS = [("inbound", 60), ("outbound", 35), ("internal", 5)]


def weighted(choices: list[tuple[str, int]], rng: random.Random) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def rows(tenant_id: str, count: int, now: datetime, rng: random.Random) -> list[tuple[Any, ...]]:
    numbers = [f"+9955{rng.randrange(10**7, 10**8)}" for _ in range(20000)]
    result = []
    for _ in range(count):
        started = now - timedelta(seconds=rng.uniform(0, 180 * 86400))
        status = weighted(OUTCOMES, rng)
        answered = status in ("completed", "in-progress")
        talk = rng.uniform(5, 600) if answered else 0.0
        ended = None if status == "in-progress" else started + timedelta(seconds=talk + rng.uniform(2, 30))
        result.append(
            (
                tenant_id,
                secrets.token_hex(10),
                weighted(DIRECTIONS, rng),
                rng.choice(numbers),
                rng.choice(numbers),
                f"agt_{rng.randrange(200):03d}",
                status,
                5,
                False,
                started,
                started + timedelta(seconds=3) if answered else None,
                ended,
                (ended - started).total_seconds() if ended else None,
                talk if ended else None,
                "[]",
                -1,
                False,
                6,
                now,
            )
        )
    return result


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def fill(db: Database, big_tenant: str, total: int) -> None:
    rng = random.Random(7)
    now = datetime.now(UTC)
    async with db.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        tenants = [(big_tenant, total * 9 // 10)] + [(f"tnt_small{n}", total // 100) for n in range(10)]
        for tenant_id, count in tenants:
            for start in range(0, count, 100_000):
                batch = rows(tenant_id, min(100_000, count - start), now, rng)
                await driver.copy_records_to_table("calls", records=batch, columns=list(COLUMNS))
        # What autovacuum does after a bulk load: statistics, and the visibility map that lets
        # the stats query read its covering index alone (an index-only scan).
        await driver.execute("VACUUM ANALYZE calls")


async def _times(client: httpx.AsyncClient, path: str, params: dict[str, Any], count: int) -> list[float]:
    await client.get(path, params=params)  # warm
    times = []
    for _ in range(count):
        t = time.perf_counter()
        response = await client.get(path, params=params)
        times.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, response.text
    return times


async def main(args: argparse.Namespace) -> None:
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    async with scratch_postgres() as url:
        if url is None:
            return
        db = Database(url)
        await upgrade(db)
        async with db.sessions() as session:
            tenant, token = await create_tenant(session, name="Big", sip_domain="big.example")
            await session.commit()
        t0 = time.perf_counter()
        await fill(db, tenant.id, args.rows)
        print(f"filled {args.rows} calls in {time.perf_counter() - t0:.0f} s")
        async with db.engine.connect() as connection:
            sample = (
                await connection.execute(
                    text(
                        "SELECT started_at, id, from_number FROM calls WHERE tenant_id = :t "
                        "ORDER BY random() LIMIT 500"
                    ),
                    {"t": tenant.id},
                )
            ).all()
        rng = random.Random(11)
        app = create_app(ApiSettings(database_url=url), db)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.bench",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:

            def deep() -> dict[str, Any]:
                at, call_id, _ = rng.choice(sample)
                return {"cursor": cursors.encode(at, call_id)}

            def one_day() -> dict[str, Any]:
                at = rng.choice(sample)[0]
                return {"since": (at - timedelta(days=1)).isoformat(), "until": at.isoformat()}

            shapes: list[tuple[str, str, Any]] = [
                ("first page", "/v1/calls", lambda: {}),
                ("deep page (cursor)", "/v1/calls", deep),
                ("by agent", "/v1/calls", lambda: {"agent_id": f"agt_{rng.randrange(200):03d}"}),
                ("missed inbound", "/v1/calls", lambda: {"direction": "inbound", "status": "no-answer"}),
                ("by number", "/v1/calls", lambda: {"number": rng.choice(sample)[2]}),
                ("one day", "/v1/calls", one_day),
                (
                    "deep page by agent",
                    "/v1/calls",
                    lambda: {**deep(), "agent_id": f"agt_{rng.randrange(200):03d}"},
                ),
                ("stats, month (reference)", "/v1/calls/stats", lambda: {"period": "month"}),
            ]
            for name, path, params in shapes:
                for _ in range(5):  # warm the caches and the connection pool
                    await client.get(path, params=params())
                times = []
                for _ in range(args.requests if "stats" not in name else max(20, args.requests // 10)):
                    query = params()
                    t = time.perf_counter()
                    response = await client.get(path, params=query)
                    times.append((time.perf_counter() - t) * 1000)
                    assert response.status_code == 200, response.text
                print(
                    f"{name:<26} p50 {percentile(times, 50):6.1f} ms  p99 {percentile(times, 99):6.1f} ms  "
                    f"({len(times)} requests, 50 rows a page)"
                )
            # The same statistics as before migration 0008 (no covering index), in this run, so the
            # ratio holds however loaded the machine is.
            stats = await _times(client, "/v1/calls/stats", {"period": "month"}, 20)
            async with db.engine.begin() as connection:
                await connection.execute(text("DROP INDEX ix_calls_tenant_id_started_at_outcome"))
            before = await _times(client, "/v1/calls/stats", {"period": "month"}, 20)
            with_index, without = percentile(stats, 50), percentile(before, 50)
            print(
                f"stats, month: p50 {with_index:.1f} ms with the covering index, "
                f"{without:.1f} ms without it ({without / with_index:.1f}x)"
            )
        await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
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
