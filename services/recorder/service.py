"""A recorder process: claims calls' recordings, turns their audio chunks into files, stores and
announces them.

For each call it holds the lease of (``leases.py``), the recorder takes the chunks of
``recordings.audio.<call>`` two ways and applies each once (by its per-call sequence) to the call's
WAV in the spool (``<recordings_dir>/.spool``):

- live, by a plain subscription to the call's subject: no JetStream consumer per call, because the
  server signals every consumer of a stream for every message it stores, and a few hundred filtered
  consumers cost nats-server more than a core (``bench/recorder_throughput.py``);
- from the stream, by batched direct gets (:meth:`RecorderService._catch_up`, no consumer at all)
  that read what the call already holds: at the claim (what was said before it, or before a predecessor died)
  and whenever chunks are missing (a reconnection lost some live ones, or the END mark came first).

Every ``checkpoint_interval_s`` the WAV is synced and the progress written beside it. Chunks stay in
the stream until the recording is stored, so whoever takes over a call (this recorder died, was cut
off, or drained) rebuilds the file from the stream, skipping what the spool's checkpoint already
holds when it can read it (a shared volume): either way the file has no hole.

After the END mark (or, when its worker died, ``call.ended`` and a short grace; or a silence of
``abandon_after_s``): the WAV is closed, stored with its metadata, ``recording.completed`` published,
the lease marked done and the call's chunks purged. Then, off the hot path, the Opus copy is made
and stored, and ``recording.compressed`` published. ``recording.failed`` names what went wrong (an
unknown codec, a store that stayed unreachable: the WAV is then kept under ``.unstored/``, never
lost silently).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import random
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from services.recorder.call_recording import RATE, CallRecording, UnsupportedCodec
from services.recorder.leases import LeaseBook, LeaseLost
from services.recorder.retention import Listing, RetentionJob, expired, group_keys, listing_for
from services.recorder.storage import Storage, StorageError, object_key, storage_for
from shared import subjects
from shared.bus import Rejected
from shared.events import (
    CallEnded,
    EventEnvelope,
    RecordingCompleted,
    RecordingCompletedData,
    RecordingCompressed,
    RecordingCompressedData,
    RecordingDeleted,
    RecordingDeletedData,
    RecordingFailed,
    RecordingFailedData,
    RecordingStarted,
    RecordingStartedData,
    parse_event,
)
from shared.logging import get_logger
from shared.recording import DeleteRecording, MalformedChunk, RecordingDeletion, RecordingLease
from shared.records import TenantRecord
from shared.service import ServiceContext, StartFailed
from shared.settings import RecorderSettings

log = get_logger("echodesk.recorder")

ACTIVE = Gauge("echodesk_recorder_active", "Recordings this recorder writes")
OUTCOMES = Counter("echodesk_recorder_recordings_total", "Finished recordings by outcome", ["outcome"])
CHUNKS = Counter("echodesk_recorder_chunks_total", "Chunks by outcome", ["outcome"])
CATCH_UP = Histogram(
    "echodesk_recorder_catch_up_seconds",
    "Reading a call's chunks from the stream (at a claim, or to fill a gap)",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
END_TO_STORED = Histogram(
    "echodesk_recorder_end_to_completed_seconds",
    "From the END mark's arrival to recording.completed",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)

#: Event ids derive from the recording, so a successor that announces again is de-duplicated.
_EVENT_NAMESPACE = uuid.UUID("6f7c1e9a-5d0b-4c1e-9e8a-2a4f3b7d9c10")
#: After the END mark, how long chunks it counts may still come before the file is closed without them.
_MISSING_GRACE_S = 2.0

_SPOOL = ".spool"
_UNSTORED = ".unstored"


@dataclass(eq=False)
class Active:
    """A recording this recorder owns right now."""

    call_id: str
    lease: RecordingLease
    recording: CallRecording
    subscription: Any = None
    #: A catch-up from the stream is running; ``catch_up_again`` asks for another pass after it.
    catching_up: bool = False
    catch_up_again: bool = False
    #: Stream sequence the next read starts at: everything before it was read once already.
    read_from: int = 1
    #: The stream was read again after the claim: a message the server routed before it had our
    #: subscription but stored after our first read (a moment's window) is in by then.
    reread: bool = False
    #: Checkpoints in a row that found chunks missing below the newest: two make a catch-up.
    gapped: int = 0
    last_chunk_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    #: When signaling's call.ended arrived: a worker that died sends no END mark.
    call_ended_at: float | None = None
    #: When the stream was last asked whether the call ended (see ``_look_for_call_end``).
    end_looked_for_at: float = 0.0
    stopping: bool = False
    #: Writing to the spool failed (a full disk): since when, why, and how often in all. The writes
    #: are retried (the stream is read again) for ``disk_retry_s``, then the call is handed on.
    disk_error_since: float | None = None
    disk_error: str = ""
    write_failures: int = 0
    #: ``write_failures`` at the last checkpoint: none since then means the disk took writes again.
    failures_checked: int = 0


class RecorderService:
    def __init__(
        self,
        settings: RecorderSettings,
        *,
        storage: Storage | None = None,
        listing: Listing | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        #: Wall clock of the retention schedule (tests pass a virtual one).
        self.clock = clock
        #: Each tenant's ``retention_days`` (KV ``tenants``); a tenant not here keeps its recordings.
        self.retention: dict[str, int] = {}
        self._listing = listing
        self.active: dict[str, Active] = {}
        self.storage = storage or storage_for(settings)
        self.spool = settings.recordings_dir / _SPOOL
        self._ctx: ServiceContext | None = None
        self._leases: LeaseBook | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._nudge = asyncio.Event()
        self._encoder: ProcessPoolExecutor | None = None
        self._draining = False
        #: After a full disk made this recorder hand a call on, it claims nothing until then
        #: (monotonic): a recorder with space takes the call meanwhile.
        self._claims_paused_until = 0.0
        self._claiming: set[str] = set()
        #: Claims set up at once (two KV requests each).
        self._setting_up = asyncio.Semaphore(64)
        #: Reads of the stream at once, so a burst (a recorder taking over a dead one's calls) shares
        #: the server fairly with the live traffic.
        self._reading = asyncio.Semaphore(32)

    # -- the Service protocol

    async def start(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        settings = self.settings
        try:
            # Fail at start-up, not at the first call, when the recordings directory is unusable.
            self.spool.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartFailed(
                f"recordings directory {settings.recordings_dir}: {exc.strerror or exc}"
            ) from exc
        log.info(
            "recordings directory", path=str(settings.recordings_dir.resolve()), storage=settings.storage
        )
        owner = subjects.token(settings.instance_id)
        self._leases = LeaseBook(ctx.bus, owner, settings.lease_s)
        await self._leases.watch(lambda _key: self._nudge.set())
        self._spawn(self._claim_loop(), "recorder-claims")
        self._spawn(self._renew_loop(), "recorder-renewals")
        self._spawn(self._checkpoint_loop(), "recorder-checkpoints")
        self._spawn(self._discover_loop(), "recorder-discovery")
        await ctx.bus.watch_bucket(subjects.TENANTS_KV, self._tenant_changed)
        self._spawn(self._retention_loop(), "recorder-retention")
        await ctx.bus.nc.subscribe(subjects.call_events(), cb=self._on_call_event)
        await ctx.bus.serve(
            subjects.recording_command("delete"), DeleteRecording, self._delete, queue=subjects.RECORDER_QUEUE
        )

    async def drain(self) -> None:
        """Claim nothing more; checkpoint every recording and hand its lease back, so another
        recorder resumes it at once (calls last longer than a drain deadline)."""
        self._draining = True
        for active in list(self.active.values()):
            await self._hand_back(active)

    async def stop(self) -> None:
        self._draining = True
        for active in list(self.active.values()):
            await self._hand_back(active)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.storage.close()
        if self._listing is not None:
            await self._listing.close()
        if self._encoder is not None:
            self._encoder.shutdown(wait=False, cancel_futures=True)

    def load(self) -> tuple[int, int]:
        return (len(self.active), self.settings.capacity)

    # -- claiming

    async def _claim_loop(self) -> None:
        period = max(0.05, self.settings.lease_s / 4)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._nudge.wait()
            self._nudge.clear()
            if self._draining or time.monotonic() < self._claims_paused_until:
                continue
            assert self._leases is not None
            for key in self._leases.candidates():
                if len(self.active) + len(self._claiming) >= self.settings.capacity:
                    break
                if key not in self._claiming:
                    self._claiming.add(key)
                    self._spawn(self._claim(key), f"recorder-claim:{key}")

    async def _claim(self, call_id: str) -> None:
        assert self._leases is not None
        try:
            # The least loaded recorder tends to win the race for a new call.
            await asyncio.sleep(random.uniform(0, 0.01) + 0.02 * len(self.active) / self.settings.capacity)
            async with self._setting_up:
                lease = await self._leases.claim(call_id)
                if lease is None or self._draining:
                    if lease is not None:
                        await self._leases.release(call_id)
                    return
                await self._begin(call_id, lease)
        except Exception as exc:
            log.warning("recording_claim_failed", call=call_id, error=str(exc) or type(exc).__name__)
            active = self.active.pop(call_id, None)
            if active is not None:
                await self._unsubscribe(active)
                active.recording.close()
                ACTIVE.set(len(self.active))
            if call_id in self._leases.held:
                with contextlib.suppress(Exception):
                    await self._leases.release(call_id)
        finally:
            self._claiming.discard(call_id)

    async def _begin(self, call_id: str, lease: RecordingLease) -> None:
        assert self._ctx is not None
        assert lease.recording_id is not None
        # Files opened (and a checkpoint read) off the event loop: claims come in bursts.
        recording, resumed = await asyncio.to_thread(
            CallRecording.open, self.spool, call_id, lease.recording_id
        )
        recording.progress.announced |= lease.announced
        active = Active(call_id, lease, recording)
        self.active[call_id] = active
        ACTIVE.set(len(self.active))
        log.info(
            "recording_claimed",
            call=call_id,
            recording=lease.recording_id,
            claims=lease.claims,
            resumed_chunks=recording.progress.seen_below if resumed else None,
        )

        async def on_msg(msg: Msg) -> None:
            self._on_chunk(active, msg.data)

        # Live first, then the stream: nothing published between the two is missed, and what both
        # deliver is applied once.
        active.subscription = await self._ctx.bus.nc.subscribe(subjects.recording_audio(call_id), cb=on_msg)
        self._spawn(self._catch_up(active), f"recorder-catch-up:{call_id}")

    async def _catch_up(self, active: Active) -> None:
        """Apply what the stream holds for the call and was not applied yet, then stop reading it."""
        if active.catching_up:
            active.catch_up_again = True
            return
        assert self._ctx is not None
        active.catching_up = True
        started = time.monotonic()
        try:
            while True:
                active.catch_up_again = False
                await self._read_stream(active)
                if not active.catch_up_again or active.stopping:
                    break
        except (TimeoutError, nats.errors.Error, RuntimeError) as exc:
            # NATS went away mid-read: what is still missing shows as a gap and is read again.
            log.warning(
                "recording_catch_up_failed", call=active.call_id, error=str(exc) or type(exc).__name__
            )
        finally:
            active.catching_up = False
            CATCH_UP.observe(time.monotonic() - started)

    async def _read_stream(self, active: Active) -> None:
        """Batches of the call's messages by direct get (no consumer), from after the last one read."""
        recording = active.recording
        async with self._reading:
            while not active.stopping:
                batch, pending = await self._direct_get(active.call_id, active.read_from)
                for sequence, data in batch:
                    if not recording.has(data):  # (a stopped recording ignores the rest)
                        self._on_chunk(active, data)
                    active.read_from = sequence + 1
                if not batch or not pending:
                    return

    async def _direct_get(self, call_id: str, start: int) -> tuple[list[tuple[int, bytes]], int]:
        """Up to 256 messages of the call's subject from stream sequence ``start`` (ADR-31 batched
        direct get: the messages, then a 204 status closing the batch; 404 when there are none);
        returns them with their stream sequences, and how many more there are."""
        assert self._ctx is not None
        nc = self._ctx.bus.nc
        inbox = nc.new_inbox()
        replies: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_reply(msg: Msg) -> None:
            replies.put_nowait(msg)

        subscription = await nc.subscribe(inbox, cb=on_reply)
        request = {"seq": start, "next_by_subj": subjects.recording_audio(call_id), "batch": 256}
        batch: list[tuple[int, bytes]] = []
        try:
            await nc.publish(
                f"$JS.API.DIRECT.GET.{subjects.RECORDING_AUDIO.name}",
                json.dumps(request).encode(),
                reply=inbox,
            )
            while True:
                async with asyncio.timeout(10.0):
                    msg = await replies.get()
                headers = msg.headers or {}
                status = headers.get("Status")
                if status == "404":
                    return batch, 0
                if status is not None:
                    if status != "204":
                        raise RuntimeError(
                            f"direct get of {call_id}: status {status} {headers.get('Description')}"
                        )
                    return batch, int(headers.get("Nats-Num-Pending", "0"))
                batch.append((int(headers["Nats-Sequence"]), msg.data))
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    # -- chunks

    def _on_chunk(self, active: Active, data: bytes) -> None:
        if active.stopping:
            return
        assert self._leases is not None
        if not self._leases.holds(active.call_id):
            active.stopping = True
            self._spawn(self._lost(active), f"recorder-lost:{active.call_id}")
            return
        recording = active.recording
        try:
            recording.apply(data)
            CHUNKS.labels("applied").inc()
        except MalformedChunk as exc:
            CHUNKS.labels("malformed").inc()
            log.warning("recording_chunk_malformed", call=active.call_id, error=str(exc))
        except UnsupportedCodec as exc:
            active.stopping = True
            self._spawn(self._fail(active, str(exc)), f"recorder-fail:{active.call_id}")
            return
        except OSError as exc:
            # A full or failing disk: the chunk is not marked applied (it stays in the stream) and
            # is read again at the next checkpoints, until ``disk_retry_s`` runs out.
            CHUNKS.labels("write_failed").inc()
            active.read_from = 1
            self._write_failed(active, exc)
            return
        active.last_chunk_at = time.monotonic()
        progress = recording.progress
        if not progress.announced and progress.tenant_id is not None:
            progress.announced = True
            self._spawn(self._announce_started(active), f"recorder-started:{active.call_id}")
        if recording.ended and active.ended_at is None:
            active.ended_at = time.monotonic()
            if not recording.complete:
                # The END mark overtook chunks (or live ones were lost): the stream has them.
                self._spawn(self._catch_up(active), f"recorder-catch-up:{active.call_id}")
        if recording.complete:
            active.stopping = True
            self._spawn(self._complete(active), f"recorder-complete:{active.call_id}")

    def _write_failed(self, active: Active, exc: OSError) -> None:
        active.write_failures += 1
        if active.disk_error_since is None:
            active.disk_error_since = time.monotonic()
            active.failures_checked = active.write_failures - 1
            active.disk_error = exc.strerror or str(exc)
            log.error("recording_write_failed", call=active.call_id, error=active.disk_error)

    async def _announce_started(self, active: Active) -> None:
        progress = active.recording.progress
        assert progress.tenant_id is not None
        event = RecordingStarted(
            id=_event_id(progress.recording_id, "started"),
            tenant_id=progress.tenant_id,
            call_id=active.call_id,
            sequence=0,
            source=self._source(),
            data=RecordingStartedData(
                recording_id=progress.recording_id, format="wav", channels=2, sample_rate=RATE
            ),
        )
        await self._publish(event)
        assert self._leases is not None
        with contextlib.suppress(LeaseLost):
            await self._leases.mark_announced(active.call_id)

    async def _on_call_event(self, msg: Msg) -> None:
        """Only call.ended matters, and only for calls recorded here (the id is the subject's last token)."""
        active = self.active.get(msg.subject.rsplit(".", 1)[-1])
        if active is None or active.call_ended_at is not None:
            return
        try:
            event = parse_event(msg.data)
        except ValidationError:
            return
        if isinstance(event, CallEnded):
            active.call_ended_at = time.monotonic()

    async def _look_for_call_end(self, active: Active) -> None:
        """The audio stopped without an END mark and no call.ended came live: it may have been
        published before this recorder held the recording (a claim or a takeover after the call
        ended). The call's newest event in CALL_EVENTS says (one direct read, only for a stalled
        recording)."""
        tenant = active.recording.progress.tenant_id
        if tenant is None or self._ctx is None:
            return
        try:
            message = await self._ctx.bus.js.get_last_msg(
                subjects.CALL_EVENTS.name, subjects.call_events(tenant, active.call_id)
            )
        except nats.js.errors.NotFoundError:
            return
        try:
            event = parse_event(message.data or b"")
        except ValidationError:
            return
        if isinstance(event, CallEnded) and active.call_ended_at is None:
            active.call_ended_at = time.monotonic()

    # -- checkpoints and leases

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.checkpoint_interval_s)
            now = time.monotonic()
            due: list[Active] = []
            for active in list(self.active.values()):
                if active.stopping:
                    continue
                recording = active.recording
                if active.disk_error_since is not None:
                    if active.write_failures == active.failures_checked:
                        # A checkpoint and a read of the stream went by without a failed write.
                        log.info("recording_disk_writable_again", call=active.call_id)
                        active.disk_error_since = None
                    elif now - active.disk_error_since > self.settings.disk_retry_s:
                        active.stopping = True
                        self._spawn(self._hand_on(active), f"recorder-disk-full:{active.call_id}")
                        continue
                    else:
                        # Nothing is finished while writes fail (the file would have holes): the
                        # buffered audio is written again, and what failed is read again.
                        active.failures_checked = active.write_failures
                        due.append(active)
                        self._spawn(self._catch_up(active), f"recorder-retry:{active.call_id}")
                        continue
                if (
                    recording.ended
                    and active.ended_at is not None
                    and now - active.ended_at > _MISSING_GRACE_S
                ):
                    active.stopping = True
                    self._spawn(self._complete(active), f"recorder-complete:{active.call_id}")
                elif (
                    not recording.ended
                    and active.call_ended_at is not None
                    and now - max(active.call_ended_at, active.last_chunk_at) > self.settings.end_mark_grace_s
                ):
                    log.warning("recording_without_end_mark", call=active.call_id)
                    active.stopping = True
                    self._spawn(self._complete(active), f"recorder-complete:{active.call_id}")
                elif now - active.last_chunk_at > self.settings.abandon_after_s:
                    log.warning(
                        "recording_abandoned", call=active.call_id, silent_s=round(now - active.last_chunk_at)
                    )
                    active.stopping = True
                    self._spawn(self._complete(active), f"recorder-complete:{active.call_id}")
                elif recording.dirty:
                    due.append(active)
                if (
                    not active.stopping
                    and not recording.ended
                    and active.call_ended_at is None
                    and now - max(active.last_chunk_at, active.end_looked_for_at)
                    > self.settings.end_mark_grace_s
                ):
                    active.end_looked_for_at = now
                    self._spawn(self._look_for_call_end(active), f"recorder-call-end:{active.call_id}")
                active.gapped = active.gapped + 1 if recording.gaps else 0
                if not active.reread and not active.stopping:
                    active.reread = True
                    self._spawn(self._catch_up(active), f"recorder-catch-up:{active.call_id}")
                elif active.gapped >= 2 and not active.stopping:
                    # Chunks missing below the newest for two checkpoints: lost on the live path.
                    active.gapped = 0
                    self._spawn(self._catch_up(active), f"recorder-catch-up:{active.call_id}")
            if due:
                await self._checkpoint(*due)

    async def _checkpoint(self, *due: Active) -> None:
        """Snapshot each recording here, then sync them all in one trip to a thread."""
        work = []
        for active in due:
            try:
                work.append((active, active.recording.snapshot()))
            except OSError as exc:
                # A full disk: the audio stays buffered and is written again at the next one.
                self._write_failed(active, exc)

        def persist() -> list[OSError | None]:
            outcomes: list[OSError | None] = []
            for active, snapshot in work:
                if active.stopping and self.active.get(active.call_id) is not active:
                    outcomes.append(None)  # finished or handed over meanwhile: its file is closed
                    continue
                try:
                    active.recording.persist(snapshot)
                    outcomes.append(None)
                except OSError as exc:
                    outcomes.append(exc)
            return outcomes

        for (active, _), error in zip(work, await asyncio.to_thread(persist), strict=True):
            if error is not None and not active.stopping:
                # The state file could not be written: the checkpoint before it stands.
                log.error(
                    "recording_checkpoint_failed", call=active.call_id, error=error.strerror or str(error)
                )
                active.recording.dirty = True

    async def _renew_loop(self) -> None:
        assert self._leases is not None
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            held = [active for active in list(self.active.values()) if active.call_id in self._leases.held]
            # All at once: one slow answer must not hold the others back until they expire.
            outcomes = await asyncio.gather(
                *(self._leases.renew(active.call_id) for active in held), return_exceptions=True
            )
            for active, outcome in zip(held, outcomes, strict=True):
                if isinstance(outcome, LeaseLost):
                    await self._lost(active)
                elif isinstance(outcome, Exception):
                    log.warning(
                        "recording_lease_not_renewed",
                        call=active.call_id,
                        error=str(outcome) or type(outcome).__name__,
                    )

    async def _lost(self, active: Active) -> None:
        """The lease ran out or another recorder took it: stop touching the call and keep the spool.
        The lease is claimable again like any other (by us too, when nobody took it: NATS was away
        for longer than the lease), and whoever claims it resumes from the spool or the stream."""
        if self.active.pop(active.call_id, None) is None:
            return
        active.stopping = True
        log.warning("recording_lease_lost", call=active.call_id)
        await self._unsubscribe(active)
        active.recording.close()
        ACTIVE.set(len(self.active))
        assert self._leases is not None
        self._leases.let_go(active.call_id)
        self._nudge.set()

    async def _hand_back(self, active: Active) -> None:
        if active.stopping or self.active.get(active.call_id) is not active:
            return
        active.stopping = True
        await self._unsubscribe(active)
        await self._checkpoint(active)
        active.recording.close()
        self.active.pop(active.call_id, None)
        ACTIVE.set(len(self.active))
        assert self._leases is not None
        with contextlib.suppress(Exception):
            await self._leases.release(active.call_id)
        log.info("recording_handed_back", call=active.call_id)

    # -- discovery

    async def _discover_loop(self) -> None:
        """Calls whose audio waits with no lease (the worker could not create it) get one; finished
        leases are removed once old."""
        assert self._ctx is not None
        assert self._leases is not None
        prefix = subjects.recording_audio("*").removesuffix("*")
        while True:
            await asyncio.sleep(max(1.0, self.settings.lease_s))
            try:
                info = await self._ctx.bus.js.stream_info(
                    subjects.RECORDING_AUDIO.name, subjects_filter=subjects.recording_audio()
                )
                for subject in (info.state.subjects or {}) if info.state else {}:
                    call_id = subject[len(prefix) :]
                    if call_id not in self._leases.known:
                        await self._leases.ensure(call_id)
                for key in self._leases.stale():
                    await self._leases.forget(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("recording_discovery_failed", error=str(exc) or type(exc).__name__)

    # -- deletion on request

    async def _delete(self, request: DeleteRecording) -> RecordingDeletion:
        """Delete a stored recording, its metadata and its compressed copy, and say so on the bus.

        Only what this recorder's store holds under the tenant's prefix and the recording's own name
        is touched: a request cannot reach another tenant's files or anything else."""
        key = self.storage.key_of(request.location)
        name = f"{request.call_id}-{request.recording_id}.wav"
        if key is None or not key.startswith(f"{request.tenant_id}/") or not key.endswith("/" + name):
            raise Rejected(
                "bad_location", f"{request.location} is not this tenant's recording {request.recording_id}"
            )
        stem = key.removesuffix(".wav")
        try:
            deleted = await self._remove(
                request.tenant_id,
                request.call_id,
                request.recording_id,
                [f"{stem}.wav", f"{stem}.json", f"{stem}.ogg"],
                request.reason,
            )
        except StorageError as exc:
            raise Rejected("storage", str(exc)) from exc
        return RecordingDeletion(deleted=deleted)

    async def _remove(
        self, tenant_id: str, call_id: str, recording_id: str, keys: list[str], reason: str
    ) -> list[str]:
        """Delete ``keys`` (what is already gone is skipped) and publish ``recording.deleted``."""
        deleted = [key for key in keys if await self.storage.delete(key)]
        await self._publish(
            RecordingDeleted(
                id=_event_id(recording_id, "deleted"),
                tenant_id=tenant_id,
                call_id=call_id,
                sequence=3,
                source=self._source(),
                data=RecordingDeletedData(recording_id=recording_id, locations=deleted, reason=reason),
            )
        )
        log.info("recording_deleted", call=call_id, objects=len(deleted), reason=reason)
        return deleted

    # -- retention

    def _tenant_changed(self, key: str, value: bytes | None) -> None:
        record = None
        if value is not None:
            try:
                record = TenantRecord.model_validate_json(value)
            except ValidationError:
                log.error("tenant_record_unreadable", key=key)
                return
        if record is None or record.recording_retention_days is None:
            self.retention.pop(key, None)
        else:
            self.retention[record.tenant_id] = record.recording_retention_days

    async def _retention_loop(self) -> None:
        """Look every so often whether the retention sweep is due; one recorder of all runs it."""
        assert self._ctx is not None
        settings = self.settings
        if self._listing is None:
            self._listing = listing_for(settings)
        job = RetentionJob(
            self._ctx.bus,
            subjects.token(settings.instance_id),
            settings.retention_interval_s,
            clock=self.clock,
        )
        period = min(60.0, max(0.05, settings.retention_interval_s / 4))
        while True:
            await asyncio.sleep(period)
            try:
                claimed = await job.claim()
                if claimed is None:
                    continue
                revision, runs = claimed
                deleted = await self._sweep(self._listing)
                await job.finish(revision, runs + 1)
                if deleted:
                    log.info("retention_sweep", deleted=deleted)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The job's lease runs out and the next due check (here or elsewhere) tries again.
                log.warning("retention_sweep_failed", error=str(exc) or type(exc).__name__)

    async def _sweep(self, listing: Listing) -> int:
        """Delete every recording past its tenant's retention; how many."""
        now = self.clock()
        deleted = 0
        for tenant_id, days in sorted(self.retention.items()):
            for stored in group_keys(await listing.keys(f"{tenant_id}/")):
                if stored.tenant_id == tenant_id and expired(stored.day, days, now):
                    await self._remove(
                        tenant_id, stored.call_id, stored.recording_id, sorted(stored.keys), "retention"
                    )
                    deleted += 1
        return deleted

    # -- finishing

    async def _complete(self, active: Active) -> None:
        recording = active.recording
        progress = recording.progress
        call_id = active.call_id
        await self._unsubscribe(active)
        try:
            await asyncio.to_thread(recording.finish)
        except OSError as exc:
            active.disk_error = exc.strerror or str(exc)
            await self._hand_on(active)
            return
        if progress.packets == 0 or progress.tenant_id is None or progress.started_at is None:
            await self._fail(active, "no audio: the call ended before any packet reached the worker")
            return
        size, digest = await asyncio.to_thread(_size_and_sha256, recording.wav_path)
        key = object_key(progress.tenant_id, progress.started_at, call_id, progress.recording_id, "wav")
        metadata = recording.metadata()
        metadata.update({"sha256": digest, "size_bytes": size, "format": "wav", "sample_rate": RATE})
        try:
            location = await self._store(recording.wav_path, key, "audio/wav")
            meta_path = recording.spool / f"{call_id}.meta.json"
            await asyncio.to_thread(meta_path.write_text, json.dumps(metadata, indent=2))
            await self._store(meta_path, key.removesuffix(".wav") + ".json", "application/json")
            await asyncio.to_thread(meta_path.unlink, missing_ok=True)
        except StorageError as exc:
            await self._fail(active, f"storage unreachable: {exc}", keep=True)
            return
        event = RecordingCompleted(
            id=_event_id(progress.recording_id, "completed"),
            tenant_id=progress.tenant_id,
            call_id=call_id,
            sequence=1,
            source=self._source(),
            data=RecordingCompletedData(
                recording_id=progress.recording_id,
                location=location,
                format="wav",
                channels=2,
                sample_rate=RATE,
                duration_s=round(recording.wav.duration_s, 3),
                size_bytes=size,
                sha256=digest,
                started_at=datetime.fromtimestamp(progress.started_at, UTC),
                paused_s=recording.paused_s,
                chunks_missing=recording.missing,
            ),
        )
        await self._publish(event)
        if active.ended_at is not None:
            END_TO_STORED.observe(time.monotonic() - active.ended_at)
        OUTCOMES.labels("completed").inc()
        log.info(
            "recording_completed",
            call=call_id,
            location=location,
            duration_s=event.data.duration_s,
            missing=recording.missing,
        )
        await self._retire(active)
        if self.settings.compressed_format == "opus":
            self._spawn(self._compress(recording, key), f"recorder-compress:{call_id}")
        else:
            await asyncio.to_thread(recording.discard)

    async def _compress(self, recording: CallRecording, key: str) -> None:
        """The Opus copy, in a process of its own (encoding in a thread of this one held the
        interpreter long enough to delay other calls' completion by seconds); a failure costs the
        copy only (the WAV is stored)."""
        from services.recorder.compressed import encode_opus

        progress = recording.progress
        target = recording.spool / f"{progress.call_id}.ogg"
        try:
            if self._encoder is None:
                # Spawned, not forked: a fork would copy the event loop and the NATS connection.
                self._encoder = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn")
                )
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._encoder, encode_opus, recording.wav_path, target)
            size, digest = await asyncio.to_thread(_size_and_sha256, target)
            location = await self._store(target, key.removesuffix(".wav") + ".ogg", "audio/ogg")
            assert progress.tenant_id is not None
            await self._publish(
                RecordingCompressed(
                    id=_event_id(progress.recording_id, "compressed"),
                    tenant_id=progress.tenant_id,
                    call_id=progress.call_id,
                    sequence=2,
                    source=self._source(),
                    data=RecordingCompressedData(
                        recording_id=progress.recording_id,
                        location=location,
                        format="ogg/opus",
                        size_bytes=size,
                        sha256=digest,
                    ),
                )
            )
        except Exception as exc:
            log.warning(
                "recording_compressed_copy_failed",
                call=progress.call_id,
                error=str(exc) or type(exc).__name__,
            )
        finally:
            target.unlink(missing_ok=True)
            recording.discard()

    async def _fail(self, active: Active, reason: str, *, keep: bool = False) -> None:
        recording = active.recording
        progress = recording.progress
        await self._unsubscribe(active)
        kept = None
        if keep and recording.wav_path.exists() and progress.packets:
            kept = self.settings.recordings_dir / _UNSTORED / f"{active.call_id}-{progress.recording_id}.wav"
            with contextlib.suppress(OSError):
                kept.parent.mkdir(parents=True, exist_ok=True)
                recording.close()
                shutil.move(recording.wav_path, kept)
                reason += (
                    f"; the audio is kept on recorder {self.settings.instance_id} as {_UNSTORED}/{kept.name}"
                )
        log.error("recording_failed", call=active.call_id, reason=reason)
        OUTCOMES.labels("failed").inc()
        if progress.tenant_id is not None:
            await self._publish(
                RecordingFailed(
                    id=_event_id(progress.recording_id, "failed"),
                    tenant_id=progress.tenant_id,
                    call_id=active.call_id,
                    sequence=1,
                    source=self._source(),
                    data=RecordingFailedData(recording_id=progress.recording_id, reason=reason[:1000]),
                )
            )
        await self._retire(active)
        recording.discard()

    async def _hand_on(self, active: Active) -> None:
        """The spool's disk stayed full (or failing) for ``disk_retry_s``: say so with
        ``recording.failed`` naming the disk, free what the file took, and hand the lease back
        without purging the call's chunks, so a recorder with space (this one too, once the operator
        freed some) rebuilds the recording from the stream while it keeps them (RECORDING_AUDIO's
        retention). This recorder claims nothing for ``disk_retry_s``; its other calls go on."""
        recording = active.recording
        progress = recording.progress
        call_id = active.call_id
        await self._unsubscribe(active)
        reason = (
            f"disk full: cannot write {recording.spool.resolve()} on recorder {self.settings.instance_id}: "
            f"{active.disk_error}; the audio waits in the stream {subjects.RECORDING_AUDIO.name} "
            f"(kept {subjects.RECORDING_AUDIO.max_age.total_seconds() / 3600:g} h) for a recorder with space"
        )
        log.error("recording_disk_full", call=call_id, reason=reason)
        OUTCOMES.labels("handed_on").inc()
        with contextlib.suppress(OSError):
            recording.discard()
        self.active.pop(call_id, None)
        ACTIVE.set(len(self.active))
        self._claims_paused_until = time.monotonic() + self.settings.disk_retry_s
        if progress.tenant_id is not None:
            await self._publish(
                RecordingFailed(
                    id=_event_id(progress.recording_id, "disk-full"),
                    tenant_id=progress.tenant_id,
                    call_id=call_id,
                    sequence=1,
                    source=self._source(),
                    data=RecordingFailedData(recording_id=progress.recording_id, reason=reason[:1000]),
                )
            )
        assert self._leases is not None
        with contextlib.suppress(Exception):
            await self._leases.release(call_id)
        self._nudge.set()

    async def _retire(self, active: Active) -> None:
        """Done for good: the lease marked, the consumer and the call's chunks gone."""
        assert self._ctx is not None
        assert self._leases is not None
        call_id = active.call_id
        with contextlib.suppress(LeaseLost):
            await self._leases.finish(call_id)
        js = self._ctx.bus.js
        with contextlib.suppress(Exception):
            await js.purge_stream(subjects.RECORDING_AUDIO.name, subject=subjects.recording_audio(call_id))
        self.active.pop(call_id, None)
        ACTIVE.set(len(self.active))

    async def _store(self, source: Path, key: str, content_type: str) -> str:
        """Store with retries (backoff up to 5 s) for ``storage_retry_s``; then :class:`StorageError`."""
        deadline = time.monotonic() + self.settings.storage_retry_s
        delay = 0.2
        while True:
            try:
                return await self.storage.put(source, key, content_type)
            except StorageError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("recording_store_retry", key=key, error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _publish(self, event: EventEnvelope) -> None:
        """Publish until NATS takes it (ids are stable: a repeat is de-duplicated)."""
        assert self._ctx is not None
        delay = 0.2
        while True:
            try:
                await self._ctx.bus.publish_event(event)
                return
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("recording_event_retry", type=event.model_fields["type"].default, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _unsubscribe(self, active: Active) -> None:
        subscription, active.subscription = active.subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    def _source(self) -> str:
        return f"recorder/{self.settings.instance_id}"

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _event_id(recording_id: str, what: str) -> uuid.UUID:
    return uuid.uuid5(_EVENT_NAMESPACE, f"{recording_id}:{what}")


def _size_and_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


__all__ = ["RecorderService"]
