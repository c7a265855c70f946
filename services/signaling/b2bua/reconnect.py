"""Agents whose connection dropped in the middle of a call, waiting for them to come back.

A browser's WebSocket drops on a shaky network while the call's audio, which never passes through
signaling, goes on over its own UDP path. So a connected call does not end with the connection: the
agent's end is marked away for ``grace_s`` and the call waits for the same browser to register again
on a new connection. "The same browser" is its RFC 5626 instance (``+sip.instance``, which our
softphone sets through SIP.js's ``instanceId``; RFC 5626 4.1): the new registration's flow replaces
the dropped one, and later requests to the agent (a BYE, a re-INVITE) take it. An end whose
registration carried no instance cannot be told apart from a new device, so it gets no grace.

Sans-I/O: the caller passes ``now`` and arms a timer for :meth:`Reconnections.next_deadline`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Which flow of a call an away end had: the caller's (None) or a rung branch's (its index).
Slot = int | None


@dataclass(frozen=True, slots=True)
class AwayEnd:
    call_id: str
    slot: Slot
    aor: str
    instance: str
    deadline: float


@dataclass
class Reconnections:
    grace_s: float
    _away: dict[tuple[str, Slot], AwayEnd] = field(default_factory=dict)

    def lost(self, call_id: str, slot: Slot, aor: str, instance: str | None, now: float) -> AwayEnd | None:
        """The connection of a connected call's agent end closed: the end waits, or (no instance to
        recognise the agent by, or no grace configured) None and the call ends now."""
        if instance is None or self.grace_s <= 0:
            return None
        away = AwayEnd(call_id, slot, aor, instance, now + self.grace_s)
        self._away[(call_id, slot)] = away
        return away

    def returned(self, aor: str, instance: str | None) -> list[AwayEnd]:
        """The agent registered again: the ends it left, now to be reached over its new flow."""
        if instance is None:
            return []
        back = [a for a in self._away.values() if a.aor == aor and a.instance == instance]
        for away in back:
            del self._away[(away.call_id, away.slot)]
        return back

    def due(self, now: float) -> list[AwayEnd]:
        """Ends whose grace ran out: their calls end (cause ``agent_connection_lost``)."""
        expired = [a for a in self._away.values() if a.deadline <= now]
        for away in expired:
            del self._away[(away.call_id, away.slot)]
        return expired

    def forget(self, call_id: str) -> None:
        """The call ended some other way (a BYE from the customer while the agent was away)."""
        for key in [key for key in self._away if key[0] == call_id]:
            del self._away[key]

    def away(self, call_id: str) -> bool:
        return any(key[0] == call_id for key in self._away)

    def next_deadline(self) -> float | None:
        return min((a.deadline for a in self._away.values()), default=None)

    def __len__(self) -> int:
        return len(self._away)


__all__ = ["AwayEnd", "Reconnections", "Slot"]
