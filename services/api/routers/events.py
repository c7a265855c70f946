"""``/v1/events/live``: the tenant's events as they happen, over a WebSocket, straight from the
JetStream streams (not from the database, so nothing waits for the call log).

- Authentication: ``Authorization: Bearer <key>``, or ``?api_key=<key>`` where a browser cannot set
  headers on a WebSocket. Any key of the tenant (``read`` scope) will do.
- ``types``: comma-separated event types (``call.ended``) or families (``call.*``); all by default.
- ``call_id``: only this call's events (call and recording events).
- ``since``: an event id already seen; the stream resumes right after it (from the event's place
  in its stream, and from the same instant in the others). Delivery is at least once around a
  resume: de-duplicate by ``id``.

Each text frame is one event, exactly as on the bus (the JSON Schemas in docs/events). A refusal is
one frame ``{"error": ..., "field": ...}`` followed by a close: 4401 (no or bad key), 4400 (a bad
parameter), 4404 (``since`` unknown), 4429 (too many open streams), 4408 (the client read too
slowly; reconnect with ``since`` = the last id received).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.security import HTTPAuthorizationCredentials
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from sqlalchemy import select

from services.api.db import Database, StoredEvent
from services.api.deps import authenticate
from services.api.ingestion import EVENT_STREAMS
from shared import subjects
from shared.bus import Bus
from shared.events import EVENT_TYPES, TOKEN_PATTERN, parse_event
from shared.logging import get_logger
from shared.settings import ApiSettings

log = get_logger("echodesk.api.live")

router = APIRouter(prefix="/v1/events", tags=["events"])

#: Events held for one slow client before it is disconnected (it resumes with ``since``).
QUEUE_LIMIT = 1000

_FAMILY_STREAM = {
    "call": subjects.CALL_EVENTS,
    "recording": subjects.RECORDING_EVENTS,
    "agent": subjects.AGENT_EVENTS,
    "trunk": subjects.TRUNK_EVENTS,
    "message": subjects.MESSAGE_EVENTS,
}


class Refused(Exception):
    def __init__(self, code: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Resume:
    stream: str
    stream_sequence: int
    stored_at: datetime | None


def parse_types(text: str | None) -> frozenset[str] | None:
    """The event types asked for (None: all); ``call.*`` stands for every call event."""
    if text is None or not text.strip():
        return None
    wanted: set[str] = set()
    for item in (part.strip() for part in text.split(",")):
        if item.endswith(".*") and item[:-2] in _FAMILY_STREAM:
            wanted |= {t for t in EVENT_TYPES if t.startswith(item[:-1])}
        elif item in EVENT_TYPES:
            wanted.add(item)
        else:
            raise Refused(
                4400, f"unknown event type {item!r}; one of {', '.join(sorted(EVENT_TYPES))}", "types"
            )
    return frozenset(wanted)


def _subject(stream: subjects.StreamSpec, tenant_id: str, call_id: str | None) -> str:
    return stream.subjects[0].replace("*", tenant_id, 1).replace("*", call_id or "*", 1)


async def _resume_point(db: Database, tenant_id: str, event_id: str) -> Resume:
    async with db.sessions() as session:
        row = (
            await session.execute(
                select(StoredEvent.stream, StoredEvent.stream_sequence, StoredEvent.stored_at).where(
                    StoredEvent.id == event_id[:36], StoredEvent.tenant_id == tenant_id
                )
            )
        ).one_or_none()
    if row is None or not row.stream:
        raise Refused(4404, f"no event {event_id} to resume after (unknown, or not yet taken in)", "since")
    return Resume(row.stream, row.stream_sequence, row.stored_at)


def _config(stream: subjects.StreamSpec, resume: Resume | None) -> ConsumerConfig:
    if resume is None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    if resume.stream == stream.name:
        return ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=resume.stream_sequence + 1
        )
    if resume.stored_at is None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=resume.stored_at)


async def _authenticate(websocket: WebSocket, db: Database) -> str:
    token = websocket.query_params.get("api_key")
    header = websocket.headers.get("authorization", "")
    if token is None and header.lower().startswith("bearer "):
        token = header[7:].strip()
    if not token:
        raise Refused(4401, "an API key is required: Authorization: Bearer <key>, or ?api_key=<key>")
    async with db.sessions() as session:
        try:
            principal = await authenticate(
                session, HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
            )
        except HTTPException as exc:
            raise Refused(4401, str(exc.detail)) from None
    return principal.tenant_id


@router.websocket("/live")
async def live_events(websocket: WebSocket) -> None:
    """The tenant's events as they happen (see the module's description for the parameters)."""
    await websocket.accept()
    state = websocket.app.state
    settings: ApiSettings = state.settings
    open_streams: int = getattr(state, "live_streams", 0)
    try:
        if open_streams >= settings.live_max_connections:
            raise Refused(4429, "too many live event streams open on this api instance; retry later")
        bus: Bus | None = state.bus
        if bus is None or not bus.connected:
            raise Refused(1013, "live events are unavailable: the api is not connected to NATS")
        tenant_id = await _authenticate(websocket, state.db)
        params = websocket.query_params
        types = parse_types(params.get("types"))
        call_id = params.get("call_id")
        if call_id is not None:
            try:
                subjects.token(call_id)
            except ValueError:
                raise Refused(4400, f"call_id must match {TOKEN_PATTERN}", "call_id") from None
        since = params.get("since")
        resume = await _resume_point(state.db, tenant_id, since) if since else None
    except Refused as refusal:
        await _refuse(websocket, refusal)
        return
    state.live_streams = getattr(state, "live_streams", 0) + 1
    try:
        await _stream(websocket, bus, tenant_id, types, call_id, resume)
    finally:
        state.live_streams -= 1


async def _refuse(websocket: WebSocket, refusal: Refused) -> None:
    body: dict[str, Any] = {"error": refusal.message}
    if refusal.field is not None:
        body["field"] = refusal.field
    with contextlib.suppress(Exception):
        await websocket.send_json(body)
        await websocket.close(code=refusal.code, reason=refusal.message[:120])


async def _stream(
    websocket: WebSocket,
    bus: Bus,
    tenant_id: str,
    types: frozenset[str] | None,
    call_id: str | None,
    resume: Resume | None,
) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
    overflowed = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        if overflowed.is_set():
            return
        try:
            queue.put_nowait(msg.data)
        except asyncio.QueueFull:
            overflowed.set()

    families = {t.split(".", 1)[0] for t in types} if types is not None else set(_FAMILY_STREAM)
    if call_id is not None:
        families &= {"call", "recording"}
    subscriptions = []
    try:
        for stream in EVENT_STREAMS:
            family = next(f for f, s in _FAMILY_STREAM.items() if s is stream)
            if family not in families:
                continue
            subscriptions.append(
                await bus.js.subscribe(
                    _subject(stream, tenant_id, call_id),
                    stream=stream.name,
                    cb=on_message,
                    ordered_consumer=True,
                    config=_config(stream, resume),
                    inactive_threshold=60.0,
                )
            )
        await _pump(websocket, queue, overflowed, types)
    finally:
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


async def _pump(
    websocket: WebSocket, queue: asyncio.Queue[bytes], overflowed: asyncio.Event, types: frozenset[str] | None
) -> None:
    closed = asyncio.ensure_future(_until_closed(websocket))
    try:
        while not closed.done():
            getter = asyncio.ensure_future(queue.get())
            overflow = asyncio.ensure_future(overflowed.wait())
            done, _ = await asyncio.wait({getter, closed, overflow}, return_when=asyncio.FIRST_COMPLETED)
            overflow.cancel()
            if getter not in done:
                getter.cancel()
                if overflow in done:
                    await _refuse(
                        websocket,
                        Refused(4408, "the client read too slowly; reconnect with since=<last event id>"),
                    )
                return
            payload = getter.result()
            try:
                event = parse_event(payload)
            except ValidationError:
                continue  # malformed: the call log's consumer dead-letters it
            if types is not None and event.type not in types:
                continue
            await websocket.send_text(payload.decode())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        closed.cancel()


async def _until_closed(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
