"""The service instances the api has heard from, built from their heartbeats."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.heartbeat import Heartbeat

#: A peer that missed this many heartbeat intervals is reported as gone.
MISSED_BEATS = 3


@dataclass
class InstanceDirectory:
    _latest: dict[tuple[str, str], tuple[Heartbeat, datetime]] = field(default_factory=dict)

    def record(self, beat: Heartbeat, received_at: datetime | None = None) -> None:
        self._latest[(beat.service, beat.instance_id)] = (beat, received_at or datetime.now(UTC))

    def snapshot(self, now: datetime | None = None) -> list[tuple[Heartbeat, bool]]:
        """Every known instance with whether it is alive (heard from within MISSED_BEATS intervals)."""
        now = now or datetime.now(UTC)
        result = []
        for (_service, _instance), (beat, seen) in sorted(self._latest.items()):
            alive = (now - seen).total_seconds() <= MISSED_BEATS * beat.interval_s
            result.append((beat, alive))
        return result
