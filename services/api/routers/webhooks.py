"""``/v1/webhooks``: the tenant's webhook subscriptions and their delivery log."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import cursors
from services.api.db import WebhookDelivery, WebhookSubscription
from services.api.db.base import is_id, utcnow
from services.api.db.webhooks import DeliveryStatus, SubscriptionStatus
from services.api.deps import Reader, Session, Settings, Writer
from services.api.errors import Unavailable, invalid
from services.api.schemas.webhooks import (
    DeliveryOut,
    DeliveryPage,
    WebhookCreate,
    WebhookOut,
    WebhookUpdate,
    WebhookWithSecret,
)
from services.api.webhook_targets import TargetRefused, check_url
from shared.sealing import seal
from shared.settings import ApiSettings

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such webhook subscription in the caller's tenant"}
}


def _sealed(secret: str, settings: ApiSettings) -> str:
    if not settings.secret_key:
        raise Unavailable(
            "ECHODESK_SECRET_KEY is not set on the api, so webhook secrets cannot be stored sealed; "
            "set it and try again"
        )
    return seal(secret, settings.secret_key)


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _kick(request: Request) -> None:
    dispatcher = getattr(request.app.state, "webhooks", None)
    if dispatcher is not None:
        dispatcher.kick()


async def _pending(session: AsyncSession, subscription_id: str) -> int:
    count = await session.scalar(
        select(func.count()).where(
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
        )
    )
    return int(count or 0)


async def webhook_out(session: AsyncSession, sub: WebhookSubscription) -> WebhookOut:
    return WebhookOut(
        id=sub.id,
        url=sub.url,
        description=sub.description,
        event_types=list(sub.event_types),
        status=sub.status,
        paused_at=sub.paused_at,
        paused_reason=sub.paused_reason,
        consecutive_failures=sub.consecutive_failures,
        pending_deliveries=await _pending(session, sub.id),
        created_at=sub.created_at,
        updated_at=sub.updated_at,
    )


async def _find(session: AsyncSession, tenant_id: str, subscription_id: str) -> WebhookSubscription:
    sub = None
    if is_id(subscription_id):
        sub = await session.scalar(
            select(WebhookSubscription).where(
                WebhookSubscription.tenant_id == tenant_id, WebhookSubscription.id == subscription_id
            )
        )
    if sub is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook subscription {subscription_id}")
    return sub


@router.get("")
async def list_webhooks(session: Session, principal: Reader) -> list[WebhookOut]:
    subs = await session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.tenant_id == principal.tenant_id)
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    )
    return [await webhook_out(session, s) for s in subs]


async def _public_target(url: str, settings: ApiSettings) -> None:
    """422 naming ``url`` when webhooks may not go there (services/api/webhook_targets.py)."""
    if settings.webhook_allow_private_targets:
        return
    try:
        await check_url(url, allow_private=False)
    except TargetRefused as exc:
        raise invalid(("body", "url"), str(exc), url) from None


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_webhook(
    body: WebhookCreate, session: Session, principal: Writer, settings: Settings
) -> WebhookWithSecret:
    """Subscribe a URL to the tenant's events. The response carries the signing secret, once.
    A URL whose host is (or resolves to) a loopback, private, link-local, multicast or metadata
    address is refused unless private targets are allowed."""
    await _public_target(body.url, settings)
    secret = body.secret.get_secret_value() if body.secret is not None else _new_secret()
    sub = WebhookSubscription(
        tenant_id=principal.tenant_id,
        url=body.url,
        description=body.description,
        event_types=sorted(set(body.event_types)),
        secret_sealed=_sealed(secret, settings),
        status=SubscriptionStatus.ACTIVE.value,
        consecutive_failures=0,
    )
    session.add(sub)
    await session.commit()
    return WebhookWithSecret(**(await webhook_out(session, sub)).model_dump(), secret=secret)


@router.get("/{subscription_id}", responses=_NOT_FOUND)
async def get_webhook(subscription_id: str, session: Session, principal: Reader) -> WebhookOut:
    return await webhook_out(session, await _find(session, principal.tenant_id, subscription_id))


@router.patch("/{subscription_id}", responses=_NOT_FOUND)
async def update_webhook(
    subscription_id: str, body: WebhookUpdate, session: Session, principal: Writer, settings: Settings
) -> WebhookOut:
    sub = await _find(session, principal.tenant_id, subscription_id)
    if body.url is not None:
        await _public_target(body.url, settings)
    for name in body.model_fields_set:
        value = getattr(body, name)
        if name == "event_types":
            value = sorted(set(value or []))
        elif name == "url" and value is None:
            continue
        setattr(sub, name, value)
    await session.commit()
    return await webhook_out(session, sub)


@router.delete("/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_webhook(subscription_id: str, session: Session, principal: Writer) -> Response:
    """Stop delivering; the subscription's pending deliveries and log go with it."""
    await session.delete(await _find(session, principal.tenant_id, subscription_id))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{subscription_id}/pause", responses=_NOT_FOUND)
