"""``/v1/calls``: the call log built from the bus, with each call's timeline, quality and recordings,
and the statistics of the current day, week or month."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import and_, case, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import cursors
from services.api.calllog import was_answered
from services.api.db import Call, Recording, StoredEvent, Tenant
from services.api.deps import Reader, Session
from services.api.errors import invalid
from services.api.routers.recordings import recording_out
from services.api.schemas.calls import (
    CallDetail,
    CallOut,
    CallPage,
    CallStats,
    LegQualityOut,
    QualitySummary,
    StatsPeriod,
    TimelineEntry,
)
from shared.events import CallStatus, Direction, EndCause, Party
from shared.numbers import NumberError, normalize

router = APIRouter(prefix="/v1/calls", tags=["calls"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such call in the caller's tenant"}}


def call_fields(call: Call) -> dict[str, Any]:
    return {
        "id": call.id,
        "direction": Direction(call.direction) if call.direction else None,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "agent_id": call.agent_id,
        "trunk_id": call.trunk_id,
        "parent_call_id": call.parent_call_id,
        "status": CallStatus(call.status),
        "answered": was_answered(call),
        "answered_by": call.answered_by,
        "recorded": call.recorded,
        "started_at": call.started_at,
        "ringing_at": call.ringing_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "duration_s": call.duration_s,
        "talk_time_s": call.talk_time_s,
        "end_cause": EndCause(call.end_cause) if call.end_cause else None,
        "ended_by": Party(call.ended_by) if call.ended_by else None,
        "sip_status": call.sip_status,
        "sip_reason": call.sip_reason,
        "message": call.message,
        "codec": call.codec,
        "transfer_target": call.transfer_target,
        "transferred_to_call_id": call.transferred_to_call_id,
    }


def _utc(value: datetime | None) -> datetime | None:
    """Query times without a zone are read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def _number_variants(session: AsyncSession, tenant_id: str, number: str) -> set[str]:
    """The number as typed and as the dial plan writes it (E.164 in the tenant's region)."""
    variants = {number}
    tenant = await session.get(Tenant, tenant_id)
    with contextlib.suppress(NumberError):
        variants.add(normalize(number, tenant.default_region if tenant else "GE").number)
    return variants


