"""Which media workers are alive, from their heartbeats (sans-I/O: every input carries ``now``).

A worker that dies takes its calls' audio with it; the calls must then end on both legs with a
``media_failure`` cause within seconds (issue 5), not linger until a phone gives up. Workers
heartbeat every ``interval_s`` (1 s by default); one silent for three of its intervals is gone. A
worker we have not heard from yet (this instance just started) is timed from the first sign of
life we had of it: the answer that created a session on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MISSED_BEATS = 3


@dataclass(slots=True)
class _Seen:
    at: float
    interval_s: float


@dataclass
class WorkerWatch:
    default_interval_s: float = 1.0
    _workers: dict[str, _Seen] = field(default_factory=dict)

    def alive(self, worker: str, now: float, interval_s: float | None = None) -> None:
        """A heartbeat (with its interval) or an answer from ``worker``."""
        known = self._workers.get(worker)
        interval = interval_s or (known.interval_s if known else self.default_interval_s)
        self._workers[worker] = _Seen(now, interval)

    def gone(self, now: float) -> list[str]:
        """Workers silent for too long, each reported once (until heard from again)."""
        dead = [w for w, seen in self._workers.items() if now - seen.at > MISSED_BEATS * seen.interval_s]
        for worker in dead:
            del self._workers[worker]
        return dead

    def forget(self, worker: str) -> None:
        self._workers.pop(worker, None)


__all__ = ["MISSED_BEATS", "WorkerWatch"]
