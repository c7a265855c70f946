"""Retention of events and webhook delivery logs: each tenant's own choice or the platform's, the
sweep deleting only what is older (never a pending delivery, never another tenant's rows), and the
422s of ``/v1/tenant/data-retention``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.api import retention
from services.api.db import Database, StoredEvent, WebhookDelivery
from services.api.db.webhooks import DeliveryStatus
from services.api.ingestion import EventIngestion
from services.api.retention import sweep
from shared import subjects
from shared.bus import Delivery
from shared.events import Event
from tests.api.conftest import ApiHarness, Tenancy, harness
from tests.support.call_events import EVENTS_PER_CALL, answered_call

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


async def _calls(db: Database, tenant_id: str) -> None:
    """A call 100 days old and one a day old, as the consumer takes them in."""
    events = [
        *answered_call(tenant_id, "old", NOW - timedelta(days=100)),
        *answered_call(tenant_id, "new", NOW - timedelta(days=1)),
    ]
    await EventIngestion(db).ingest(
        [
            Delivery[Event](e, subjects.event_subject(e), 1, stream_sequence=n, stored_at=NOW)
            for n, e in enumerate(events)
        ]
    )


async def _deliveries(api: ApiHarness, tenant: Tenancy) -> None:
    """Deliveries of a subscription: old ones delivered, failed and still pending, and a new one."""
    sub = (await tenant.client.post("/v1/webhooks", json={"url": "https://hooks.example/in"})).json()
    async with api.db.sessions() as session:
        for n, (status, age) in enumerate(
            [
                (DeliveryStatus.DELIVERED, 40),
                (DeliveryStatus.FAILED, 40),
                (DeliveryStatus.PENDING, 40),
                (DeliveryStatus.DELIVERED, 2),
            ]
        ):
            session.add(
                WebhookDelivery(
                    tenant_id=tenant.tenant_id,
                    subscription_id=sub["id"],
                    event_id=f"00000000-0000-4000-8000-00000000000{n}",
                    event_type="call.ended",
                    payload="{}",
                    status=status.value,
                    created_at=NOW - timedelta(days=age),
                )
            )
        await session.commit()


async def _left(db: Database, tenant_id: str) -> tuple[dict[str, int], list[str]]:
    async with db.sessions() as session:
        events = dict(
            (
                await session.execute(
                    select(StoredEvent.call_id, func.count())
                    .where(StoredEvent.tenant_id == tenant_id)
                    .group_by(StoredEvent.call_id)
                )
            ).all()
        )
        deliveries = sorted(
            await session.scalars(
                select(WebhookDelivery.status).where(WebhookDelivery.tenant_id == tenant_id)
            )
        )
    return {str(k): v for k, v in events.items()}, deliveries


async def test_each_tenant_keeps_what_it_chose(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "BATCH", 4)  # several batches per tenant
    api = await harness(database, event_retention_days=0, webhook_delivery_retention_days=30)
    try:
        acme = await api.tenant("Acme", "acme.example")
        other = await api.tenant("Other", "other.example")
        for tenant in (acme, other):
            await _calls(database, tenant.tenant_id)
            await _deliveries(api, tenant)

        default = await other.client.get("/v1/tenant/data-retention")
        assert default.json() == {
            "event_days": None,
            "delivery_days": None,
            "effective_event_days": 0,
            "effective_delivery_days": 30,
        }
        chosen = await acme.client.patch(
            "/v1/tenant/data-retention", json={"event_days": 30, "delivery_days": 0}
        )
        assert chosen.status_code == 200, chosen.text
        assert chosen.json()["effective_event_days"] == 30
        assert chosen.json()["effective_delivery_days"] == 0

        swept = await sweep(database, api.settings, NOW)
        assert swept.events == {acme.tenant_id: EVENTS_PER_CALL}
        assert swept.deliveries == {other.tenant_id: 2}

        # Acme: the old call's timeline is gone, its row stays; every delivery kept (0: forever).
        assert await _left(database, acme.tenant_id) == (
            {"new": EVENTS_PER_CALL},
            ["delivered", "delivered", "failed", "pending"],
        )
        old = (await acme.client.get("/v1/calls/old")).json()
        assert (old["status"], old["timeline"]) == ("completed", [])
        # Other: the platform's settings: events forever, finished deliveries 30 days, pending kept.
        assert await _left(database, other.tenant_id) == (
            {"old": EVENTS_PER_CALL, "new": EVENTS_PER_CALL},
            ["delivered", "pending"],
        )
        # Back to the platform's setting with null; a second sweep finds nothing more.
        back = await acme.client.patch("/v1/tenant/data-retention", json={"event_days": None})
        assert back.json()["event_days"] is None
        assert back.json()["delivery_days"] == 0
        again = await sweep(database, api.settings, NOW)
        assert (again.events, again.deliveries) == ({}, {})
    finally:
        await api.close()


async def test_bad_values_are_422_naming_the_field_and_changes_need_an_admin(acme: Tenancy) -> None:
    for body, field in (
        ({"event_days": -1}, "event_days"),
        ({"delivery_days": 100000}, "delivery_days"),
        ({"event_days": "a month"}, "event_days"),
        ({"keep": 3}, "keep"),
    ):
        refused = await acme.client.patch("/v1/tenant/data-retention", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["field"] == field
    reader = (await acme.client.post("/v1/api-keys", json={"name": "r", "scopes": ["read"]})).json()["key"]
    client = acme.as_key(reader)
    assert (await client.get("/v1/tenant/data-retention")).status_code == 200
    assert (await client.patch("/v1/tenant/data-retention", json={"event_days": 1})).status_code == 403
