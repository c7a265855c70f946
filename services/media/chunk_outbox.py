"""Recording chunks waiting for JetStream: a bounded queue the packet path offers to and never waits on.

:meth:`ChunkOutbox.offer` is synchronous and O(1): it appends or, when ``capacity`` chunks are already
waiting (NATS unreachable for a while), refuses, and the fork counts the drop (its END mark reports
it, and the recorder names the missing chunks). A task of its own publishes them in batches, each
confirmed by one acknowledgement (:meth:`ChunkOutbox._publish_batch`), with ``Nats-Msg-Id`` =
``<call>:<sequence>`` so a batch published again is stored once. A chunk that fails is tried again
(``attempts`` times, with backoff) before it counts as dropped. The same task seals partial chunks of
quiet legs every ``seal_after_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from shared import recording
from shared.bus import Bus
from shared.logging import get_logger

if TYPE_CHECKING:
    from services.media.recording_fork import RecordingFork

log = get_logger("echodesk.media.recording")

CHUNKS = Counter("echodesk_media_recording_chunks_total", "Recording chunks by outcome", ["outcome"])
BACKLOG = Gauge("echodesk_media_recording_backlog", "Recording chunks waiting for the bus")


@dataclass(slots=True)
class Pending:
    fork: RecordingFork
    subject: str
    msg_id: str
    data: bytes
    attempts: int = 0


class ChunkOutbox:
    def __init__(
        self,
        *,
        capacity: int = 32768,
        batch: int = 512,
        attempts: int = 5,
        ack_timeout_s: float = 5.0,
        seal_after_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.published = 0
        self.dropped = 0
        self._queue: deque[Pending] = deque()
        self._forks: set[RecordingFork] = set()
        self._wake = asyncio.Event()
        self._batch = batch
        self._attempts = attempts
        self._ack_timeout = ack_timeout_s
        self._seal_after = seal_after_s
        self._clock = clock

    def __len__(self) -> int:
        return len(self._queue)

    # -- the packet path's side

    def offer(self, fork: RecordingFork, sequence: int, data: bytes) -> bool:
        if len(self._queue) >= self.capacity:
            self.dropped += 1
            CHUNKS.labels("dropped_full").inc()
            return False
        self._queue.append(Pending(fork, fork.subject, recording.message_id(fork.call_id, sequence), data))
        if len(self._queue) >= self._batch:
            self._wake.set()
        return True

    def attach(self, fork: RecordingFork) -> None:
        self._forks.add(fork)

    def detach(self, fork: RecordingFork) -> None:
        self._forks.discard(fork)
        self._wake.set()  # the END mark goes out now, not at the next tick

    # -- the publisher task

    async def run(self, bus: Bus) -> None:
        """Publish until cancelled; seals quiet legs' partial chunks on each tick."""
        backoff = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._seal_after if backoff == 0 else backoff):
                    await self._wake.wait()
            self._wake.clear()
            now = self._clock()
            for fork in list(self._forks):
                fork.seal_idle(now, self._seal_after)
            BACKLOG.set(len(self._queue))
            failed = False
            while self._queue and not failed:
                failed = not await self._publish_batch(bus)
            backoff = min(max(backoff * 2, 0.1), 2.0) if failed else 0.0

    async def flush(self, bus: Bus, timeout: float) -> None:
        """Publish what waits (a draining worker's last chunks and END marks), within ``timeout``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._queue:
                    if not await self._publish_batch(bus):
                        await asyncio.sleep(0.1)

    async def _publish_batch(self, bus: Bus) -> bool:
        """Publish up to ``batch`` chunks in order; False when they failed (they are queued again).

        All but the last go out as plain publishes (the stream captures them; ~6 us of CPU each where
        an acknowledged publish costs ~35), the last with an acknowledgement: the server handles one
        connection's messages in order, so its ack stands for the batch. When it does not come, the
        whole batch is sent again and the stream's de-duplication (``Nats-Msg-Id``) drops what it had.
        """
        batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
        ok = False
        try:
            publish = bus.nc.publish
            for item in batch[:-1]:
                await publish(item.subject, item.data, headers={"Nats-Msg-Id": item.msg_id})
            last = batch[-1]
            future = await bus.js.publish_async(last.subject, last.data, headers={"Nats-Msg-Id": last.msg_id})
            await asyncio.wait([future], timeout=self._ack_timeout)
            if not future.done():
                future.cancel()  # releases its slot in nats-py's window of pending acks
            ok = not future.cancelled() and future.exception() is None
        except Exception as exc:
            log.debug("recording_chunks_publish_failed", error=str(exc) or type(exc).__name__)
        if ok:
            self.published += len(batch)
            CHUNKS.labels("published").inc(len(batch))
            return True
        retry: list[Pending] = []
        for item in batch:
            item.attempts += 1
            if item.attempts >= self._attempts:
                item.fork.dropped += 1
                self.dropped += 1
                CHUNKS.labels("dropped_failed").inc()
                log.warning("recording_chunk_dropped", subject=item.subject, msg_id=item.msg_id)
            else:
                retry.append(item)
        # Back at the front, in their order: a recorder places audio by RTP time anyway, but the END
        # mark should stay behind the chunks it closes.
        self._queue.extendleft(reversed(retry))
        return False


__all__ = ["ChunkOutbox"]
