"""``/v1/numbers/normalize``: what the dial plan makes of a number (the softphone's E.164 preview)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.api.db import Tenant
from services.api.deps import Reader, Session
from services.api.errors import invalid
from services.api.schemas.numbers import NormalizedNumberOut
from shared.numbers import NumberError, is_valid_region, normalize

router = APIRouter(prefix="/v1/numbers", tags=["numbers"])


@router.get("/normalize", responses={422: {"description": "Not a phone number; the reason says why"}})
async def normalize_number(
    session: Session,
    principal: Reader,
    number: Annotated[str, Query(min_length=1, max_length=100, examples=["555123456"])],
    region: Annotated[
        str | None,
        Query(pattern=r"^[A-Za-z]{2}$", description="Region for national numbers; default: the tenant's"),
    ] = None,
) -> NormalizedNumberOut:
    if region is None:
        tenant = await session.get(Tenant, principal.tenant_id)
        region = tenant.default_region if tenant is not None else "GE"
    elif not is_valid_region(region):
        raise invalid(("query", "region"), f"{region!r} is not a region phone numbers are known for", region)
    try:
        result = normalize(number, region)
    except NumberError as exc:
        raise invalid(("query", "number"), exc.reason, number) from None
    return NormalizedNumberOut(
        input=number,
        number=result.number,
        e164=result.number if result.is_phone_number else None,
        valid=result.valid,
        kind=result.kind,
        region=result.region,
    )
