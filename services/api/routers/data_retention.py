"""``/v1/tenant/data-retention``: how long the tenant's events (calls' timelines) and webhook
delivery logs are kept (services/api/retention.py deletes what is older)."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.db import DataRetention
from services.api.deps import Admin, Reader, Session, Settings
from services.api.retention import effective
from services.api.schemas.retention import DataRetentionOut, DataRetentionUpdate

router = APIRouter(prefix="/v1/tenant", tags=["tenant"])


def _out(row: DataRetention | None, settings: Settings) -> DataRetentionOut:
    days = effective(row, settings)
    return DataRetentionOut(
        event_days=row.event_days if row is not None else None,
        delivery_days=row.delivery_days if row is not None else None,
        effective_event_days=days.events,
        effective_delivery_days=days.deliveries,
    )


@router.get("/data-retention")
async def get_data_retention(session: Session, principal: Reader, settings: Settings) -> DataRetentionOut:
    return _out(await session.get(DataRetention, principal.tenant_id), settings)


@router.patch("/data-retention", responses={422: {"description": "A field is out of range"}})
async def update_data_retention(
    body: DataRetentionUpdate, session: Session, principal: Admin, settings: Settings
) -> DataRetentionOut:
    """Change how long events and delivery logs are kept. Shortening it deletes what is older at
    the next sweep (``ECHODESK_API_RETENTION_INTERVAL_S``); there is no undo."""
    row = await session.get(DataRetention, principal.tenant_id)
    if row is None:
        row = DataRetention(tenant_id=principal.tenant_id)
        session.add(row)
    fields = body.model_fields_set
    if "event_days" in fields:
        row.event_days = body.event_days
    if "delivery_days" in fields:
        row.delivery_days = body.delivery_days
    await session.commit()
    return _out(row, settings)
