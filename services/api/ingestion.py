"""The call log's durable consumers: every event stream into the database, exactly once.

One durable JetStream consumer per event stream (``api-log-<stream>``) hands batches of events to
:meth:`EventIngestion.ingest`, which applies them in one transaction and is acked only after it
committed: a crash loses nothing (the batch comes again) and applies nothing twice (an event whose
id is stored is skipped). An event that does not validate is dead-lettered by the bus and the
others go on; one that makes the batch fail is retried alone and dead-lettered after
``max_deliver`` attempts. Several api replicas share the consumers; rows of a call are locked while
its events are applied (PostgreSQL), so replicas never interleave one call's updates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeGuard, TypeVar, get_args

from prometheus_client import Counter
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.calllog import apply_call_event, apply_recording_event, new_call, new_recording
from services.api.db import AgentPresenceRow, Call, Database, Recording, StoredEvent, TrunkRegistrationRow
from services.api.db.messages import Message
from services.api.db.upsert import insert_new_returning_ids
from services.api.messagelog import apply_message_event, new_message
from shared import subjects
from shared.bus import Bus, Delivery
from shared.events import (
    AgentPresence,
    CallEvent,
    CallEventEnvelope,
    Event,
    MessageEvent,
    RecordingEvent,
    TrunkRegistration,
)
from shared.logging import get_logger

log = get_logger("echodesk.api.ingestion")


class _Keyed(Protocol):
    tenant_id: str
    id: str


_Row = TypeVar("_Row", bound=_Keyed)
_E = TypeVar("_E")

INGESTED = Counter("echodesk_api_events_ingested_total", "Events taken into the database", ["outcome"])

#: The streams the api keeps; their consumers are named after them.
EVENT_STREAMS: tuple[subjects.StreamSpec, ...] = (
    subjects.CALL_EVENTS,
    subjects.RECORDING_EVENTS,
    subjects.AGENT_EVENTS,
    subjects.TRUNK_EVENTS,
    subjects.MESSAGE_EVENTS,
)


def durable_name(purpose: str, stream: subjects.StreamSpec) -> str:
    return f"api-{purpose}-{stream.name.lower().replace('_', '-')}"


def _stream_of(subject: str) -> str:
    for stream in EVENT_STREAMS:
        prefix = stream.subjects[0].split(".", 1)[0]
        if subject.startswith(prefix + "."):
            return stream.name
    return ""


def stored_event(delivery: Delivery[Event]) -> dict[str, Any]:
    event = delivery.value
    return {
        "id": str(event.id),
        "tenant_id": event.tenant_id,
        "type": event.type,
        "call_id": event.call_id if isinstance(event, CallEventEnvelope) else None,
        "sequence": event.sequence if isinstance(event, CallEventEnvelope) else None,
        "occurred_at": event.occurred_at,
        "stream": _stream_of(delivery.subject),
        "stream_sequence": delivery.stream_sequence,
        "stored_at": delivery.stored_at,
        "data": event.data.model_dump(mode="json"),
    }


#: The event classes of a call's lifecycle and of its recordings (both have a ``call_id``).
CALL_EVENT_TYPES: tuple[type, ...] = get_args(CallEvent)
RECORDING_EVENT_TYPES: tuple[type, ...] = get_args(RecordingEvent)
MESSAGE_EVENT_TYPES: tuple[type, ...] = get_args(MessageEvent)


def is_call_event(event: Event) -> TypeGuard[CallEvent]:
    return isinstance(event, CALL_EVENT_TYPES)


def is_recording_event(event: Event) -> TypeGuard[RecordingEvent]:
    return isinstance(event, RECORDING_EVENT_TYPES)


def is_message_event(event: Event) -> TypeGuard[MessageEvent]:
    return isinstance(event, MESSAGE_EVENT_TYPES)


class EventIngestion:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self, bus: Bus, *, max_deliver: int = 5) -> None:
        for stream in EVENT_STREAMS:
            await bus.consume_event_batches(
                stream, durable_name("log", stream), self.ingest, max_deliver=max_deliver
            )

    async def ingest(self, deliveries: Sequence[Delivery[Event]]) -> None:
        """Apply the events not yet applied, in one transaction."""
        async with self.db.transaction() as session:
            fresh = await self._store(session, deliveries)
            if not fresh:
                INGESTED.labels("duplicate").inc(len(deliveries))
                return
            await self._apply_calls(session, [d.value for d in fresh])
            await self._apply_recordings(session, [d.value for d in fresh])
            await self._apply_messages(session, [d.value for d in fresh])
            await self._apply_states(session, [d.value for d in fresh])
        INGESTED.labels("applied").inc(len(fresh))
        if len(fresh) < len(deliveries):
            INGESTED.labels("duplicate").inc(len(deliveries) - len(fresh))

    async def _store(
        self, session: AsyncSession, deliveries: Sequence[Delivery[Event]]
    ) -> list[Delivery[Event]]:
        """Store the events; those whose id was stored before (or twice in this batch) are left
        out, and only the others are returned, to be applied. The event store's key decides, so
        two replicas handed the same event cannot both apply it."""
        inserted = await insert_new_returning_ids(session, StoredEvent, [stored_event(d) for d in deliveries])
        fresh: list[Delivery[Event]] = []
        for delivery in deliveries:
            event_id = str(delivery.value.id)
            if event_id in inserted:
                inserted.discard(event_id)  # the same event twice in one batch is applied once
                fresh.append(delivery)
        return fresh

    async def _apply_calls(self, session: AsyncSession, events: list[Event]) -> None:
        call_events: list[CallEvent] = [e for e in events if is_call_event(e)]
        await _fold(
            session,
            Call,
            call_events,
            lambda e: (e.tenant_id, e.call_id),
            lambda e: new_call(e.tenant_id, e.call_id, e.occurred_at),
            apply_call_event,
        )

    async def _apply_recordings(self, session: AsyncSession, events: list[Event]) -> None:
        recording_events: list[RecordingEvent] = [e for e in events if is_recording_event(e)]
        await _fold(
            session,
            Recording,
            recording_events,
            lambda e: (e.tenant_id, e.data.recording_id),
            lambda e: new_recording(e.tenant_id, e),
            apply_recording_event,
        )

    async def _apply_messages(self, session: AsyncSession, events: list[Event]) -> None:
        message_events: list[MessageEvent] = [e for e in events if is_message_event(e)]
        await _fold(
            session,
            Message,
            message_events,
            lambda e: (e.tenant_id, e.message_id),
            lambda e: new_message(e.tenant_id, e.message_id, e.occurred_at),
            apply_message_event,
        )

    async def _apply_states(self, session: AsyncSession, events: list[Event]) -> None:
        """Agents' presence and trunks' registration: the newest event wins (by ``occurred_at``;
        these events have no per-call sequence)."""
        for event in events:
            if isinstance(event, AgentPresence):
                presence = await session.get(
                    AgentPresenceRow, (event.tenant_id, event.agent_id), with_for_update=True
                )
                if presence is None:
                    presence = AgentPresenceRow(tenant_id=event.tenant_id, agent_id=event.agent_id)
                    session.add(presence)
                elif event.occurred_at < presence.changed_at:
                    continue
                data = event.data
                presence.state = data.state.value
                presence.contacts = data.contacts
                presence.transport = data.transport
                presence.source = data.source
                presence.user_agent = data.user_agent
                presence.changed_at = event.occurred_at
            elif isinstance(event, TrunkRegistration):
                registration = await session.get(
                    TrunkRegistrationRow, (event.tenant_id, event.trunk_id), with_for_update=True
                )
                if registration is None:
                    registration = TrunkRegistrationRow(tenant_id=event.tenant_id, trunk_id=event.trunk_id)
                    session.add(registration)
                elif event.occurred_at < registration.changed_at:
                    continue
                info = event.data
                registration.state = info.state.value
                registration.registrar = info.registrar
                registration.sip_status = info.sip_status
                registration.reason = info.reason
                registration.expires_s = info.expires_s
                registration.retry_in_s = info.retry_in_s
                registration.changed_at = event.occurred_at


async def _fold(
    session: AsyncSession,
    model: type[_Row],
    events: Sequence[_E],
    key: Callable[[_E], tuple[str, str]],
    new: Callable[[_E], _Row],
    apply: Callable[[_Row, _E], None],
) -> None:
    """Fold ``events`` into their rows of ``model`` (by tenant and id), creating the missing ones.
    The rows are locked in key order, so two replicas locking the same rows cannot deadlock."""
    if not events:
        return
    keys = sorted({key(e) for e in events})
    table: Any = model
    rows = await session.scalars(
        select(model)
        .where(tuple_(table.tenant_id, table.id).in_(keys))
        .order_by(table.tenant_id, table.id)
        .with_for_update()
    )
    found: dict[tuple[str, str], _Row] = {(row.tenant_id, row.id): row for row in rows}
    for event in events:
        row_key = key(event)
        row = found.get(row_key)
        if row is None:
            row = found[row_key] = new(event)
            session.add(row)
        apply(row, event)


__all__ = ["EVENT_STREAMS", "EventIngestion", "durable_name"]
