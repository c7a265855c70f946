"""DTMF as RFC 4733 telephone-events: digits out of received events, and events for a digit to send.

An event packet's payload is 4 bytes (RFC 4733 section 2.3): the event code (0-9, ``*`` 10, ``#`` 11,
A-D 12-15: section 3.2), the E(nd) bit, R and a 6-bit volume, and the duration so far in timestamp
units. Every packet of one event carries the event's start timestamp (section 2.5.1.1); the end is
sent three times (section 2.5.1.4), so a digit is reported once per (source, start timestamp).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

#: RFC 4733 section 3.2: event codes 0-15.
EVENT_DIGITS: Final = "0123456789*#ABCD"
PAYLOAD: Final = struct.Struct("!BBH")
_END: Final = 0x80
#: RFC 4733 section 2.5.1.2: an update every 50 ms is what senders do for voice-band events.
UPDATE_INTERVAL_S: Final = 0.05
#: RFC 4733 section 2.5.1.4: the final packet is sent three times.
END_REPEATS: Final = 3
#: Volume -10 dBm0 (the field carries the attenuation, RFC 4733 section 2.3.4).
DEFAULT_VOLUME: Final = 10
#: Durations are 16 bits (RFC 4733 section 2.5.2.3 segments longer events): we cap at what fits.
MAX_DURATION: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class EventPacket:
    """One packet of an event we send: when (seconds after the start), its marker bit and payload."""

    at: float
    marker: bool
    payload: bytes


class DtmfReceiver:
    """Digits out of one leg's telephone-event packets."""

    __slots__ = ("_current", "_reported", "clock_rate", "received")

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.received = 0
        self._reported: tuple[int, int] | None = None
        #: The event under way: (source, start timestamp, event code, duration so far).
        self._current: tuple[int, int, int, int] | None = None

    def receive(self, payload: bytes, timestamp: int, source: int) -> Digit | None:
        """The digit an event packet completes, at most once per event; None otherwise."""
        if len(payload) < PAYLOAD.size:
            return None
        event, flags, duration = PAYLOAD.unpack_from(payload)
        if event >= len(EVENT_DIGITS):
            return None  # other events (section 3.2 lists only DTMF for us) are relayed, not reported
        self.received += 1
        key = (source, timestamp)
        if key == self._reported:
            return None  # a repeated end packet (section 2.5.1.4)
        current = self._current
        if flags & _END:
            self._current = None
            self._reported = key
            return self._digit(event, duration)
        if (
            current is not None
            and (current[0], current[1]) != key
            and (current[0], current[1]) != self._reported
        ):
            # A new event began and the previous one's end packets were all lost (section 2.5.2.2):
            # the previous one ended; report it with the last duration seen.
            self._current = (source, timestamp, event, duration)
            self._reported = (current[0], current[1])
            return self._digit(current[2], current[3])
        self._current = (source, timestamp, event, duration)
        return None

    def _digit(self, event: int, duration: int) -> Digit:
        return Digit(EVENT_DIGITS[event], round(1000 * duration / self.clock_rate))


def event_packets(digit: str, duration_ms: int, clock_rate: int = 8000) -> list[EventPacket]:
    """The packets of one digit (RFC 4733 section 2.5): a start with the marker bit, an update every
    50 ms with the duration so far, and the end three times with the final duration."""
    event = EVENT_DIGITS.index(digit)
    total = min(MAX_DURATION, round(duration_ms * clock_rate / 1000))
    packets: list[EventPacket] = []
    at = 0.0
    while True:
        duration = round(at * clock_rate)
        if duration >= total:
            break
        # The first packet's duration is 0 (section 2.5.1.2 allows it; senders differ).
        packets.append(EventPacket(at, at == 0.0, PAYLOAD.pack(event, DEFAULT_VOLUME, duration)))
        at = round(at + UPDATE_INTERVAL_S, 6)
    end_at = total / clock_rate
    final = PAYLOAD.pack(event, _END | DEFAULT_VOLUME, total)
    for repeat in range(END_REPEATS):
        packets.append(EventPacket(round(end_at + repeat * 0.02, 6), False, final))
    return packets


__all__ = ["EVENT_DIGITS", "Digit", "DtmfReceiver", "EventPacket", "event_packets"]
