"""``/v1/tenant/recording-policy``: whether the tenant's calls are recorded, and how long its
recordings are kept. Published to NATS KV ``tenants`` (``publishing.py``): signaling decides from
it whether a new call is recorded, the recorders delete recordings past the retention."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.api.db import Tenant
from services.api.deps import Admin, Reader, Session, config_changed
from services.api.errors import Conflict
from services.api.schemas.recording_controls import RecordingPolicy, RecordingPolicyUpdate

router = APIRouter(prefix="/v1/tenant", tags=["tenant"])


def _policy(tenant: Tenant) -> RecordingPolicy:
    return RecordingPolicy(
        record_calls=tenant.record_calls,
        retention_days=tenant.recording_retention_days,
        published=tenant.kv_published_version == tenant.version,
    )


async def _tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise Conflict("the tenant of this API key no longer exists")
    return tenant


@router.get("/recording-policy")
async def get_recording_policy(session: Session, principal: Reader) -> RecordingPolicy:
    return _policy(await _tenant(session, principal.tenant_id))


@router.patch("/recording-policy", responses={422: {"description": "A field is out of range"}})
async def update_recording_policy(
    body: RecordingPolicyUpdate, request: Request, session: Session, principal: Admin
) -> RecordingPolicy:
    """Change the policy; calls already in progress keep whether they are recorded."""
    tenant = await _tenant(session, principal.tenant_id)
    fields = body.model_fields_set
    if "record_calls" in fields:
        tenant.record_calls = body.record_calls
    if "retention_days" in fields:
        tenant.recording_retention_days = body.retention_days
    await session.commit()
    await session.refresh(tenant)
    config_changed(request)
    return _policy(tenant)
