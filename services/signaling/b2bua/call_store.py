"""Each call's snapshot in KV ``calls``, written behind the call's back and read by a successor.

SIP handling never waits for NATS: a call that changed is only marked (:meth:`CallStore.changed`,
O(1)); a writer task wakes, lets changes gather for ``delay_s`` (a call that rings and is answered
within it is written once), then serializes each marked call as it stands *now* and writes what
differs from what it last wrote, a bounded number of writes in flight. A call that ended is deleted.
When NATS is away the marks stay and are written when it returns; a call's state is never queued
twice, so memory stays bounded by the number of calls.

Keys are ``<node>.<call id>``: an instance restarted under the same name (``instance_id``) reads its
own calls and nobody else's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from nats.js.kv import KeyValue

from shared.logging import get_logger

log = get_logger("echodesk.signaling.call_store")

#: How long changes gather before a write (s): short against a call, long against its bursts.
WRITE_DELAY_S = 0.05
#: Writes in flight at once.
WRITE_CONCURRENCY = 64
#: Calls serialized between two chances for the event loop to handle SIP (about 30 us each).
SERIALIZE_CHUNK = 100
#: Delete markers of ended calls older than this are purged from the bucket (s).
PURGE_AFTER_S = 600
PURGE_EVERY_S = 3600.0


class KeyValueStore(Protocol):
    """What the store needs of a JetStream KV bucket (nats-py's ``KeyValue``)."""

    async def put(self, key: str, value: bytes) -> int: ...

    async def delete(self, key: str) -> bool: ...


class CallStore:
    def __init__(
        self,
        node: str,
        snapshot: Callable[[str], bytes | None],
        *,
        delay_s: float = WRITE_DELAY_S,
        concurrency: int = WRITE_CONCURRENCY,
    ) -> None:
        self.node = node
        #: The call's snapshot as it stands, or None once it ended (b2bua/calls.py).
        self._snapshot = snapshot
        self.delay_s = delay_s
        self._limit = asyncio.Semaphore(concurrency)
        self._dirty: dict[str, None] = {}
        self._written: dict[str, bytes] = {}
        #: Keys in the bucket that were never written by this instance (loaded at start).
        self._inherited: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        #: Counters for the bench and the logs.
        self.writes = 0
        self.deletes = 0
        self.bytes = 0

    def key(self, call_id: str) -> str:
        return f"{self.node}.{call_id}"

    def changed(self, call_id: str) -> None:
        """The call changed (or ended): its snapshot is written soon."""
        self._dirty[call_id] = None
        self._idle.clear()
        self._wake.set()

    def inherited(self, call_id: str) -> None:
        """A snapshot of the previous incarnation: deleted once the call is over, even if never written."""
        self._inherited.add(call_id)

    async def run(self, kv: KeyValueStore) -> None:
        """Write marked calls until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.delay_s)
            batch, self._dirty = list(self._dirty), {}
            failed = await self._write(kv, batch)
            if failed:
                for call_id in failed:
                    self._dirty[call_id] = None
                await asyncio.sleep(1.0)  # NATS away: try again, without spinning
                self._wake.set()
            elif not self._dirty:
                self._idle.set()

    async def flushed(self, timeout: float) -> None:
        """Wait until every change so far is written (tests, the bench, a clean stop)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()

    async def _write(self, kv: KeyValueStore, batch: list[str]) -> list[str]:
        jobs = []
        for n, call_id in enumerate(batch):
            if n and n % SERIALIZE_CHUNK == 0:
                await asyncio.sleep(0)  # SIP goes first: thousands of calls are not one long step
            data = self._snapshot(call_id)
            if data is None:
                if call_id in self._written or call_id in self._inherited:
                    jobs.append(self._delete(kv, call_id))
            elif self._written.get(call_id) != data:
                jobs.append(self._put(kv, call_id, data))
        results = await asyncio.gather(*jobs) if jobs else []
        return [call_id for call_id in results if call_id is not None]

    async def _put(self, kv: KeyValueStore, call_id: str, data: bytes) -> str | None:
        async with self._limit:
            try:
                await kv.put(self.key(call_id), data)
            except Exception as exc:  # NATS away or slow: the mark stays, written later
                log.warning("call snapshot not written", call=call_id, error=str(exc) or type(exc).__name__)
                return call_id
        self._written[call_id] = data
        self.writes += 1
        self.bytes += len(data)
        return None

    async def _delete(self, kv: KeyValueStore, call_id: str) -> str | None:
        async with self._limit:
            try:
                await kv.delete(self.key(call_id))
            except Exception as exc:
                log.warning("call snapshot not deleted", call=call_id, error=str(exc) or type(exc).__name__)
                return call_id
        self._written.pop(call_id, None)
        self._inherited.discard(call_id)
        self.deletes += 1
        return None


async def load(kv: KeyValue, node: str) -> dict[str, bytes]:
    """The snapshots an instance named ``node`` left, by call id (read once, as it starts)."""
    found: dict[str, bytes] = {}
    watcher = await kv.watch(f"{node}.*", ignore_deletes=True)
    try:
        async for entry in watcher:
            if entry is None:
                break  # the initial values are all in
            if entry.value:
                found[entry.key.split(".", 1)[1]] = entry.value
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return found


async def purge_ended(kv: KeyValue) -> None:
    """Drop the delete markers ended calls left (one per call ever made, else)."""
    try:
        await kv.purge_deletes(olderthan=PURGE_AFTER_S)
    except Exception as exc:
        log.warning("call snapshots not purged", error=str(exc) or type(exc).__name__)


__all__ = ["PURGE_AFTER_S", "PURGE_EVERY_S", "CallStore", "KeyValueStore", "load", "purge_ended"]
