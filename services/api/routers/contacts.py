"""``/v1/contacts/{number}``: link a customer's number to the helpdesk's own contact id.

The link lives in NATS KV (bucket ``contacts``, shared.records.ContactLink), where signaling reads it:
every call and message event for the number from then on carries ``contact_id``. The number is
taken as typed or E.164 and normalized in the tenant's region, so ``555123456`` and
``+995555123456`` are one customer.
"""

from __future__ import annotations

from typing import Annotated, Any

import nats.errors
import nats.js.errors
from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, Field, ValidationError

from services.api.db import Tenant
from services.api.deps import Reader, Session, Writer
from services.api.errors import Unavailable, invalid
from shared import subjects
from shared.bus import Bus
from shared.numbers import NumberError, normalize
from shared.records import ContactLink, contact_key

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])

Number = Annotated[
    str, Path(max_length=64, description="The customer's number, as typed or E.164 (the tenant's region)")
]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"description": "The number or the contact id is malformed"},
    503: {"description": "The bus is unreachable"},
}


class ContactIn(BaseModel):
    contact_id: Annotated[
        str, Field(min_length=1, max_length=128, description="The helpdesk's id of the contact")
    ]


class ContactOut(BaseModel):
    number: str = Field(description="E.164")
    contact_id: str


async def _e164(session: Session, tenant_id: str, number: str) -> str:
    tenant = await session.get(Tenant, tenant_id)
    try:
        normalized = normalize(number, tenant.default_region if tenant else "GE")
    except NumberError as exc:
        raise invalid(("path", "number"), f"not a phone number: {exc.reason}", number) from None
    if not normalized.is_phone_number:
        raise invalid(
            ("path", "number"), "not a customer's phone number (an extension or a service code)", number
        )
    return normalized.number


async def _bucket(request: Request) -> Any:
    bus: Bus | None = request.app.state.bus
    if bus is None or not bus.connected:
        raise Unavailable("the api is not connected to the bus: contact links live in NATS KV")
    try:
        return await bus.bucket(subjects.CONTACTS_KV)
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"the bus is unreachable: {exc or type(exc).__name__}") from None


@router.put("/{number}", responses=_RESPONSES)
async def link_contact(
    number: Number, body: ContactIn, request: Request, session: Session, principal: Writer
) -> ContactOut:
    """Link the number to ``contact_id`` (replacing any earlier link)."""
    e164 = await _e164(session, principal.tenant_id, number)
    try:
        link = ContactLink(tenant_id=principal.tenant_id, number=e164, contact_id=body.contact_id)
    except ValidationError:
        raise invalid(("body", "contact_id"), "must not hold control characters", body.contact_id) from None
    kv = await _bucket(request)
    try:
        await kv.put(contact_key(principal.tenant_id, e164), link.model_dump_json().encode())
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"the bus is unreachable: {exc or type(exc).__name__}") from None
    return ContactOut(number=e164, contact_id=link.contact_id)


@router.get("/{number}", responses={404: {"description": "The number is linked to no contact"}, **_RESPONSES})
async def get_contact(number: Number, request: Request, session: Session, principal: Reader) -> ContactOut:
    e164 = await _e164(session, principal.tenant_id, number)
    kv = await _bucket(request)
    try:
        entry = await kv.get(contact_key(principal.tenant_id, e164))
    except nats.js.errors.KeyNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{e164} is linked to no contact") from None
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"the bus is unreachable: {exc or type(exc).__name__}") from None
    link = ContactLink.model_validate_json(entry.value or b"")
    return ContactOut(number=e164, contact_id=link.contact_id)


@router.delete("/{number}", status_code=status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
async def unlink_contact(number: Number, request: Request, session: Session, principal: Writer) -> Response:
    """Remove the link: later events for the number carry no contact id."""
    e164 = await _e164(session, principal.tenant_id, number)
    kv = await _bucket(request)
    try:
        await kv.delete(contact_key(principal.tenant_id, e164))
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"the bus is unreachable: {exc or type(exc).__name__}") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
