"""An announcement: a prompt played towards one leg as RTP on a timer of its own (the demo line).

Each 20 ms frame of the prompt is one G.711 packet of the leg's own stream (RFC 3550 section 5.1:
our SSRC, the next sequence number, a timestamp 160 units on per frame, the marker bit on the
first packet and on the first after a gap, RFC 3551 section 4.1). The prompt repeats after a pause
of silence frames, so the stream never stops while the session lives (a desk phone behind NAT and
the far end's RTCP expect it) until :meth:`Announcement.stop`.

Playing starts when the leg can take packets (a browser's DTLS is done; a desk phone's address is
known), so the first words are not lost to a handshake. Sans-I/O at heart: :meth:`Announcement.tick`
sends what is due at ``now`` and says when the next frame is due; :meth:`Announcement.start` drives it
with the event loop. Timestamps follow the frame index, not the loop: when the loop stalls by more
than :data:`MAX_BURST` frames the late ones are skipped (as a jitter buffer would drop them) rather
than sent in a burst, and the timestamps jump with the time that passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Final

from services.media.prompt import SILENCE
from services.media.rtp import MARKER, OutboundStream

FRAME_S: Final = 0.02
FRAME_UNITS: Final = 160
#: Frames sent at once to catch up after a stall of the event loop (200 ms: a jitter buffer absorbs
#: that); a longer stall skips the frames before those.
MAX_BURST: Final = 10
#: Silence between two plays of the prompt.
PAUSE_S: Final = 1.0
#: A tick that lands this close before a frame's time sends it (timer and float rounding).
_EARLY_S: Final = 1e-6


class Announcement:
    """A prompt's frames, repeated with a pause, as RTP towards one leg."""

    def __init__(
        self,
        frames: Sequence[bytes],
        *,
        encoding: str,
        payload_type: int,
        stream: OutboundStream,
        send: Callable[[bytes], bool],
        ready: Callable[[], bool],
        on_played: Callable[[], None] | None = None,
        pause_s: float = PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not frames:
            raise ValueError("an announcement needs at least one frame")
        pause = [SILENCE[encoding.upper()] * FRAME_UNITS] * round(pause_s / FRAME_S)
        #: One cycle: the prompt, then the pause.
        self.cycle: tuple[bytes, ...] = (*frames, *pause)
        self.prompt_frames = len(frames)
        self.encoding = encoding.upper()
        self.payload_type = payload_type
        self.stream = stream
        self.sent = 0
        #: Frames not sent because the loop fell behind (see the module's docstring).
        self.skipped = 0
        #: Times the prompt played through.
        self.plays = 0
        self._send = send
        self._ready = ready
        self._on_played = on_played
        self._clock = clock
        self._epoch: float | None = None
        self._base_timestamp = 0
        self._next = 0
        self._marker = True
        self._handle: asyncio.Handle | None = None
        self._stopped = False

    @property
    def started(self) -> bool:
        return self._epoch is not None

    def tick(self, now: float) -> float:
        """Send every frame due at ``now``; returns when the next one is due."""
        if self._epoch is None:
            if not self._ready():
                return now + FRAME_S
            self._epoch = now
            self._base_timestamp = self.stream.now_timestamp()
        due = int((now - self._epoch + _EARLY_S) / FRAME_S) + 1
        if due - self._next > MAX_BURST:
            self.skipped += due - MAX_BURST - self._next
            self._next = due - MAX_BURST
            self._marker = True
        while self._next < due:
            self._play(self._next)
            self._next += 1
        return self._epoch + self._next * FRAME_S

    def _play(self, index: int) -> None:
        position = index % len(self.cycle)
        if not self.stream.paused:  # DTMF of ours (Bridge.send_dtmf) owns the stream meanwhile
            timestamp = (self._base_timestamp + index * FRAME_UNITS) & 0xFFFFFFFF
            second = (MARKER if self._marker else 0) | self.payload_type
            self._send(self.stream.own(second, timestamp, self.cycle[position]))
            self._marker = False
            self.sent += 1
        if position == self.prompt_frames - 1:
            self.plays += 1
            if self.plays == 1 and self._on_played is not None:
                self._on_played()

    # -- the event-loop driver

    def start(self) -> None:
        """Play on the running event loop until :meth:`stop`."""
        self._handle = asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        if self._stopped:
            return
        now = self._clock()
        due = self.tick(now)
        self._handle = asyncio.get_running_loop().call_later(max(0.0, due - self._clock()), self._run)

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


__all__ = ["FRAME_S", "MAX_BURST", "PAUSE_S", "Announcement"]
