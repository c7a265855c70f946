"""A thin typed layer over nats-py: the only way services talk to each other.

- :meth:`Bus.connect` retries until NATS answers and logs every disconnect and reconnect.
- :meth:`Bus.publish_event` publishes to JetStream with ``Nats-Msg-Id`` = event id, so a
  producer that retries after a lost ack never creates a duplicate (within the stream's window).
- :meth:`Bus.consume` runs a durable pull consumer that acks only after the handler succeeded,
  redelivers with backoff on failure, and moves a message that keeps failing, or that does not
  validate, to the ``DEAD_LETTERS`` stream. A bad message never crashes a service.
- :meth:`Bus.request` / :meth:`Bus.serve`: typed request/reply with timeouts and typed errors.
- :meth:`Bus.ensure_streams` / :meth:`Bus.ensure_buckets`: idempotent provisioning.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue
from prometheus_client import Counter
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared import subjects
from shared.events import EVENT_ADAPTER, Event, EventEnvelope
from shared.logging import get_logger

log = get_logger("echodesk.bus")

M = TypeVar("M")
R = TypeVar("R", bound=BaseModel)
Q = TypeVar("Q", bound=BaseModel)

#: Headers a dead letter carries so an operator can see what failed, where and why.
HDR_ORIGINAL_SUBJECT = "EchoDesk-Original-Subject"
HDR_ERROR = "EchoDesk-Error"
HDR_DELIVERIES = "EchoDesk-Deliveries"
HDR_ORIGINAL_SEQUENCE = "EchoDesk-Original-Sequence"

DEAD_LETTERED = Counter(
    "echodesk_bus_dead_letters_total", "Messages moved to the dead-letter stream", ["stream", "consumer"]
)
HANDLED = Counter(
    "echodesk_bus_messages_handled_total", "Messages a consumer handled", ["consumer", "outcome"]
)


class BusError(Exception):
    """Base of the errors this module raises."""


class RequestTimeout(BusError):
    def __init__(self, subject: str, timeout: float) -> None:
        super().__init__(f"no reply on {subject} within {timeout:.3g}s")
        self.subject = subject
        self.timeout = timeout


class NoResponders(BusError):
    def __init__(self, subject: str) -> None:
        super().__init__(f"nobody serves {subject}")
        self.subject = subject


class RemoteError(BusError):
    """The responder answered with an error (it refused or failed the request)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Rejected(Exception):
    """Raised by a request handler to answer with a typed error instead of a result."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ErrorBody(BaseModel):
    code: str
    message: str


class ReplyEnvelope(BaseModel):
    """Every reply: either ``result`` or ``error``, so a caller never guesses from the shape."""

    ok: bool
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None


@dataclass(frozen=True)
class Delivery(Generic[M]):
    """A validated message handed to a consumer's handler, with where it came from."""

    value: M
    subject: str
    attempt: int
    #: The message's place in its stream and when the stream stored it (JetStream metadata), so a
    #: consumer can remember where an event is and replay the stream from there.
    stream_sequence: int = 0
    stored_at: datetime | None = None


