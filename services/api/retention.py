"""Retention of what the api keeps about the past: events (the calls' timelines, and the points a
live stream can resume from) and finished webhook deliveries (their log), per tenant.

A tenant's own choice (``data_retention``, set through ``/v1/tenant/data-retention``) wins over the
platform's settings (``ECHODESK_API_EVENT_RETENTION_DAYS``, ``..._WEBHOOK_DELIVERY_RETENTION_DAYS``);
0 keeps forever. A delivery still pending is never removed, however old: it is work, not history.
Text messages (their rows, with what was written) go with the events: they are the same history.
The call log's rows (one per call) and recordings' metadata stay; recordings themselves follow the
recording policy (the recorder deletes them).

Rows go in batches of :data:`BATCH` by the (tenant, time) indexes, a transaction each, so a sweep
never holds a long lock nor a long transaction; several api instances sweeping at once only
delete the same rows once.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from services.api.db import Database, DataRetention, Message, StoredEvent, Tenant, WebhookDelivery
from services.api.db.base import utcnow
from services.api.db.webhooks import DeliveryStatus
from shared.logging import get_logger
from shared.settings import ApiSettings

log = get_logger("echodesk.api.retention")

#: Rows deleted per transaction.
BATCH = 5000


@dataclass(frozen=True)
class RetentionDays:
    """Days kept; 0: forever."""

    events: int
    deliveries: int


def effective(row: DataRetention | None, settings: ApiSettings) -> RetentionDays:
    events = row.event_days if row is not None and row.event_days is not None else None
    deliveries = row.delivery_days if row is not None and row.delivery_days is not None else None
    return RetentionDays(
        events=settings.event_retention_days if events is None else events,
        deliveries=settings.webhook_delivery_retention_days if deliveries is None else deliveries,
    )


@dataclass
class Swept:
    """What one sweep removed, per tenant."""

    events: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)


async def _delete_batches(db: Database, table: Any, condition: Any) -> int:
    removed = 0
    while True:
        async with db.sessions() as session:
            ids = select(table.id).where(*condition).limit(BATCH).scalar_subquery()
            result = await session.execute(delete(table).where(table.id.in_(ids)))
            await session.commit()
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        removed += count
        if count < BATCH:
            return removed


async def _delete_messages(db: Database, tenant_id: str, cutoff: datetime) -> int:
    """A tenant's messages accepted before ``cutoff``, in batches (ids are unique within a tenant)."""
    removed = 0
    while True:
        async with db.sessions() as session:
            ids = (
                select(Message.id)
                .where(Message.tenant_id == tenant_id, Message.accepted_at < cutoff)
                .limit(BATCH)
                .scalar_subquery()
            )
            result = await session.execute(
                delete(Message).where(Message.tenant_id == tenant_id, Message.id.in_(ids))
            )
            await session.commit()
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        removed += count
        if count < BATCH:
            return removed


async def sweep(db: Database, settings: ApiSettings, now: datetime | None = None) -> Swept:
    """Remove every tenant's events and finished deliveries older than its retention."""
    now = now or utcnow()
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(Tenant.id, DataRetention).outerjoin(
                    DataRetention, DataRetention.tenant_id == Tenant.id
                )
            )
        ).all()
    swept = Swept()
    for tenant_id, row in rows:
        days = effective(row, settings)
        if days.events:
            cutoff = now - timedelta(days=days.events)
            removed = await _delete_batches(
                db, StoredEvent, (StoredEvent.tenant_id == tenant_id, StoredEvent.occurred_at < cutoff)
            )
            if removed:
                swept.events[tenant_id] = removed
            removed = await _delete_messages(db, tenant_id, cutoff)
            if removed:
                swept.messages[tenant_id] = removed
        if days.deliveries:
            cutoff = now - timedelta(days=days.deliveries)
            removed = await _delete_batches(
                db,
                WebhookDelivery,
                (
                    WebhookDelivery.tenant_id == tenant_id,
                    WebhookDelivery.created_at < cutoff,
                    WebhookDelivery.status != DeliveryStatus.PENDING.value,
                ),
            )
            if removed:
                swept.deliveries[tenant_id] = removed
    return swept


class RetentionSweeper:
    """Sweeps every ``retention_interval_s`` while the api runs (the first time soon after start)."""

    def __init__(self, db: Database, settings: ApiSettings) -> None:
        self.db = db
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        await asyncio.sleep(min(60.0, self.settings.retention_interval_s))
        while True:
            try:
                swept = await sweep(self.db, self.settings)
                if swept.events or swept.deliveries or swept.messages:
                    log.info(
                        "retention sweep",
                        events=sum(swept.events.values()),
                        messages=sum(swept.messages.values()),
                        deliveries=sum(swept.deliveries.values()),
                        tenants=len(swept.events.keys() | swept.deliveries.keys() | swept.messages.keys()),
                    )
            except Exception as exc:  # the database is away: the next sweep catches up
                log.warning("retention sweep failed", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(self.settings.retention_interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


__all__ = ["BATCH", "RetentionDays", "RetentionSweeper", "Swept", "effective", "sweep"]
