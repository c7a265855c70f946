"""Who records which call: leases in KV ``recordings`` (``shared/recording.py``), claimed by
compare-and-set on the entry's revision, so exactly one recorder holds a call's lease at a time.

A lease is claimable when it has no owner (a new call: the media worker created it) or its
``expires_at`` passed (its owner died or lost NATS). Owners renew every third of the lease; a renewal
that finds another revision means the lease was taken, and the owner stops at once. An owner also
stops writing on its own when its lease ran out locally (:meth:`LeaseBook.holds`), so a recorder cut
off from NATS never writes on after a successor took over. Expiry compares wall clocks: recorders
need NTP, as any lease-based system does; a skew well under the lease time is harmless.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import nats.js.errors
from nats.js.kv import KeyValue
from pydantic import ValidationError

from shared import subjects
from shared.bus import Bus
from shared.logging import get_logger
from shared.recording import RecordingLease

log = get_logger("echodesk.recorder.leases")

#: Entries of finished recordings stay this long (a late create from a worker finds them and stops).
DONE_KEPT_S = 600.0


@dataclass
class Held:
    lease: RecordingLease
    revision: int


class LeaseLost(Exception):
    pass


class LeaseBook:
    def __init__(
        self, bus: Bus, owner: str, lease_s: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.bus = bus
        self.owner = owner
        self.lease_s = lease_s
        #: Every lease as last seen by the watcher (None: unreadable).
        self.known: dict[str, RecordingLease | None] = {}
        self.held: dict[str, Held] = {}
        #: Keys of leases not done (the calls still to record): what :meth:`candidates` scans, rather
        #: than every finished lease kept for ``DONE_KEPT_S`` too.
        self._open: set[str] = set()
        self._clock = clock
        self._kv: KeyValue | None = None

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.bus.bucket(subjects.RECORDINGS_KV)
        return self._kv

    async def watch(self, on_change: Callable[[str], None]) -> None:
        def changed(key: str, value: bytes | None) -> None:
            if value is None:
                self.known.pop(key, None)
                self._open.discard(key)
                return
            try:
                self._see(key, RecordingLease.model_validate_json(value))
            except ValidationError:
                self.known[key] = None
                self._open.discard(key)
                log.warning("recording_lease_unreadable", call=key)
                return
            # Renewals (most changes) make nothing claimable: only a new or released lease wakes
            # the claim loop, which otherwise looks for expired ones on its own schedule.
            if self.claimable(key):
                on_change(key)

        await self.bus.watch_bucket(subjects.RECORDINGS_KV, changed)

    def _see(self, key: str, lease: RecordingLease) -> None:
        self.known[key] = lease
        if lease.done_at is None:
            self._open.add(key)
        else:
            self._open.discard(key)

    def claimable(self, key: str) -> bool:
        lease = self.known.get(key)
        if lease is None or lease.done_at is not None or key in self.held:
            return False
        return lease.owner is None or lease.expires_at < self._clock()

    def candidates(self) -> list[str]:
        return [key for key in self._open if self.claimable(key)]

    def stale(self) -> list[str]:
        """Finished leases old enough to remove."""
        now = self._clock()
        return [
            key
            for key, lease in self.known.items()
            if lease is not None and lease.done_at is not None and now - lease.done_at > DONE_KEPT_S
        ]

    async def claim(self, key: str) -> RecordingLease | None:
        """Take the lease if it is still claimable; None when another recorder was first."""
        kv = await self.kv()
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        lease = RecordingLease.model_validate_json(entry.value)
        now = self._clock()
        if lease.done_at is not None or (lease.owner is not None and lease.expires_at >= now):
            self._see(key, lease)
            return None
        claimed = lease.model_copy(
            update={
                "owner": self.owner,
                "expires_at": now + self.lease_s,
                "claims": lease.claims + 1,
                "recording_id": lease.recording_id or uuid.uuid4().hex,
            }
        )
        try:
            revision = await kv.update(key, claimed.model_dump_json().encode(), last=entry.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        self.held[key] = Held(claimed, revision)
        self._see(key, claimed)
        if lease.owner is not None:
            log.info("recording_lease_taken_over", call=key, previous=lease.owner, claims=claimed.claims)
        return claimed

    def holds(self, key: str) -> bool:
        """Still ours with a margin: a third of the lease left (renewals run every third)."""
        held = self.held.get(key)
        return held is not None and held.lease.expires_at - self.lease_s / 3 > self._clock()

    def let_go(self, key: str) -> None:
        """Forget our hold without writing (it ran out, or is someone else's): the watcher's view
        decides whether it is claimable."""
        self.held.pop(key, None)

    async def renew(self, key: str) -> None:
        """Extend the lease; raises :class:`LeaseLost` when it is no longer ours."""
        await self._write(key, {"expires_at": self._clock() + self.lease_s})

    async def mark_announced(self, key: str) -> None:
        await self._write(key, {"announced": True})

    async def finish(self, key: str) -> None:
        """The recording is stored or failed for good: nobody claims it again."""
        await self._write(key, {"done_at": self._clock(), "owner": None, "expires_at": 0.0})
        self.held.pop(key, None)

    async def release(self, key: str) -> None:
        """Hand the lease back now (a draining recorder): another recorder claims it at once."""
        try:
            await self._write(key, {"owner": None, "expires_at": 0.0})
        finally:
            self.held.pop(key, None)

    async def _write(self, key: str, update: dict[str, object]) -> None:
        held = self.held.get(key)
        if held is None:
            raise LeaseLost(key)
        lease = held.lease.model_copy(update=update)
        kv = await self.kv()
        try:
            revision = await kv.update(key, lease.model_dump_json().encode(), last=held.revision)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
            self.held.pop(key, None)
            raise LeaseLost(key) from None
        held.lease, held.revision = lease, revision

    async def forget(self, key: str) -> None:
        kv = await self.kv()
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await kv.delete(key)
        self.known.pop(key, None)
        self._open.discard(key)

    async def ensure(self, key: str) -> None:
        """An unclaimed lease for a call whose audio waits without one (its worker's create failed)."""
        kv = await self.kv()
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await kv.create(key, RecordingLease().model_dump_json().encode())


__all__ = ["DONE_KEPT_S", "LeaseBook", "LeaseLost"]