class Bus:
    """One NATS connection and its JetStream context, with typed operations on top."""

    def __init__(self, nc: NatsClient, name: str) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.name = name
        self._tasks: set[asyncio.Task[None]] = set()
        self._pulls: list[Any] = []

    # --- connection ------------------------------------------------------------------------

    @classmethod
    async def connect(cls, url: str, *, name: str, timeout: float = 60.0) -> Bus:
        """Connect, retrying until ``timeout``; once connected, reconnect forever after any loss."""

        async def on_disconnect() -> None:
            if not nc.is_closed and not nc.is_draining:
                log.warning("nats disconnected", client=name)

        async def on_reconnect() -> None:
            log.info(
                "nats reconnected", client=name, server=nc.connected_url.netloc if nc.connected_url else None
            )

        async def on_error(exc: Exception) -> None:
            log.warning("nats error", client=name, error=str(exc) or type(exc).__name__)

        nc = NatsClient()
        try:
            # With max_reconnect_attempts=-1 nats-py keeps retrying the first connection too
            # (every reconnect_time_wait, each failure reported through on_error); the timeout bounds it.
            async with asyncio.timeout(timeout):
                await nc.connect(
                    servers=[url],
                    name=name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                    error_cb=on_error,
                )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            reason = "no answer" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            raise BusError(f"cannot reach NATS at {url} within {timeout:g}s: {reason}") from exc
        log.info("nats connected", client=name, url=url)
        return cls(nc, name)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for pull in self._pulls if self.nc.is_connected else []:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pull.unsubscribe(), timeout=2.0)
        self._pulls.clear()
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
            with contextlib.suppress(Exception):
                await self.nc.close()

    # --- provisioning ----------------------------------------------------------------------

    async def ensure_streams(
        self, specs: tuple[subjects.StreamSpec, ...] = subjects.STREAMS, *, replicas: int = 1
    ) -> None:
        """Create each stream, or bring an existing one to the spec; safe to run from every service.

        ``replicas`` copies of each stream live on different servers of a NATS cluster (3 survive
        the loss of one); a single server can only hold 1.
        """
        for spec in specs:
            config = StreamConfig(
                num_replicas=replicas,
                name=spec.name,
                subjects=list(spec.subjects),
                description=spec.description or None,
                max_age=spec.max_age.total_seconds(),
                duplicate_window=spec.duplicate_window.total_seconds(),
                storage=StorageType.FILE,
                allow_direct=spec.allow_direct or None,
            )
            try:
                await self.js.stream_info(spec.name)
            except nats.js.errors.NotFoundError:
                try:
                    await self.js.add_stream(config)
                    log.info("stream created", stream=spec.name)
                    continue
                except nats.js.errors.BadRequestError:
                    pass  # created concurrently by another service: fall through to update
            await self.js.update_stream(config)

    async def ensure_buckets(
        self, specs: tuple[subjects.BucketSpec, ...] = subjects.BUCKETS, *, replicas: int = 1
    ) -> None:
        for spec in specs:
            await self.bucket(spec, replicas=replicas)

    async def bucket(self, spec: subjects.BucketSpec, *, replicas: int = 1) -> KeyValue:
        try:
            return await self.js.key_value(spec.name)
        except nats.js.errors.BucketNotFoundError:
            config = KeyValueConfig(
                bucket=spec.name,
                history=spec.history,
                description=spec.description or None,
                ttl=spec.ttl.total_seconds() if spec.ttl else None,
                replicas=replicas,
            )
            try:
                kv = await self.js.create_key_value(config)
                log.info("bucket created", bucket=spec.name)
                return kv
            except nats.js.errors.BadRequestError:
                return await self.js.key_value(spec.name)

    async def watch_bucket(
        self,
        spec: subjects.BucketSpec,
        handler: Callable[[str, bytes | None], None],
        *,
        on_initial_done: Callable[[], None] | None = None,
    ) -> None:
        """Feed ``handler`` every key's current value, then each change (None for a deletion).

        Runs in the background; when the watcher dies (a NATS restart), it is re-created and the
        whole bucket replayed, so the handler must be idempotent (it is given values, not deltas).
        """

        async def loop() -> None:
            delay = 0.2
            initial_pending = on_initial_done is not None
            while True:
                try:
                    kv = await self.bucket(spec)
                    watcher = await kv.watchall()
                    delay = 0.2
                    async for entry in watcher:
                        if entry is None:
                            if initial_pending and on_initial_done is not None:
                                on_initial_done()
                                initial_pending = False
                            continue
                        deleted = entry.operation in ("DEL", "PURGE")
                        handler(entry.key, None if deleted else entry.value)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep watching through server restarts
                    log.warning(
                        "bucket watch lost, retrying", bucket=spec.name, error=str(exc) or type(exc).__name__
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

        self._spawn(loop(), f"watch:{spec.name}")

    # --- events ----------------------------------------------------------------------------

    async def publish_event(self, event: EventEnvelope) -> bool:
        """Publish to JetStream; returns False when the server dropped it as a duplicate."""
        ack = await self.js.publish(
            subjects.event_subject(event),
            event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": str(event.id)},
        )
        return not ack.duplicate

    async def consume_events(
        self,
        stream: subjects.StreamSpec,
        durable: str,
        handler: Callable[[Delivery[Event]], Awaitable[None]],
        *,
        filter_subject: str | None = None,
        max_deliver: int = 5,
    ) -> None:
        """Durably consume a stream of events (see :meth:`consume`)."""
        await self.consume(
            stream,
            durable,
            EVENT_ADAPTER,
            handler,
            filter_subject=filter_subject,
            max_deliver=max_deliver,
        )

    async def consume(
        self,
        stream: subjects.StreamSpec,
        durable: str,
        adapter: TypeAdapter[M],
        handler: Callable[[Delivery[M]], Awaitable[None]],
        *,
        filter_subject: str | None = None,
        max_deliver: int = 5,
        ack_wait: float = 30.0,
        batch: int = 64,
    ) -> None:
        """Start a durable pull consumer in the background.

        The message is acked only after ``handler`` returned. A handler that raises gets the
        message again after a backoff; after ``max_deliver`` attempts, or at once when the
        payload does not validate, it goes to ``deadletter.<stream>.<durable>`` and is terminated.
        """
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait,
            # The server's own limit sits above ours so the dead-letter decision stays here.
            max_deliver=max_deliver + 1,
            filter_subject=filter_subject or stream.subjects[0],
        )
        # Creating an existing durable with editable changes updates it (nats-server >= 2.10).
        await self.js.add_consumer(stream.name, config)
        psub = await self.js.pull_subscribe_bind(durable=durable, stream=stream.name)

        async def loop() -> None:
            while True:
                try:
                    msgs = await psub.fetch(batch, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except nats.errors.ConnectionClosedError:
                    return
                except Exception as exc:
                    log.warning("fetch failed", consumer=durable, error=str(exc) or type(exc).__name__)
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    await self._handle(stream.name, durable, adapter, handler, msg, max_deliver)

        self._spawn(loop(), f"consume:{durable}")

    async def consume_event_batches(
        self,
        stream: subjects.StreamSpec,
        durable: str,
        handler: Callable[[list[Delivery[Event]]], Awaitable[None]],
        *,
        filter_subject: str | None = None,
        max_deliver: int = 5,
        ack_wait: float = 30.0,
        batch: int = 256,
    ) -> None:
        """Like :meth:`consume_events`, but ``handler`` takes every valid message of one fetch at
        once (one database transaction for many events, where one per event would be the limit).

        Messages that do not validate are dead-lettered first and never reach the handler. When the
        handler raises for a batch, each message of it is handed over again alone, with the retry
        and dead-letter rules of :meth:`consume`: one poisonous event never holds up the others.
        """
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait,
            max_deliver=max_deliver + 1,
            max_ack_pending=max(1000, batch * 4),
            filter_subject=filter_subject or stream.subjects[0],
        )
        await self.js.add_consumer(stream.name, config)
        psub = await self.js.pull_subscribe_bind(durable=durable, stream=stream.name)

        async def one(delivery: Delivery[Event]) -> None:
            await handler([delivery])

        # Unsubscribed by close(): a pull request still open on the server would otherwise answer
        # into the inbox after the loop is gone, and draining the connection would wait for it.
        self._pulls.append(psub)

        async def loop() -> None:
            while True:
                try:
                    msgs = await psub.fetch(batch, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except nats.errors.ConnectionClosedError:
                    return
                except Exception as exc:
                    log.warning("fetch failed", consumer=durable, error=str(exc) or type(exc).__name__)
                    await asyncio.sleep(0.5)
                    continue
                valid: list[tuple[Msg, Delivery[Event]]] = []
                for msg in msgs:
                    try:
                        value = EVENT_ADAPTER.validate_json(msg.data)
                    except ValidationError as exc:
                        attempt = msg.metadata.num_delivered or 1
                        await self._dead_letter(
                            stream.name, durable, msg, f"invalid: {_summarize(exc)}", attempt
                        )
                        continue
                    valid.append((msg, _delivery(value, msg)))
                if not valid:
                    continue
                try:
                    await handler([delivery for _, delivery in valid])
                except Exception as exc:
                    log.warning(
                        "batch failed, handling its messages one by one",
                        consumer=durable,
                        messages=len(valid),
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    for msg, _ in valid:
                        await self._handle(stream.name, durable, EVENT_ADAPTER, one, msg, max_deliver)
                    continue
                HANDLED.labels(durable, "ok").inc(len(valid))
                for msg, _ in valid:
                    await msg.ack()

        self._spawn(loop(), f"consume:{durable}")

    async def _handle(
        self,
        stream: str,
        durable: str,
        adapter: TypeAdapter[M],
        handler: Callable[[Delivery[M]], Awaitable[None]],
        msg: Msg,
        max_deliver: int,
    ) -> None:
        attempt = msg.metadata.num_delivered or 1
        try:
            value = adapter.validate_json(msg.data)
        except ValidationError as exc:
            await self._dead_letter(stream, durable, msg, f"invalid: {_summarize(exc)}", attempt)
            return
        try:
            await handler(_delivery(value, msg))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if attempt >= max_deliver:
                await self._dead_letter(stream, durable, msg, f"failed {attempt} times: {error}", attempt)
                return
            delay = min(0.2 * 2 ** (attempt - 1), 30.0) * random.uniform(0.8, 1.2)
            log.warning(
                "handler failed, will retry",
                consumer=durable,
                subject=msg.subject,
                attempt=attempt,
                retry_in_s=round(delay, 2),
                error=error,
            )
            HANDLED.labels(durable, "retry").inc()
            await msg.nak(delay=delay)
            return
        HANDLED.labels(durable, "ok").inc()
        await msg.ack()

    async def _dead_letter(self, stream: str, durable: str, msg: Msg, error: str, attempt: int) -> None:
        seq = msg.metadata.sequence.stream if msg.metadata.sequence else 0
        log.error(
            "message dead-lettered",
            stream=stream,
            consumer=durable,
            subject=msg.subject,
            sequence=seq,
            attempts=attempt,
            error=error,
        )
        try:
            await self.js.publish(
                subjects.dead_letter(stream, durable),
                msg.data,
                headers={
                    "Nats-Msg-Id": f"{stream}:{durable}:{seq}",
                    HDR_ORIGINAL_SUBJECT: msg.subject,
                    HDR_ORIGINAL_SEQUENCE: str(seq),
                    HDR_ERROR: error[:1024],
                    HDR_DELIVERIES: str(attempt),
                },
            )
        except Exception as exc:
            log.error("dead-letter publish failed, message kept", error=str(exc) or type(exc).__name__)
            await msg.nak(delay=5.0)
            return
        DEAD_LETTERED.labels(stream, durable).inc()
        await msg.term()

    # --- core (not persisted) --------------------------------------------------------------

    async def publish(self, subject: str, message: BaseModel) -> None:
        await self.nc.publish(subject, message.model_dump_json().encode())

    async def subscribe(
        self,
        subject: str,
        model: type[Q],
        handler: Callable[[Q, str], Awaitable[None]],
        *,
        queue: str = "",
    ) -> None:
        """Subscribe to core NATS; a payload that does not validate is dead-lettered, not fatal."""

        async def on_msg(msg: Msg) -> None:
            try:
                value = model.model_validate_json(msg.data)
            except ValidationError as exc:
                await self._dead_letter_core(msg, f"invalid: {_summarize(exc)}")
                return
            try:
                await handler(value, msg.subject)
            except Exception:
                log.exception("core handler failed", subject=msg.subject)

        await self.nc.subscribe(subject, queue=queue, cb=on_msg)

    async def _dead_letter_core(self, msg: Msg, error: str) -> None:
        log.error("message dead-lettered", subject=msg.subject, error=error)
        DEAD_LETTERED.labels("core", self.name).inc()
        with contextlib.suppress(Exception):
            await self.js.publish(
                subjects.dead_letter("core", self.name),
                msg.data,
                headers={HDR_ORIGINAL_SUBJECT: msg.subject, HDR_ERROR: error[:1024], HDR_DELIVERIES: "1"},
            )

    # --- request/reply ---------------------------------------------------------------------

    async def request(self, subject: str, message: BaseModel, reply: type[R], *, timeout: float = 2.0) -> R:
        """Send a request and return the typed result; raise a :class:`BusError` otherwise."""
        try:
            msg = await self.nc.request(subject, message.model_dump_json().encode(), timeout=timeout)
        except nats.errors.NoRespondersError as exc:
            raise NoResponders(subject) from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise RequestTimeout(subject, timeout) from exc
        try:
            envelope = ReplyEnvelope.model_validate_json(msg.data)
            if not envelope.ok:
                error = envelope.error or ErrorBody(code="unknown", message="error without a body")
                raise RemoteError(error.code, error.message)
            return reply.model_validate(envelope.result or {})
        except ValidationError as exc:
            raise RemoteError("bad_reply", _summarize(exc)) from exc

    async def serve(
        self,
        subject: str,
        model: type[Q],
        handler: Callable[[Q], Awaitable[BaseModel]],
        *,
        queue: str = "",
    ) -> Any:
        """Answer requests on ``subject``; returns the subscription (unsubscribe to stop serving)."""

        async def on_msg(msg: Msg) -> None:
            try:
                request = model.model_validate_json(msg.data)
            except ValidationError as exc:
                error = _summarize(exc)
                await self._dead_letter_core(msg, f"invalid: {error}")
                await _respond(
                    msg, ReplyEnvelope(ok=False, error=ErrorBody(code="invalid_request", message=error))
                )
                return
            try:
                result = await handler(request)
                envelope = ReplyEnvelope(ok=True, result=result.model_dump(mode="json"))
            except Rejected as exc:
                envelope = ReplyEnvelope(ok=False, error=ErrorBody(code=exc.code, message=exc.message))
            except Exception as exc:
                log.exception("request handler failed", subject=msg.subject)
                envelope = ReplyEnvelope(
                    ok=False, error=ErrorBody(code="internal", message=type(exc).__name__)
                )
            await _respond(msg, envelope)

        return await self.nc.subscribe(subject, queue=queue, cb=on_msg)

    # --- internals -------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _respond(msg: Msg, envelope: ReplyEnvelope) -> None:
    if msg.reply:
        with contextlib.suppress(Exception):
            await msg.respond(envelope.model_dump_json(exclude_none=True).encode())


def _delivery(value: M, msg: Msg) -> Delivery[M]:
    metadata = msg.metadata
    return Delivery(
        value,
        msg.subject,
        metadata.num_delivered or 1,
        stream_sequence=metadata.sequence.stream if metadata.sequence else 0,
        stored_at=metadata.timestamp,
    )


def _summarize(exc: ValidationError) -> str:
    """One line naming the fields at fault, for logs and error replies."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


__all__ = [
    "Bus",
    "BusError",
    "Delivery",
    "NoResponders",
    "Rejected",
    "RemoteError",
    "ReplyEnvelope",
    "RequestTimeout",
]
