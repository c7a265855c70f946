"""A media worker process: bridges calls' audio between WebRTC and plain RTP legs.

On the bus (shared/media.py is the contract):

- ``media.session.create`` in queue group ``media``, while below capacity: the worker leaves the
  queue group (unsubscribes) when full or draining, so NATS hands requests to workers that can take
  them, and joins again below capacity. A request that still reaches a full worker gets
  ``capacity``.
- ``media.worker.<worker>.session.<session>.<verb>``: ``update`` (RemoteDescription ->
  LocalDescription), ``hold`` and ``dtmf`` (-> Done), ``prepare`` (PrepareLeg -> LocalDescription),
  ``replace`` and ``discard`` (a transfer's new leg -> Done), ``close`` (-> SessionClosed). One wildcard
  subscription serves them all.
- ``recordings.audio.<call>``: both legs' audio of recorded sessions (``services/media/recording_fork.py``),
  published by a task of its own from a bounded outbox; KV ``recordings`` gets the call's lease.
- ``media.events.<tenant>.<call>``: MediaEvents (dtmf, media_timeout, announcement_played, closed),
  published from a queue by a task of their own: the packet path only appends to that queue.

Both request subscriptions hand each message to a task of its own: nats-py runs a subscription's
callback inside the subscription's task, which unsubscribing cancels, and leaving the queue group must
never cut a reply short. Errors are typed (``Rejected``): ``capacity``, ``no_common_codec`` and
``bad_sdp`` naming the line at fault, ``no_session``, ``unsupported``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats.js.errors
from nats.aio.msg import Msg
from prometheus_client import Gauge
from pydantic import BaseModel, ValidationError

from services.media.bridge import Bridge
from services.media.chunk_outbox import ChunkOutbox
from services.media.dtmf import Digit
from services.media.ports import PortRange, PortsExhausted
from services.media.prompt import Prompt, SpeechError, chime, demo_prompt
from services.media.recording_fork import RecordingFork
from services.media.webrtc import WebRtcMux
from shared import subjects
from shared.bus import ErrorBody, Rejected, ReplyEnvelope
from shared.events import LegKind
from shared.logging import get_logger
from shared.media import (
    CloseSession,
    CreateSession,
    DiscardLegs,
    Done,
    Hold,
    MediaEvent,
    MediaEventKind,
    PrepareLeg,
    RecordingControl,
    ReleaseSessions,
    RemoteDescription,
    ReplaceLeg,
    SendDtmf,
    SessionClosed,
    SessionCreated,
)
from shared.recording import RecordingLease
from shared.service import PortInUse, ServiceContext, is_address_in_use
from shared.settings import MediaSettings

log = get_logger("echodesk.media")

#: Events waiting for the bus; beyond this (NATS gone for long) the oldest news is dropped.
_EVENT_BACKLOG = 10_000
#: What the media HorizontalPodAutoscaler scales on (deploy/k8s/base/media.yaml, through the
#: Prometheus adapter): the sessions this worker bridges now, and how many it takes at most.
ACTIVE_SESSIONS = Gauge("echodesk_media_active_sessions", "Sessions this media worker bridges now")
CAPACITY = Gauge("echodesk_media_capacity_sessions", "Sessions this media worker takes at most")
_WILDCARDS = ("0.0.0.0", "::", "")


class MediaService:
    def __init__(self, settings: MediaSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.worker_id = subjects.token(settings.instance_id)
        self.bridges: dict[str, Bridge] = {}
        self.events_dropped = 0
        self.mux: WebRtcMux | None = None
        self.ports = PortRange(settings.rtp_port_min, settings.rtp_port_max)
        self._clock = clock
        self._ctx: ServiceContext | None = None
        self._create_sub: Any = None
        self._worker_sub: Any = None
        self._creating = 0
        self._draining = False
        self._idle = asyncio.Event()
        self._wake = asyncio.Event()
        self._events: asyncio.Queue[MediaEvent] = asyncio.Queue(_EVENT_BACKLOG)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._advertised = ""
        self.outbox = ChunkOutbox(capacity=settings.recording_backlog_chunks, clock=clock)
        #: What ``announcement`` sessions (the demo line) play: the chime until :meth:`start` has
        #: the words too (services/media/prompt.py).
        self.prompt: Prompt = chime()

    @property
    def sessions(self) -> int:
        return len(self.bridges)

    # -- the Service protocol

    async def start(self, ctx: ServiceContext) -> None:
        settings = self.settings
        self._ctx = ctx
        # Read at scrape time: no bookkeeping on the session path.
        ACTIVE_SESSIONS.set_function(lambda: len(self.bridges))
        CAPACITY.set(settings.capacity)
        host = settings.bind_address
        advertised = settings.public_address or (host if host not in _WILDCARDS else "")
        if not advertised:
            # Peers cannot reach 0.0.0.0; a deployment sets the public address (PEERS.md: one-way audio).
            advertised = "127.0.0.1"
            log.warning(
                "media_public_address_unset", advertised=advertised, setting="ECHODESK_MEDIA_PUBLIC_ADDRESS"
            )
        self._advertised = advertised
        self.prompt = await asyncio.to_thread(self._demo_prompt)
        try:
            self.mux = await WebRtcMux.listen(host, settings.webrtc_port, advertised_address=advertised)
        except OSError as exc:
            if is_address_in_use(exc):
                raise PortInUse(MediaSettings, "webrtc_port", settings.webrtc_port) from exc
            raise
        nc = ctx.bus.nc
        self._worker_sub = await nc.subscribe(
            subjects.media_worker_sessions(self.worker_id), cb=self._spawn_reply(self._session_request)
        )
        await ctx.bus.subscribe(subjects.media_release(), ReleaseSessions, self._release)
        await self._join()
        self._spawn(self._publish_events(), "media-events")
        self._spawn(self.outbox.run(ctx.bus), "media-recording-chunks")
        self._spawn(self._watch_timeouts(), "media-timeouts")
        if settings.quality_interval_s > 0:
            self._spawn(self._report_quality(settings.quality_interval_s), "media-quality")
        self._spawn(self._keep_membership(), "media-queue-membership")
        log.info(
            "media_worker_ready",
            worker=self.worker_id,
            webrtc_port=self.mux.port,
            rtp_ports=f"{self.ports.low}-{self.ports.high}",
            advertised=advertised,
            capacity=settings.capacity,
        )

    def _demo_prompt(self) -> Prompt:
        """The demo line's prompt, encoded in both G.711 laws (in a thread: espeak-ng, files)."""
        settings = self.settings
        try:
            prompt = demo_prompt(settings.demo_words, settings.demo_voice, settings.data_dir / "prompts")
        except SpeechError as exc:
            log.warning("demo_words_not_spoken", error=str(exc), setting="ECHODESK_MEDIA_DEMO_VOICE")
            prompt = chime()
        for law in ("PCMU", "PCMA"):
            prompt.frames(law)
        log.info("demo_prompt_ready", prompt=prompt.name, seconds=round(prompt.duration_s, 2))
        return prompt

    async def drain(self) -> None:
        """Take no new sessions (leave the queue group) and return when the last one closed."""
        self._draining = True
        await self._leave()
        if not self.bridges:
            return
        log.info("media_draining", sessions=len(self.bridges))
        self._idle.clear()
        while self.bridges:
            await self._idle.wait()
            self._idle.clear()

    async def stop(self) -> None:
        self._draining = True
        for session_id in list(self.bridges):
            self._close(session_id, "worker stopped")
        await self._leave()
        if self._worker_sub is not None:
            with contextlib.suppress(Exception):
                await self._worker_sub.unsubscribe()
            self._worker_sub = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._events.join()  # the CLOSED events reach the bus if it is there
        if self._ctx is not None:
            # The last chunks and END marks of recorded calls: without them a recorder waits.
            await self.outbox.flush(self._ctx.bus, timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.mux is not None:
            self.mux.close()

    def load(self) -> tuple[int, int]:
        return (len(self.bridges), self.settings.capacity)

    # -- queue group membership

    def _full(self) -> bool:
        return self._draining or len(self.bridges) + self._creating >= self.settings.capacity

    async def _join(self) -> None:
        if self._create_sub is None and self._ctx is not None and not self._draining:
            self._create_sub = await self._ctx.bus.nc.subscribe(
                subjects.media_session_create(),
                queue=subjects.MEDIA_QUEUE,
                cb=self._spawn_reply(self._create_request),
            )
            with contextlib.suppress(Exception):
                # Once the server has the interest, requests reach us (a PING round trip).
                await self._ctx.bus.nc.flush(timeout=2)
            log.info("media_queue_joined", worker=self.worker_id, sessions=len(self.bridges))

    async def _leave(self) -> None:
        subscription, self._create_sub = self._create_sub, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            log.info("media_queue_left", worker=self.worker_id, sessions=len(self.bridges))

    async def _keep_membership(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._full():
                await self._leave()
            else:
                await self._join()

    # -- requests

    def _spawn_reply(
        self, handler: Callable[[Msg], Awaitable[BaseModel]]
    ) -> Callable[[Msg], Awaitable[None]]:
        async def on_msg(msg: Msg) -> None:
            self._spawn(self._reply(msg, handler), "media-request")

        return on_msg

    async def _reply(self, msg: Msg, handler: Callable[[Msg], Awaitable[BaseModel]]) -> None:
        try:
            result = await handler(msg)
            envelope = ReplyEnvelope(ok=True, result=result.model_dump(mode="json"))
        except Rejected as exc:
            envelope = ReplyEnvelope(ok=False, error=ErrorBody(code=exc.code, message=exc.message))
        except ValidationError as exc:
            envelope = ReplyEnvelope(ok=False, error=ErrorBody(code="invalid_request", message=_summary(exc)))
        except Exception as exc:
            log.exception("media_request_failed", subject=msg.subject)
            envelope = ReplyEnvelope(ok=False, error=ErrorBody(code="internal", message=type(exc).__name__))
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(envelope.model_dump_json(exclude_none=True).encode())

    async def _create_request(self, msg: Msg) -> SessionCreated:
        request = CreateSession.model_validate_json(msg.data)
        return await self.create(request)

    async def create(self, request: CreateSession) -> SessionCreated:
        if self._full():
            what = (
                "draining"
                if self._draining
                else f"full ({len(self.bridges)}/{self.settings.capacity} sessions)"
            )
            raise Rejected("capacity", f"media worker {self.worker_id} is {what}")
        assert self.mux is not None
        self._creating += 1
        session_id = uuid.uuid4().hex
        fork = RecordingFork(request.tenant_id, request.call_id, self.outbox) if request.record else None
        bridge = Bridge(
            session_id,
            request,
            mux=self.mux,
            ports=self.ports,
            rtp_host=self.settings.bind_address,
            advertised_address=self._advertised,
            on_digit=lambda leg, digit: self._digit(bridge, leg, digit),
            clock=self._clock,
            fork=fork,
            prompt=self.prompt,
            on_played=lambda: self._emit(bridge, MediaEventKind.ANNOUNCEMENT_PLAYED, leg=LegKind.AGENT),
        )
        try:
            agent_sdp, customer_sdp = await bridge.open()
        except PortsExhausted as exc:
            bridge.close()
            raise Rejected("capacity", str(exc)) from None
        except BaseException:
            bridge.close()
            raise
        finally:
            self._creating -= 1
        self.bridges[session_id] = bridge
        self._wake.set()
        if fork is not None:
            self._spawn(self._request_recorder(request.call_id), "media-recording-lease")
        log.info(
            "media_session_created",
            session=session_id,
            kind=request.kind.value,
            call=request.call_id,
            sessions=len(self.bridges),
        )
        return SessionCreated(
            worker_id=self.worker_id, session_id=session_id, agent_sdp=agent_sdp, customer_sdp=customer_sdp
        )

    async def _session_request(self, msg: Msg) -> BaseModel:
        parts = msg.subject.split(".")
        if len(parts) != 6:
            raise Rejected("bad_subject", msg.subject)
        session_id, verb = parts[4], parts[5]
        bridge = self.bridges.get(session_id)
        if bridge is None:
            raise Rejected("no_session", f"no session {session_id} on media worker {self.worker_id}")
        if verb == "update":
            return bridge.update(RemoteDescription.model_validate_json(msg.data))
        if verb == "hold":
            bridge.hold(Hold.model_validate_json(msg.data))
            return Done()
        if verb == "dtmf":
            bridge.send_dtmf(SendDtmf.model_validate_json(msg.data))
            return Done()
        if verb == "record":
            bridge.set_recording_paused(RecordingControl.model_validate_json(msg.data).paused)
            return Done()
        if verb == "prepare":
            try:
                return await bridge.prepare(PrepareLeg.model_validate_json(msg.data))
            except PortsExhausted as exc:
                raise Rejected("capacity", str(exc)) from None
        if verb == "replace":
            bridge.replace(ReplaceLeg.model_validate_json(msg.data))
            return Done()
        if verb == "discard":
            bridge.discard(DiscardLegs.model_validate_json(msg.data).leg)
            return Done()
        if verb == "close":
            request = CloseSession.model_validate_json(msg.data)
            return self._close(session_id, request.reason)
        raise Rejected(
            "unknown_verb",
            f"{verb!r} is not update, hold, dtmf, record, prepare, replace, discard or close",
        )

    async def _release(self, release: ReleaseSessions, _subject: str) -> None:
        """A signaling instance restarted: the sessions it owned bridge calls that no longer exist,
        except those of the calls it took over."""
        keep = set(release.keep)
        orphans = [
            sid
            for sid, bridge in self.bridges.items()
            if bridge.request.owner == release.owner and sid not in keep
        ]
        for session_id in orphans:
            self._close(session_id, release.reason)
        if orphans:
            log.info("media_sessions_released", owner=release.owner, sessions=len(orphans))

    def _close(self, session_id: str, reason: str) -> SessionClosed:
        bridge = self.bridges.pop(session_id)
        bridge.close()
        quality = bridge.quality()
        self._emit(bridge, MediaEventKind.CLOSED, quality=quality, detail=reason)
        log.info("media_session_closed", session=session_id, reason=reason, sessions=len(self.bridges))
        self._wake.set()
        if not self.bridges:
            self._idle.set()
        return SessionClosed(quality=quality)

    async def _request_recorder(self, call_id: str) -> None:
        """Put an unclaimed lease for the call in KV ``recordings``: recorders watch it and one claims
        it. Not on the session's critical path; recorders also find calls whose audio waits without a
        lease, so a failure here delays the recording and loses nothing."""
        assert self._ctx is not None
        value = RecordingLease().model_dump_json().encode()
        for attempt in range(5):
            try:
                kv = await self._ctx.bus.bucket(subjects.RECORDINGS_KV)
                await kv.create(call_id, value)
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                return  # already there (a recorder found the audio first)
            except Exception as exc:
                log.warning(
                    "recording_lease_not_created",
                    call=call_id,
                    attempt=attempt + 1,
                    error=str(exc) or type(exc).__name__,
                )
                await asyncio.sleep(0.2 * 2**attempt)

    # -- events

    def _digit(self, bridge: Bridge, leg: LegKind, digit: Digit) -> None:
        self._emit(bridge, MediaEventKind.DTMF, leg=leg, digit=digit.digit, duration_ms=digit.duration_ms)

    def _emit(self, bridge: Bridge, kind: MediaEventKind, **fields: Any) -> None:
        """Queue an event for the publisher task: called on the packet path, so it never waits."""
        event = MediaEvent(
            tenant_id=bridge.request.tenant_id,
            call_id=bridge.request.call_id,
            session_id=bridge.session_id,
            worker_id=self.worker_id,
            kind=kind,
            **fields,
        )
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self.events_dropped += 1

    async def _publish_events(self) -> None:
        assert self._ctx is not None
        bus = self._ctx.bus
        while True:
            event = await self._events.get()
            try:
                await bus.publish(subjects.media_events(event.tenant_id, event.call_id), event)
            except Exception as exc:
                log.warning(
                    "media_event_not_published", kind=event.kind.value, error=str(exc) or type(exc).__name__
                )
            finally:
                self._events.task_done()

    async def _watch_timeouts(self) -> None:
        limit = self.settings.media_timeout_s
        period = min(1.0, max(0.05, limit / 4))
        while True:
            await asyncio.sleep(period)
            now = self._clock()
            for bridge in list(self.bridges.values()):
                for leg in bridge.timed_out_legs(now, limit):
                    log.info("media_timeout", session=bridge.session_id, leg=leg.value)
                    self._emit(bridge, MediaEventKind.MEDIA_TIMEOUT, leg=leg, detail=f"no RTP for {limit:g}s")

    async def _report_quality(self, interval: float) -> None:
        """Every session's per-leg figures, for the call's quality chart and its summary at the end
        (the worker computes them from its RTCP and reception statistics, RFC 3550 6.4)."""
        while True:
            await asyncio.sleep(interval)
            for bridge in list(self.bridges.values()):
                quality = bridge.quality()
                if any(leg.packets_received for leg in quality):
                    self._emit(bridge, MediaEventKind.QUALITY, quality=quality)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


__all__ = ["MediaService"]
