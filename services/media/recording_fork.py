"""The audio fork of a recorded call: both legs' G.711 payloads, batched into chunks for the bus.

A relay hands every audio packet of its leg to a :class:`LegTap` (``Relay.tap``) on the packet path,
so :meth:`LegTap.add` only appends the packet's frame (``shared/recording.py``) to a bytearray;
every ``frames_per_chunk`` packets (160 ms at 20 ms ptime) the tap seals a chunk and offers it to
the worker's :class:`~services.media.chunk_outbox.ChunkOutbox`, which publishes it from a task of its
own and never makes the packet path wait. Partial chunks of a leg that went quiet (hold, mute) are
sealed by the outbox's timer, so a recorder is never more than a chunk behind.

Paused recording (an agent pauses while a customer reads a card number): taps drop what arrives, so
the paused audio never leaves the worker, and PAUSE/RESUME marks tell the recorder why it is silent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared import recording, subjects
from shared.events import LegKind
from shared.recording import FRAME, ChunkKind

if TYPE_CHECKING:
    from services.media.chunk_outbox import ChunkOutbox

#: 8 packets of 20 ms: small enough that a recorder trails a call by a fraction of a second, large
#: enough that a call costs ~12 publishes a second rather than 100.
FRAMES_PER_CHUNK = 8


class LegTap:
    """One leg's open chunk; ``add`` is on the packet path."""

    __slots__ = ("_body", "_codec", "_fork", "count", "leg", "limit", "opened", "ssrc")

    def __init__(self, fork: RecordingFork, leg: LegKind, codec: str, limit: int) -> None:
        self._fork = fork
        self._body = bytearray()
        self._codec = codec.encode("ascii")
        self.leg = leg
        self.limit = limit
        self.count = 0
        self.ssrc = -1
        self.opened = 0.0

    @property
    def codec(self) -> str:
        return self._codec.decode("ascii")

    def set_codec(self, codec: str) -> None:
        """A re-negotiation changed the leg's codec: what is buffered keeps the old one."""
        encoded = codec.encode("ascii")
        if encoded != self._codec:
            self.seal()
            self._codec = encoded

    def add(self, sequence: int, timestamp: int, source: int, payload: bytes, now: float) -> None:
        fork = self._fork
        origin = fork.origin
        if origin is None:
            origin = fork.start(now)
        if fork.silent:
            return
        if source != self.ssrc:
            if self.count:
                self.seal()  # one SSRC per chunk: a new source is a new timeline for the recorder
            self.ssrc = source
        if not self.count:
            self.opened = now
        body = self._body
        body += FRAME.pack(sequence, timestamp, int((now - origin) * 1_000_000 + 0.5), len(payload))
        body += payload
        self.count += 1
        if self.count >= self.limit:
            self.seal()

    def seal(self) -> None:
        if not self.count:
            return
        fork = self._fork
        head = fork.header(ChunkKind.AUDIO, self.leg)
        data = head + recording.audio_head(self._codec, self.ssrc, self.count) + self._body
        fork.packets += self.count
        self._body = bytearray()
        self.count = 0
        fork.submit(data)


class RecordingFork:
    """One recorded call: its taps, its chunk sequence, what it had to drop."""

    def __init__(
        self,
        tenant_id: str,
        call_id: str,
        outbox: ChunkOutbox,
        *,
        frames_per_chunk: int = FRAMES_PER_CHUNK,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.call_id = call_id
        self.subject = subjects.recording_audio(call_id)
        self.taps: dict[LegKind, LegTap] = {}
        #: Monotonic time of the first forked packet: ``arrival_us`` counts from here.
        self.origin: float | None = None
        self.started_at = 0.0
        self.sequence = 0
        self.dropped = 0
        self.packets = 0
        self.paused = False
        self.ended = False
        #: Paused or ended: what taps are given is dropped (one attribute for the packet path to read).
        self.silent = False
        self._tenant = tenant_id.encode("ascii")
        self._outbox = outbox
        self._frames = frames_per_chunk
        self._wall = wall
        outbox.attach(self)

    def start(self, now: float) -> float:
        self.origin = now
        self.started_at = self._wall()
        return now

    def tap(self, leg: LegKind, codec: str) -> LegTap:
        """The tap of ``leg`` (created once; a changed codec seals what it holds)."""
        tap = self.taps.get(leg)
        if tap is None:
            tap = self.taps[leg] = LegTap(self, leg, codec, self._frames)
        else:
            tap.set_codec(codec)
        return tap

    def header(self, kind: ChunkKind, leg: LegKind = LegKind.AGENT) -> bytes:
        return recording.header(kind, leg, self.sequence, self.started_at, self._tenant)

    def submit(self, data: bytes) -> None:
        sequence = self.sequence
        self.sequence += 1
        if not self._outbox.offer(self, sequence, data):
            self.dropped += 1

    def seal_idle(self, now: float, max_age: float) -> None:
        for tap in self.taps.values():
            if tap.count and now - tap.opened >= max_age:
                tap.seal()

    def set_paused(self, paused: bool, now: float) -> None:
        if paused == self.paused or self.ended:
            return
        for tap in self.taps.values():
            tap.seal()
        if self.origin is None:
            self.start(now)
        self.paused = paused
        self.silent = paused or self.ended
        assert self.origin is not None
        kind = ChunkKind.PAUSE if paused else ChunkKind.RESUME
        self.submit(self.header(kind) + recording.MARK.pack(int((now - self.origin) * 1_000_000 + 0.5)))

    def end(self, now: float) -> None:
        """The call is over: seal what is open and send the END mark (it counts the drops so far)."""
        if self.ended:
            return
        for tap in self.taps.values():
            tap.seal()
        if self.origin is None:
            self.start(now)
        assert self.origin is not None
        self.ended = self.silent = True
        at = int((now - self.origin) * 1_000_000 + 0.5)
        self.submit(self.header(ChunkKind.END) + recording.END.pack(at, self.dropped, self.packets))
        self._outbox.detach(self)


__all__ = ["FRAMES_PER_CHUNK", "LegTap", "RecordingFork"]