@router.get("", responses={422: {"description": "A filter or the cursor is malformed"}})
async def list_calls(
    session: Session,
    principal: Reader,
    direction: Direction | None = None,
    status_: Annotated[
        list[CallStatus] | None, Query(alias="status", description="One or more (repeat the parameter)")
    ] = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    number: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="Calls from or to this number (as typed, or normalized in the tenant's region)",
        ),
    ] = None,
    since: Annotated[datetime | None, Query(description="Calls started at or after (UTC if no zone)")] = None,
    until: Annotated[datetime | None, Query(description="Calls started before (UTC if no zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> CallPage:
    """The tenant's calls, newest first, a page at a time (keyset pagination: pass ``next_cursor``)."""
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise invalid(("query", "until"), "must be later than since", until.isoformat())
    query = select(Call).where(Call.tenant_id == principal.tenant_id)
    if direction is not None:
        query = query.where(Call.direction == direction.value)
    if status_:
        query = query.where(Call.status.in_([s.value for s in status_]))
    if agent_id is not None:
        query = query.where(Call.agent_id == agent_id)
    if number is not None:
        variants = await _number_variants(session, principal.tenant_id, number)
        query = query.where(or_(Call.from_number.in_(variants), Call.to_number.in_(variants)))
    if since is not None:
        query = query.where(Call.started_at >= since)
    if until is not None:
        query = query.where(Call.started_at < until)
    if cursor is not None:
        at, last_id = cursors.decode(cursor)
        # A row-value comparison: the index on (tenant, started_at, id) starts right at the cursor.
        query = query.where(tuple_(Call.started_at, Call.id) < tuple_(at, last_id))
    rows = list(
        await session.scalars(query.order_by(Call.started_at.desc(), Call.id.desc()).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursors.encode(rows[-1].started_at, rows[-1].id) if more else None
    return CallPage(items=[CallOut(**call_fields(c)) for c in rows], next_cursor=next_cursor)


def period_bounds(period: StatsPeriod, now: datetime) -> tuple[datetime, datetime]:
    """The current UTC calendar day, ISO week (from Monday) or month, up to ``now``."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "today":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


@router.get("/stats")
async def call_stats(session: Session, principal: Reader, period: StatsPeriod = "today") -> CallStats:
    """Counts of the calls started in the period (UTC). Every answered call counts as answered,
    whether it ended completed, was transferred, or is still going."""
    since, until = period_bounds(period, datetime.now(UTC))
    answered = or_(Call.answered_at.is_not(None), Call.status == CallStatus.COMPLETED.value)
    ended = Call.ended_at.is_not(None)

    def count(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = (
        await session.execute(
            select(
                func.count(),
                count(answered),
                count(and_(ended, ~answered, Call.direction == Direction.INBOUND.value)),
                count(Call.direction == Direction.INBOUND.value),
                count(Call.direction == Direction.OUTBOUND.value),
                count(Call.direction == Direction.INTERNAL.value),
                count(~ended),
                count(and_(ended, ~answered)),
                func.avg(case((and_(answered, ended), Call.talk_time_s), else_=None)),
            ).where(Call.tenant_id == principal.tenant_id, Call.started_at >= since, Call.started_at < until)
        )
    ).one()
    total, n_answered, missed, inbound, outbound, internal, in_progress, unanswered, average = row
    decided = int(n_answered) + int(unanswered)
    return CallStats(
        period=period,
        since=since,
        until=until,
        total=int(total),
        answered=int(n_answered),
        missed=int(missed),
        inbound=int(inbound),
        outbound=int(outbound),
        internal=int(internal),
        in_progress=int(in_progress),
        answer_rate=round(int(n_answered) / decided, 4) if decided else None,
        average_duration_s=round(float(average), 3) if average is not None else None,
    )


def quality_summary(call: Call) -> QualitySummary:
    legs = []
    for leg in call.quality:
        expected = leg["packets_received"] + leg["packets_lost"]
        legs.append(
            LegQualityOut(
                leg=leg["leg"],
                codec=leg["codec"],
                packets_received=leg["packets_received"],
                packets_lost=leg["packets_lost"],
                loss_percent=round(100.0 * leg["packets_lost"] / expected, 2) if expected else 0.0,
                jitter_ms=leg["jitter_ms"],
                rtt_ms=leg.get("rtt_ms"),
                mos=leg.get("mos"),
            )
        )
    mos = [leg.mos for leg in legs if leg.mos is not None]
    return QualitySummary(
        final=call.quality_final,
        legs=legs,
        worst_mos=min(mos) if mos else None,
        worst_loss_percent=max((leg.loss_percent for leg in legs), default=None),
        max_jitter_ms=max((leg.jitter_ms for leg in legs), default=None),
    )


@router.get("/{call_id}", responses=_NOT_FOUND)
async def get_call(call_id: str, session: Session, principal: Reader) -> CallDetail:
    """One call with its timeline (every event, in the order it happened), quality and recordings."""
    call = await session.get(Call, (principal.tenant_id, call_id[:64]))
    if call is None or call.id != call_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no call {call_id}")
    events = await session.scalars(
        select(StoredEvent)
        .where(StoredEvent.tenant_id == principal.tenant_id, StoredEvent.call_id == call_id)
        .order_by(StoredEvent.occurred_at, StoredEvent.sequence, StoredEvent.id)
    )
    recordings = await session.scalars(
        select(Recording)
        .where(Recording.tenant_id == principal.tenant_id, Recording.call_id == call_id)
        .order_by(Recording.started_at, Recording.id)
    )
    return CallDetail(
        **call_fields(call),
        timeline=[
            TimelineEntry(id=e.id, type=e.type, occurred_at=e.occurred_at, sequence=e.sequence, data=e.data)
            for e in events
        ],
        quality=quality_summary(call),
        recordings=[recording_out(r) for r in recordings],
    )


__all__ = ["call_fields", "period_bounds", "router"]
