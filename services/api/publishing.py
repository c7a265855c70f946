"""Trunks, agents and tenants' policies from the database to the NATS KV buckets the services watch.

The database is the truth; KV is a published copy that must never silently fall behind.

- Every row carries ``version`` (bumped by each ORM update) and ``kv_published_version``; a row
  whose two differ is *unpublished*. A change therefore marks itself in the same transaction that
  makes it, and survives a NATS outage or an api restart.
- A KV key to remove (a deleted row, an agent whose SIP username changed) is queued in
  ``kv_deletions`` in that same transaction (see ``db/outbox.py``).
- One publisher task per api process does the writing: woken at once after each change
  (:meth:`ConfigPublisher.kick`) and every ``kv_retry_interval_s`` otherwise; when NATS fails it
  backs off and tries again until it succeeds. It always publishes what the row holds *now*, then
  records the version it published, so a slow or stale writer can only leave a row unpublished
  (and so retried), never marked done with old data in KV.
- At start-up it publishes everything in full (writing only keys whose value differs) and removes
  the keys no row claims, so KV matches the database even after changes made while no api ran.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import nats.js.errors
from nats.js.kv import KeyValue
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.db import Agent, Database, KvDeletion, Tenant, Trunk
from shared import subjects
from shared.bus import Bus
from shared.logging import get_logger
from shared.records import AgentRecord, TenantRecord, TrunkRecord, tenant_key, trunk_key

log = get_logger("echodesk.api.publishing")

UNPUBLISHED_ROWS = Gauge(
    "echodesk_api_kv_unpublished", "Trunk and agent changes (and deletions) not yet in NATS KV"
)
KV_WRITES = Counter(
    "echodesk_api_kv_writes_total", "Writes to NATS KV by the api", ["bucket", "op", "outcome"]
)

#: Rows published per round trip to the database.
BATCH = 200
MAX_BACKOFF_S = 60.0

#: (KV key, encoded record, row id, row version) of one row to publish.
_Row = tuple[str, bytes, str, int]


def trunk_record(trunk: Trunk) -> TrunkRecord:
    return TrunkRecord(
        tenant_id=trunk.tenant_id,
        trunk_id=trunk.id,
        name=trunk.name,
        sip_server=trunk.sip_server,
        sip_port=trunk.sip_port,
        transport=trunk.transport,
        username=trunk.username,
        auth_username=trunk.auth_username,
        password_sealed=trunk.password_sealed,
        realm=trunk.realm,
        domain=trunk.domain,
        registers=trunk.registers,
        expires_s=trunk.expires_s,
        keepalive_s=trunk.keepalive_s,
        is_active=trunk.is_active,
        is_default=trunk.is_default,
        default_region=trunk.default_region,
        dids=tuple(trunk.dids),
        allowed_prefixes=tuple(trunk.allowed_prefixes),
        max_concurrent_calls=trunk.max_concurrent_calls,
        outbound_proxy=trunk.outbound_proxy,
        websocket_path=trunk.websocket_path,
    )


def agent_record(agent: Agent, domain: str) -> AgentRecord:
    """A disabled agent is published with ``enabled`` false: signaling then refuses its
    registrations and drops its bindings (services/signaling/directory.py)."""
    return AgentRecord(
        tenant_id=agent.tenant_id,
        agent_id=agent.id,
        extension=agent.extension,
        sip_username=agent.sip_username,
        domain=domain.lower(),
        ha1_md5=agent.ha1_md5,
        ha1_sha256=agent.ha1_sha256,
        display_name=agent.display_name,
        ring_groups=tuple(agent.ring_groups),
        enabled=agent.enabled,
        max_concurrent_calls=agent.max_concurrent_calls,
    )


def tenant_record(tenant: Tenant) -> TenantRecord:
    return TenantRecord(
        tenant_id=tenant.id,
        record_calls=tenant.record_calls,
        recording_retention_days=tenant.recording_retention_days,
    )


def _encode(record: TrunkRecord | AgentRecord | TenantRecord) -> bytes:
    # Unset optional fields are left out, so a reader built before a field was added still reads it.
    return record.model_dump_json(exclude_none=True).encode()


def _unpublished(model: type[Trunk] | type[Agent] | type[Tenant]) -> Any:
    return or_(model.kv_published_version.is_(None), model.kv_published_version != model.version)


class ConfigPublisher:
    def __init__(self, db: Database, bus: Bus, *, retry_interval_s: float = 5.0) -> None:
        self.db = db
        self.bus = bus
        self.retry_interval_s = retry_interval_s
        #: Set once everything was published in full after start-up.
        self.synced = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        #: Rows whose record does not validate, reported once each.
        self._unpublishable: set[str] = set()

    # --- lifecycle -------------------------------------------------------------------------------

    def kick(self) -> None:
        """Something changed: publish now rather than at the next interval."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kv-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def settle(self, timeout: float) -> bool:
        """Wait until nothing is left to publish (tests, and draining before exit)."""
        try:
            async with asyncio.timeout(timeout):
                while not self.synced.is_set() or await self.pending() > 0:
                    self.kick()
                    await asyncio.sleep(0.05)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        delay = self.retry_interval_s
        while True:
            self._wake.clear()
            try:
                if not self.synced.is_set():
                    await self.publish_all()
                else:
                    await self.publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failures += 1
                delay = min(self.retry_interval_s * 2 ** min(self._failures - 1, 6), MAX_BACKOFF_S)
                if self._failures == 1 or self._failures % 10 == 0:
                    log.warning(
                        "cannot publish configuration to NATS KV; will retry",
                        error=str(exc) or type(exc).__name__,
                        attempts=self._failures,
                        retry_in_s=delay,
                    )
            else:
                if self._failures:
                    log.info("configuration published to NATS KV again", after_attempts=self._failures)
                self._failures = 0
                delay = self.retry_interval_s
            with contextlib.suppress(Exception):
                UNPUBLISHED_ROWS.set(await self.pending())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    # --- what is left ------------------------------------------------------------------------------

    async def pending(self) -> int:
        async with self.db.sessions() as session:
            counts = [
                await session.scalar(select(func.count()).select_from(Trunk).where(_unpublished(Trunk))),
                await session.scalar(select(func.count()).select_from(Agent).where(_unpublished(Agent))),
                await session.scalar(select(func.count()).select_from(Tenant).where(_unpublished(Tenant))),
                await session.scalar(select(func.count()).select_from(KvDeletion)),
            ]
        return sum(count or 0 for count in counts)

    # --- incremental -------------------------------------------------------------------------------

    async def publish_pending(self) -> None:
        """Publish every unpublished row and queued deletion once; raise on a KV failure.

        Keyset pages (by id) make one pass visit each row once, so a row that cannot be published
        (see :meth:`_encoded`) is skipped rather than fetched again and again.
        """
        trunks_kv = await self.bus.bucket(subjects.TRUNKS_KV)
        agents_kv = await self.bus.bucket(subjects.AGENTS_KV)
        tenants_kv = await self.bus.bucket(subjects.TENANTS_KV)
        buckets = {
            subjects.TRUNKS_KV.name: trunks_kv,
            subjects.AGENTS_KV.name: agents_kv,
            subjects.TENANTS_KV.name: tenants_kv,
        }
        last_deletion = 0
        while True:
            async with self.db.sessions() as session:
                deletions = (
                    await session.scalars(
                        select(KvDeletion)
                        .where(KvDeletion.id > last_deletion)
                        .order_by(KvDeletion.id)
                        .limit(BATCH)
                    )
                ).all()
            for deletion in deletions:
                kv = buckets.get(deletion.bucket)
                if kv is not None:
                    await self._retire(kv, deletion.bucket, deletion.key)
                async with self.db.sessions() as session:
                    await session.execute(delete(KvDeletion).where(KvDeletion.id == deletion.id))
                    await session.commit()
                last_deletion = deletion.id
            if len(deletions) < BATCH:
                break
        after = ""
        while True:
            async with self.db.sessions() as session:
                trunks = (
                    await session.scalars(
                        select(Trunk)
                        .where(_unpublished(Trunk), Trunk.id > after)
                        .order_by(Trunk.id)
                        .limit(BATCH)
                    )
                ).all()
            rows = [self._encoded(t.id, partial(_trunk_row, t)) for t in trunks]
            await self._put_rows(trunks_kv, subjects.TRUNKS_KV.name, Trunk.__table__, _present(rows))
            if len(trunks) < BATCH:
                break
            after = trunks[-1].id
        after = ""
        while True:
            async with self.db.sessions() as session:
                agents = (
                    await session.execute(
                        select(Agent, Tenant.sip_domain)
                        .join(Tenant, Agent.tenant_id == Tenant.id)
                        .where(_unpublished(Agent), Agent.id > after)
                        .order_by(Agent.id)
                        .limit(BATCH)
                    )
                ).all()
            rows = [self._encoded(a.id, partial(_agent_row, a, d)) for a, d in agents]
            await self._put_rows(agents_kv, subjects.AGENTS_KV.name, Agent.__table__, _present(rows))
            if len(agents) < BATCH:
                break
            after = agents[-1][0].id
        after = ""
        while True:
            async with self.db.sessions() as session:
                tenants = (
                    await session.scalars(
                        select(Tenant)
                        .where(_unpublished(Tenant), Tenant.id > after)
                        .order_by(Tenant.id)
                        .limit(BATCH)
                    )
                ).all()
            rows = [self._encoded(t.id, partial(_tenant_row, t)) for t in tenants]
            await self._put_rows(tenants_kv, subjects.TENANTS_KV.name, Tenant.__table__, _present(rows))
            if len(tenants) < BATCH:
                break
            after = tenants[-1].id

    def _encoded(self, row_id: str, build: Callable[[], _Row]) -> _Row | None:
        """The row as a KV record, or None (logged once) when the record would not validate: a row
        written by hand, or by an older version, must not hold up every other row."""
        try:
            row = build()
        except ValidationError as exc:
            if row_id not in self._unpublishable:
                self._unpublishable.add(row_id)
                log.error(
                    "row cannot be published: its KV record does not validate",
                    row=row_id,
                    error=str(exc).replace("\n", " ")[:300],
                )
            return None
        self._unpublishable.discard(row_id)
        return row

    async def _put_rows(self, kv: KeyValue, bucket: str, table: Any, rows: Sequence[_Row]) -> None:
        done: list[tuple[str, int]] = []
        try:
            for key, value, row_id, version in rows:
                await self._put(kv, bucket, key, value)
                done.append((row_id, version))
        finally:
            if done:
                async with self.db.sessions() as session:
                    await _mark_published(session, table, done)
                    await session.commit()

    async def _put(self, kv: KeyValue, bucket: str, key: str, value: bytes) -> None:
        try:
            await kv.put(key, value)
        except Exception:
            KV_WRITES.labels(bucket, "put", "error").inc()
            raise
        KV_WRITES.labels(bucket, "put", "ok").inc()

    async def _retire(self, kv: KeyValue, bucket: str, key: str) -> None:
        """Delete ``key`` unless a row claims it again (an agent re-created with the same username),
        and if one claimed it meanwhile, have that row published again."""
        if await self._claimed(bucket, key, republish=False):
            return
        try:
            await kv.delete(key)
        except Exception:
            KV_WRITES.labels(bucket, "delete", "error").inc()
            raise
        KV_WRITES.labels(bucket, "delete", "ok").inc()
        await self._claimed(bucket, key, republish=True)

    async def _claimed(self, bucket: str, key: str, *, republish: bool) -> bool:
        model: type[Trunk] | type[Agent] | type[Tenant]
        async with self.db.sessions() as session:
            if bucket == subjects.AGENTS_KV.name:
                model = Agent
                row_id = await session.scalar(select(Agent.id).where(Agent.kv_key == key))
            elif bucket == subjects.TENANTS_KV.name:
                model = Tenant
                row_id = await session.scalar(select(Tenant.id).where(Tenant.id == key))
            else:
                model = Trunk
                tenant_id, _, trunk_id = key.partition("/")
                row_id = await session.scalar(
                    select(Trunk.id).where(Trunk.id == trunk_id, Trunk.tenant_id == tenant_id)
                )
            if row_id is not None and republish:
                table: Table = model.__table__  # type: ignore[assignment]
                await session.execute(
                    update(table)
                    .where(table.c.id == row_id)
                    .values(kv_published_version=None, **_same(table))
                )
                await session.commit()
        return row_id is not None

    # --- in full -----------------------------------------------------------------------------------

    async def publish_all(self) -> None:
        """Make both buckets match the database: put what differs, delete what no row claims."""
        async with self.db.sessions() as session:
            deletion_ids = (await session.scalars(select(KvDeletion.id))).all()
            trunks = (await session.scalars(select(Trunk))).all()
            agents = (
                await session.execute(
                    select(Agent, Tenant.sip_domain).join(Tenant, Agent.tenant_id == Tenant.id)
                )
            ).all()
            tenants = (await session.scalars(select(Tenant))).all()
        counts = {}
        for spec, table, claimed, rows in (
            (
                subjects.TRUNKS_KV,
                Trunk.__table__,
                {trunk_key(t.tenant_id, t.id) for t in trunks},
                _present([self._encoded(t.id, partial(_trunk_row, t)) for t in trunks]),
            ),
            (
                subjects.AGENTS_KV,
                Agent.__table__,
                {a.kv_key for a, _ in agents},
                _present([self._encoded(a.id, partial(_agent_row, a, d)) for a, d in agents]),
            ),
            (
                subjects.TENANTS_KV,
                Tenant.__table__,
                {tenant_key(t.id) for t in tenants},
                _present([self._encoded(t.id, partial(_tenant_row, t)) for t in tenants]),
            ),
        ):
            kv = await self.bus.bucket(spec)
            current = await bucket_contents(self.bus, spec)
            changed = [row for row in rows if current.get(row[0]) != row[1]]
            for key, value, _, _ in changed:
                await self._put(kv, spec.name, key, value)
            async with self.db.sessions() as session:
                await _mark_published(session, table, [(row_id, version) for _, _, row_id, version in rows])
                await session.commit()
            # A row that cannot be published still claims its key: its last good record stays.
            stale = sorted(set(current) - claimed)
            for key in stale:
                await self._retire(kv, spec.name, key)
            counts[spec.name] = {"rows": len(rows), "written": len(changed), "removed": len(stale)}
        if deletion_ids:
            # Exactly the ones read before the snapshot: a deletion queued since is handled next.
            async with self.db.sessions() as session:
                await session.execute(delete(KvDeletion).where(KvDeletion.id.in_(deletion_ids)))
                await session.commit()
        self.synced.set()
        log.info("configuration published to NATS KV in full", **counts)


