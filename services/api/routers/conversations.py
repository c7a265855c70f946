"""``/v1/conversations/{number}``: one customer's calls (with their recordings and outcomes) and text
messages, interleaved newest first, a page at a time.

Both lists are read by their own index from the page's cursor on ((tenant, number, time, id) for
messages; the call log's number indexes for calls) and merged; the cursor is the last item's
(time, kind:id), so the next page starts right after it in the same merged order.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import or_, select, tuple_

from services.api import cursors
from services.api.db import Call, Message, Recording, Tenant
from services.api.deps import Reader, Session
from services.api.errors import invalid
from services.api.routers.calls import call_fields
from services.api.routers.recordings import recording_out
from services.api.schemas.calls import CallOut
from services.api.schemas.conversations import CallItem, ConversationPage, MessageItem, MessageOut
from shared.conversations import conversation_id
from shared.events import Direction
from shared.numbers import NumberError, normalize

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


def message_out(row: Message) -> MessageOut:
    return MessageOut(
        id=row.id,
        direction=Direction(row.direction) if row.direction else None,
        from_number=row.from_number,
        to_number=row.to_number,
        agent_id=row.agent_id,
        trunk_id=row.trunk_id,
        text=row.text,
        content_type=row.content_type,
        status=row.status,
        accepted_at=row.accepted_at,
        delivered_at=row.delivered_at,
        failed_at=row.failed_at,
        queued=row.queued,
        failure_cause=row.failure_cause,
        sip_status=row.sip_status,
        reason=row.reason,
    )


@router.get("/{number}", responses={422: {"description": "The number or the cursor is malformed"}})
async def conversation(
    session: Session,
    principal: Reader,
    number: Annotated[
        str, Path(max_length=64, description="The customer's number, as typed or E.164 (the tenant's region)")
    ],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> ConversationPage:
    """The customer's calls and messages with the tenant, newest first."""
    tenant = await session.get(Tenant, principal.tenant_id)
    try:
        normalized = normalize(number, tenant.default_region if tenant else "GE")
    except NumberError as exc:
        raise invalid(("path", "number"), f"not a phone number: {exc.reason}", number) from None
    e164 = normalized.number
    conversation = conversation_id(principal.tenant_id, e164) if normalized.is_phone_number else None
    if conversation is None:
        raise invalid(
            ("path", "number"), "not a customer's phone number (an extension or a service code)", number
        )
    calls_query = select(Call).where(
        Call.tenant_id == principal.tenant_id, or_(Call.from_number == e164, Call.to_number == e164)
    )
    messages_query = select(Message).where(
        Message.tenant_id == principal.tenant_id, Message.customer_number == e164
    )
    if cursor is not None:
        at, position = cursors.decode(cursor)
        kind, _, last_id = position.partition(":")
        if kind not in ("call", "message") or not last_id:
            raise invalid(("query", "cursor"), "not a cursor from a previous page", cursor)
        # The merged order is (time, kind:id) descending: after the cursor means strictly older,
        # or as old and lower in that key.
        calls_query = calls_query.where(tuple_(Call.started_at, "call:" + Call.id) < tuple_(at, position))
        messages_query = messages_query.where(
            tuple_(Message.accepted_at, "message:" + Message.id) < tuple_(at, position)
        )
    calls = list(
        await session.scalars(calls_query.order_by(Call.started_at.desc(), Call.id.desc()).limit(limit + 1))
    )
    messages = list(
        await session.scalars(
            messages_query.order_by(Message.accepted_at.desc(), Message.id.desc()).limit(limit + 1)
        )
    )
    merged: list[tuple[Any, str, Call | Message]] = [(c.started_at, f"call:{c.id}", c) for c in calls]
    merged += [(m.accepted_at, f"message:{m.id}", m) for m in messages]
    merged.sort(key=lambda item: (item[0], item[1]), reverse=True)
    more = len(merged) > limit
    page = merged[:limit]
    call_ids = [row.id for _, _, row in page if isinstance(row, Call)]
    recordings: dict[str, list[Recording]] = {}
    if call_ids:
        for recording in await session.scalars(
            select(Recording)
            .where(Recording.tenant_id == principal.tenant_id, Recording.call_id.in_(call_ids))
            .order_by(Recording.started_at)
        ):
            recordings.setdefault(recording.call_id, []).append(recording)
    items: list[CallItem | MessageItem] = []
    for at, _, row in page:
        if isinstance(row, Call):
            items.append(
                CallItem(
                    at=at,
                    call=CallOut(**call_fields(row)),
                    recordings=[recording_out(r) for r in recordings.get(row.id, [])],
                )
            )
        else:
            items.append(MessageItem(at=at, message=message_out(row)))
    next_cursor = cursors.encode(page[-1][0], page[-1][1]) if more and page else None
    return ConversationPage(number=e164, conversation_id=conversation, items=items, next_cursor=next_cursor)
