"""``/v1/tenant``: who the caller's API key acts for."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.db import Tenant
from services.api.deps import Reader, Session
from services.api.errors import Conflict
from services.api.schemas.tenants import TenantOut

router = APIRouter(prefix="/v1", tags=["tenant"])


@router.get("/tenant")
async def get_tenant(session: Session, principal: Reader) -> TenantOut:
    tenant = await session.get(Tenant, principal.tenant_id)
    if tenant is None:
        raise Conflict("the tenant of this API key no longer exists")
    return TenantOut(
        id=tenant.id,
        name=tenant.name,
        sip_domain=tenant.sip_domain,
        default_region=tenant.default_region,
        created_at=tenant.created_at,
    )