async def pause_webhook(subscription_id: str, session: Session, principal: Writer) -> WebhookOut:
    """Stop attempting deliveries; new events still queue for when it is resumed."""
    sub = await _find(session, principal.tenant_id, subscription_id)
    if sub.status != SubscriptionStatus.PAUSED.value:
        sub.status = SubscriptionStatus.PAUSED.value
        sub.paused_at = utcnow()
        sub.paused_reason = "paused through the API"
        await session.commit()
    return await webhook_out(session, sub)


@router.post("/{subscription_id}/resume", responses=_NOT_FOUND)
async def resume_webhook(
    subscription_id: str, request: Request, session: Session, principal: Writer
) -> WebhookOut:
    """Deliver again, starting at once with every delivery that waited."""
    sub = await _find(session, principal.tenant_id, subscription_id)
    sub.status = SubscriptionStatus.ACTIVE.value
    sub.paused_at = None
    sub.paused_reason = None
    sub.consecutive_failures = 0
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.subscription_id == sub.id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
        )
        .values(next_attempt_at=utcnow())
    )
    await session.commit()
    _kick(request)
    return await webhook_out(session, sub)


@router.post("/{subscription_id}/rotate-secret", responses=_NOT_FOUND)
async def rotate_webhook_secret(
    subscription_id: str, session: Session, principal: Writer, settings: Settings
) -> WebhookWithSecret:
    """A new signing secret, shown once; deliveries from now on are signed with it."""
    sub = await _find(session, principal.tenant_id, subscription_id)
    secret = _new_secret()
    sub.secret_sealed = _sealed(secret, settings)
    await session.commit()
    return WebhookWithSecret(**(await webhook_out(session, sub)).model_dump(), secret=secret)


@router.get("/{subscription_id}/deliveries", responses=_NOT_FOUND)
async def list_deliveries(
    subscription_id: str,
    session: Session,
    principal: Reader,
    status_: Annotated[Literal["pending", "delivered", "failed"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> DeliveryPage:
    """The delivery log, newest first: each event sent (or to send), its attempts and last result."""
    sub = await _find(session, principal.tenant_id, subscription_id)
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id)
    if status_ is not None:
        query = query.where(WebhookDelivery.status == status_)
    if cursor is not None:
        at, last_id = cursors.decode(cursor)
        query = query.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple_(at, last_id))
    rows = list(
        await session.scalars(
            query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(
        items=[
            DeliveryOut(
                id=d.id,
                event_id=d.event_id,
                event_type=d.event_type,
                status=d.status,
                attempts=d.attempts,
                next_attempt_at=d.next_attempt_at,
                last_attempt_at=d.last_attempt_at,
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                last_duration_ms=d.last_duration_ms,
                created_at=d.created_at,
                delivered_at=d.delivered_at,
            )
            for d in rows
        ],
        next_cursor=cursors.encode(rows[-1].created_at, rows[-1].id) if more else None,
    )
