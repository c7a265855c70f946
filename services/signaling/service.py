"""The signaling service process: owns the SIP transports and, through them, every call's signaling."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from functools import partial

from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from pydantic import ValidationError

from services.signaling.b2bua.call_store import PURGE_EVERY_S, CallStore, load, purge_ended
from services.signaling.b2bua.calls import BusMedia, Calls
from services.signaling.contacts import ContactDirectory
from services.signaling.directory import AgentDirectory
from services.signaling.messaging.messages import Messages
from services.signaling.messaging.pending import JetStreamPending, PendingMessage
from services.signaling.stack import SipStack
from services.signaling.tenants import TenantDirectory
from services.signaling.trunk.trunks import Trunks
from shared import subjects
from shared.bus import Bus
from shared.commands import COMMANDS
from shared.conversations import threaded
from shared.events import EventEnvelope
from shared.heartbeat import Heartbeat
from shared.logging import get_logger
from shared.media import MediaEvent, ReleaseSessions
from shared.messages import SendMessage
from shared.service import ServiceContext
from shared.settings import SignalingSettings

log = get_logger("echodesk.signaling")

#: How often calls are checked against their media workers' heartbeats (s).
WORKER_CHECK_S = 0.5
#: Events waiting for NATS; beyond this the oldest are dropped (logged) rather than stall SIP.
EVENT_QUEUE_LIMIT = 10000
#: Events published per acknowledgement (see _publish_batch).
EVENT_BATCH = 256
#: How long a batch's acknowledgement may take before the batch is sent again.
EVENT_ACK_TIMEOUT_S = 5.0
#: How long reading the previous incarnation's calls (KV ``calls``) may hold the start up.
CALLS_LOAD_TIMEOUT_S = 10.0


class SignalingService:
    def __init__(self, settings: SignalingSettings) -> None:
        self.settings = settings
        self.directory = AgentDirectory()
        self.tenants = TenantDirectory()
        self.contacts = ContactDirectory()
        self.stack: SipStack | None = None
        self.trunks: Trunks | None = None
        self.calls: Calls | None = None
        self.messages: Messages | None = None
        self._events: asyncio.Queue[EventEnvelope] = asyncio.Queue(EVENT_QUEUE_LIMIT)
        self._publisher: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.store: CallStore | None = None
        self._store_tasks: list[asyncio.Task[None]] = []

    async def start(self, ctx: ServiceContext) -> None:
        self.stack = SipStack(self.settings, self.directory, self._publish, server_tls=self._server_tls())
        # What a previous incarnation of this instance left in KV ``calls`` (b2bua/snapshot.py): read
        # first, so its calls are taken over the moment the transports are bound again.
        node = subjects.token(self.settings.instance_id)
        calls_kv: KeyValue | None = None
        inherited: dict[str, bytes] = {}
        try:
            async with asyncio.timeout(CALLS_LOAD_TIMEOUT_S):
                calls_kv = await ctx.bus.bucket(subjects.CALLS_KV)
                inherited = await load(calls_kv, node)
        except Exception as exc:  # JetStream not answering: serve new calls rather than none
            log.error("calls of the previous incarnation not read", error=str(exc) or type(exc).__name__)
        if inherited:
            log.info("calls left by the previous incarnation", count=len(inherited))
        loaded = asyncio.Event()
        await ctx.bus.watch_bucket(subjects.AGENTS_KV, self._agent_changed, on_initial_done=loaded.set)
        # Registrations are only answered once the agents are known (else everyone gets 401).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await loaded.wait()
        log.info("agents loaded", count=len(self.directory))
        # Tenants' policies (whether their calls are recorded) before the first call is routed.
        tenants_loaded = asyncio.Event()
        await ctx.bus.watch_bucket(
            subjects.TENANTS_KV, self.tenants.apply, on_initial_done=tenants_loaded.set
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await tenants_loaded.wait()
        # The helpdesk's contact ids of customers' numbers (put on their events by _publish).
        await ctx.bus.watch_bucket(subjects.CONTACTS_KV, self.contacts.apply)
        self._publisher = asyncio.create_task(self._publish_events(ctx))
        await self.stack.start()
        # Trunks register once the transports are bound: their Contact names our listening ports.
        self.trunks = Trunks(self.stack, self.settings, self._publish)
        trunks_loaded = asyncio.Event()
        await ctx.bus.watch_bucket(subjects.TRUNKS_KV, self.trunks.apply, on_initial_done=trunks_loaded.set)
        # Calls are routed only once the trunks are known (else the dial plan finds none).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await trunks_loaded.wait()
        self.calls = Calls(
            self.stack,
            self.settings,
            self.directory,
            self.trunks,
            BusMedia(ctx.bus),
            self._publish,
            self.tenants,
        )
        # Connected calls of the previous incarnation carry on here; the sessions of the others
        # bridge calls that ended with it: the workers close those now.
        self.store = CallStore(self.calls.node, self.calls.snapshot)
        self.calls.store = self.store
        kept = await self.calls.resume(inherited)
        release = ReleaseSessions(owner=self.calls.node, keep=kept)
        await ctx.bus.publish(subjects.media_release(self.calls.node), release)
        self._store_tasks = [asyncio.create_task(self._keep_calls(ctx, calls_kv))]
        # The workers' reports on our calls' sessions, and their heartbeats: a worker that dies
        # takes its calls down with it, and they must end on both legs at once.
        await ctx.bus.subscribe(subjects.media_events(), MediaEvent, self._media_event)
        await ctx.bus.subscribe(subjects.heartbeat("media"), Heartbeat, self._media_heartbeat)
        self._watchdog = asyncio.create_task(self._watch_workers())
        # Text messages (RFC 3428); those waiting for an agent are kept in JetStream.
        self.messages = Messages(
            self.stack, self.settings, self.directory, self.trunks, self._publish, JetStreamPending(ctx.bus)
        )
        self.messages.start()
        await ctx.bus.serve(
            subjects.message_command("send"), SendMessage, self.messages.send, queue=subjects.SIGNALING_QUEUE
        )
        # Messages another instance keeps for agents registered here.
        await ctx.bus.nc.subscribe(subjects.pending_message(), cb=self._pending_message)
        # The api's commands for this instance's calls (shared/commands.py).
        for verb, model in COMMANDS.items():
            await ctx.bus.serve(
                subjects.call_command(self.calls.node, verb), model, partial(self.calls.command, verb)
            )

    async def _pending_message(self, msg: Msg) -> None:
        if self.messages is None:
            return
        try:
            message = PendingMessage.model_validate_json(msg.data)
        except ValidationError:
            log.warning("unreadable pending message ignored", subject=msg.subject)
            return
        self.messages.pending_arrived(message)

    async def _keep_calls(self, ctx: ServiceContext, kv: KeyValue | None) -> None:
        """Write the calls' snapshots (b2bua/call_store.py), once the bucket can be had."""
        delay = 0.5
        while kv is None:
            try:
                kv = await ctx.bus.bucket(subjects.CALLS_KV)
            except Exception as exc:
                log.warning("KV calls unavailable, retrying", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        assert self.store is not None
        self._store_tasks.append(asyncio.create_task(_purge_now_and_then(kv)))
        await self.store.run(kv)

    async def _media_event(self, event: MediaEvent, _subject: str) -> None:
        if self.calls is not None:
            self.calls.media_event(event)

    async def _media_heartbeat(self, beat: Heartbeat, _subject: str) -> None:
        if self.calls is not None:
            now = asyncio.get_running_loop().time()
            self.calls.workers.alive(subjects.token(beat.instance_id), now, beat.interval_s)

    async def _watch_workers(self) -> None:
        while True:
            await asyncio.sleep(WORKER_CHECK_S)
            if self.calls is not None:
                self.calls.check_workers(asyncio.get_running_loop().time())

    def _agent_changed(self, key: str, value: bytes | None) -> None:
        before, after = self.directory.apply(key, value)
        if self.stack is not None and before is not None and (after is None or not after.enabled):
            self.stack.agent_removed(before)

    def _publish(self, event: EventEnvelope) -> None:
        # Calls and messages with a customer carry the customer's conversation and contact ids.
        event = self.contacts.tag(threaded(event))
        if self._events.full():
            dropped = self._events.get_nowait()
            self._events.task_done()
            log.error("event queue full, dropping oldest", type=getattr(dropped, "type", "?"))
        self._events.put_nowait(event)

    async def _publish_events(self, ctx: ServiceContext) -> None:
        while True:
            batch = [await self._events.get()]
            while len(batch) < EVENT_BATCH and not self._events.empty():
                batch.append(self._events.get_nowait())
            encoded = [(subjects.event_subject(e), e.model_dump_json().encode(), str(e.id)) for e in batch]
            delay = 0.1
            while not await _publish_batch(ctx.bus, encoded):  # NATS down: keep the events, retry
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            for _ in batch:
                self._events.task_done()

    def _server_tls(self) -> ssl.SSLContext | None:
        cert, key = self.settings.tls_cert_file, self.settings.tls_key_file
        if cert is None or key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    async def drain(self) -> None:
        await self._flush_events()

    async def _flush_events(self) -> None:
        # Let queued events reach NATS before the process goes (bounded by the drain deadline).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.drain_timeout_s):
                await self._events.join()

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.messages is not None:
            await self.messages.stop()
        if self.calls is not None:
            # Connected calls are either ended or left to a successor (KV calls, b2bua/snapshot.py).
            await self.calls.stop(hand_over=self.settings.keep_calls_on_stop)
        if self.store is not None:
            # The calls' final state (deleted snapshots) reaches KV before the process goes.
            await self.store.flushed(self.settings.drain_timeout_s)
        for task in self._store_tasks:
            task.cancel()
        if self.trunks is not None:
            await self.trunks.stop()
            await self._flush_events()
        if self.stack is not None:
            await self.stack.stop()
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher

    def load(self) -> tuple[int, int]:
        if self.stack is None:
            return (0, 0)
        return (self.calls.active if self.calls is not None else 0, 0)


async def _purge_now_and_then(kv: KeyValue) -> None:
    while True:
        await purge_ended(kv)
        await asyncio.sleep(PURGE_EVERY_S)


async def _publish_batch(bus: Bus, batch: list[tuple[str, bytes, str]]) -> bool:
    """Publish (subject, data, event id) in order; False when the batch must be sent again.

    All but the last go out as plain publishes and only the last waits for JetStream's
    acknowledgement: the server handles one connection's messages in order, so that ack stands for
    the batch (an ack each serialised every event behind a round trip and cost nats-server a reply
    per event). When it does not come the whole batch is resent, and the stream's de-duplication by
    ``Nats-Msg-Id`` (the event id) drops what it already had, as for a single lost ack before.
    """
    try:
        for subject, data, msg_id in batch[:-1]:
            await bus.nc.publish(subject, data, headers={"Nats-Msg-Id": msg_id})
        subject, data, msg_id = batch[-1]
        future = await bus.js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id})
        await asyncio.wait([future], timeout=EVENT_ACK_TIMEOUT_S)
        if not future.done():
            future.cancel()  # releases its slot in nats-py's window of pending acks
            raise TimeoutError(f"no acknowledgement within {EVENT_ACK_TIMEOUT_S:g}s")
        future.result()
    except Exception as exc:
        log.warning("event publish failed, retrying", error=str(exc) or type(exc).__name__)
        return False
    return True
