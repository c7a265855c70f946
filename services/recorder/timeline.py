"""Where each RTP packet of a leg goes in the file: RTP time anchored to the worker's arrival clock.

Within a leg, RTP timestamps (RFC 3550 section 5.1) give exact sample positions: a missing packet
leaves a hole of exactly its length, which becomes silence. Between legs only the worker's arrival
clock is common, so each leg is anchored to it at its first packet, and re-anchored when the two
disagree:

- by more than ``resync_s`` (a new SSRC, a timestamp jump, a hold during which the peer's RTP clock
  ran on): the leg restarts at the packet's arrival time;
- by more than ``tolerance_s`` over a ``window_s`` window (clock drift: a peer whose sample clock is
  0.1% fast gains 3.6 s an hour; or an anchor packet that happened to arrive late): the leg is moved
  by the window's smallest difference. Network jitter only ever delays arrivals, so the smallest
  difference is the one without jitter in it.

Pure and deterministic (a checkpoint restores it), so a recorder that takes over places the rest of
the call exactly where its predecessor would have.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

_HALF = 1 << 31
_WRAP = 1 << 32


@dataclass(slots=True)
class LegTimeline:
    rate: int = 8000
    resync_s: float = 1.0
    #: Long and tolerant enough that a sender or scheduler falling behind for a moment (a burst of
    #: late packets that then catches up) moves nothing: only a lasting difference does.
    window_s: float = 4.0
    tolerance_s: float = 0.04
    ssrc: int = -1
    #: Position (samples from the call's first packet) of the RTP timestamp ``last_ts``.
    last_ts: int = 0
    last_pos: int = 0
    window_start: int = 0
    window_min: int | None = None
    resyncs: int = 0
    #: Total samples moved by drift corrections (absolute).
    drift_corrected: int = 0

    def place(self, ssrc: int, timestamp: int, arrival_us: int) -> int:
        """The sample position of a packet's first sample (may be negative before the first packet)."""
        arrival = arrival_us * self.rate // 1_000_000
        if ssrc != self.ssrc:
            return self._anchor(ssrc, timestamp, arrival)
        delta = ((timestamp - self.last_ts + _HALF) % _WRAP) - _HALF
        position = self.last_pos + delta
        skew = arrival - position
        if abs(skew) > self.resync_s * self.rate:
            self.resyncs += 1
            return self._anchor(ssrc, timestamp, arrival)
        self.last_ts, self.last_pos = timestamp, position
        if self.window_min is None or skew < self.window_min:
            self.window_min = skew
        if arrival - self.window_start >= self.window_s * self.rate:
            shift = self.window_min
            self.window_start, self.window_min = arrival, None
            if abs(shift) > self.tolerance_s * self.rate:
                self.last_pos += shift
                position += shift
                self.drift_corrected += abs(shift)
        return position

    def _anchor(self, ssrc: int, timestamp: int, arrival: int) -> int:
        self.ssrc, self.last_ts, self.last_pos = ssrc, timestamp, arrival
        self.window_start, self.window_min = arrival, None
        return arrival

    def saved(self) -> tuple[int, int, int, int, int | None, int, int]:
        """What :meth:`place` changes, cheaply (once per chunk), for :meth:`restore_from`."""
        return (
            self.ssrc,
            self.last_ts,
            self.last_pos,
            self.window_start,
            self.window_min,
            self.resyncs,
            self.drift_corrected,
        )

    def restore_from(self, saved: tuple[int, int, int, int, int | None, int, int]) -> None:
        (
            self.ssrc,
            self.last_ts,
            self.last_pos,
            self.window_start,
            self.window_min,
            self.resyncs,
            self.drift_corrected,
        ) = saved

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def restore(cls, state: dict[str, Any]) -> LegTimeline:
        return cls(**state)


__all__ = ["LegTimeline"]