def _present(rows: Sequence[_Row | None]) -> list[_Row]:
    return [row for row in rows if row is not None]


def _trunk_row(trunk: Trunk) -> _Row:
    return trunk_key(trunk.tenant_id, trunk.id), _encode(trunk_record(trunk)), trunk.id, trunk.version


def _agent_row(agent: Agent, domain: str) -> _Row:
    return agent.kv_key, _encode(agent_record(agent, domain)), agent.id, agent.version


def _tenant_row(tenant: Tenant) -> _Row:
    return tenant_key(tenant.id), _encode(tenant_record(tenant)), tenant.id, tenant.version


def _same(table: Any) -> dict[str, Any]:
    """``updated_at`` set to itself where a table has one: being published is not a change of the
    trunk or agent (without it, the column's ``onupdate`` would move it)."""
    return {"updated_at": table.c.updated_at} if "updated_at" in table.c else {}


async def _mark_published(session: AsyncSession, table: Any, rows: Sequence[tuple[str, int]]) -> None:
    """Record the version each row had when it was read for publishing. A row changed since then
    keeps a newer ``version`` than this, so it stays unpublished and goes out again."""
    if not rows:
        return
    statement = (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(kv_published_version=bindparam("published"), **_same(table))
    )
    await session.execute(statement, [{"row_id": row_id, "published": version} for row_id, version in rows])


async def bucket_contents(bus: Bus, spec: subjects.BucketSpec, *, parallel: int = 64) -> dict[str, bytes]:
    """Every live key of a bucket with its value.

    The keys come from the bucket's stream (its subjects), not from a watcher: nats-py's watcher
    can signal "no more values" before values already on their way arrive, which would make a key
    look absent. Deleted keys keep a subject (their delete marker) and are left out.
    """
    kv = await bus.bucket(spec)
    info = await bus.js.stream_info(f"KV_{spec.name}", subjects_filter=f"$KV.{spec.name}.>")
    prefix = f"$KV.{spec.name}."
    keys = [subject[len(prefix) :] for subject in (info.state.subjects or {})]

    async def value(key: str) -> tuple[str, bytes | None]:
        try:
            entry = await kv.get(key)
        except nats.js.errors.NotFoundError:
            return key, None
        return key, entry.value or b""

    values: dict[str, bytes] = {}
    for start in range(0, len(keys), parallel):
        for key, found in await asyncio.gather(*(value(k) for k in keys[start : start + parallel])):
            if found is not None:
                values[key] = found
    return values
