"""RTP on the relay path (RFC 3550): our clean outgoing stream per leg and reception statistics.

:class:`OutboundStream` is what one leg hears from us: one SSRC of ours, sequence numbers and
timestamps shifted by random offsets (RFC 3550 section 5.1 wants random initial values) from whatever
source feeds it. Shifting rather than renumbering keeps the sender's losses visible to the far end's
jitter buffer and its RTCP reports. When the source changes (a new SSRC behind the bridge, injected
DTMF, a re-bridged leg) the offsets are rebased so the stream goes on without a jump.

:class:`ReceptionStats` keeps what RFC 3550 appendix A computes per source: the extended highest
sequence number (A.1), the packets expected and lost (A.3) and the interarrival jitter (A.8).
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Callable
from typing import Final

#: The fixed header (RFC 3550 section 5.1): V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
HEADER: Final = struct.Struct("!BBHII")
#: Sequence number, timestamp and SSRC, read from offset 2.
FIELDS: Final = struct.Struct("!HII")
MARKER: Final = 0x80
#: RFC 3550 appendix A.1: a jump of more than this many sequence numbers restarts the count.
MAX_DROPOUT: Final = 3000
#: RFC 3550 appendix A.1: sequence numbers this far behind are late or duplicated packets.
MAX_MISORDER: Final = 100


def payload_bounds(packet: bytes) -> tuple[int, int] | None:
    """Where the payload of an RTP version 2 packet starts and ends, or None when the header
    (CSRCs, extension, padding: RFC 3550 sections 5.1 and 5.3.1) overruns the packet."""
    size = len(packet)
    if size < 12:
        return None
    first = packet[0]
    if first >> 6 != 2:
        return None
    start = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if size < start + 4:
            return None
        start += 4 + 4 * int.from_bytes(packet[start + 2 : start + 4], "big")
    end = size - packet[-1] if first & 0x20 else size
    if start > end:
        return None
    return start, end


class OutboundStream:
    """Our RTP stream towards one leg: our SSRC, continuous sequence numbers and timestamps."""

    __slots__ = (
        "_clock",
        "_last_at",
        "_rebase",
        "_sequence_offset",
        "_source",
        "_timestamp_offset",
        "clock_rate",
        "last_sequence",
        "last_timestamp",
        "octets",
        "paused",
        "sent",
        "ssrc",
    )

    def __init__(self, clock_rate: int = 8000, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ssrc = secrets.randbits(32)
        self.clock_rate = clock_rate
        self.sent = 0
        #: Payload octets sent, for the sender report (RFC 3550 section 6.4.1).
        self.octets = 0
        #: We are sending packets of our own (DTMF): relayed packets wait (are dropped) meanwhile.
        self.paused = False
        self.last_sequence = secrets.randbits(16)
        self.last_timestamp = secrets.randbits(32)
        self._sequence_offset = 0
        self._timestamp_offset = 0
        self._source: int | None = None
        self._rebase = True
        self._last_at = clock()
        self._clock = clock

    def rewrite(self, second: int, sequence: int, timestamp: int, source: int, payload: bytes) -> bytes:
        """A packet of our stream carrying ``payload``; ``second`` is the marker bit and the payload
        type as they go out (RFC 3550 section 5.1)."""
        if source != self._source or self._rebase:
            second |= self._rebase_to(sequence, timestamp, source)
        out_sequence = (sequence + self._sequence_offset) & 0xFFFF
        out_timestamp = (timestamp + self._timestamp_offset) & 0xFFFFFFFF
        if out_timestamp != self.last_timestamp:
            self._last_at = self._clock()
        self.last_sequence = out_sequence
        self.last_timestamp = out_timestamp
        self.sent += 1
        self.octets += len(payload)
        return HEADER.pack(0x80, second, out_sequence, out_timestamp, self.ssrc) + payload

    def now_timestamp(self) -> int:
        """The timestamp of a sample taken now: the last one sent, advanced by the time since."""
        elapsed = max(0, round((self._clock() - self._last_at) * self.clock_rate))
        return (self.last_timestamp + elapsed) & 0xFFFFFFFF

    def own(self, second: int, timestamp: int, payload: bytes) -> bytes:
        """A packet we originate (injected DTMF): the next sequence number, the given timestamp. The
        relayed source is rebased afterwards so it continues from here."""
        self.last_sequence = (self.last_sequence + 1) & 0xFFFF
        if timestamp != self.last_timestamp:
            self.last_timestamp = timestamp
            self._last_at = self._clock()
        self._rebase = True
        self.sent += 1
        self.octets += len(payload)
        return HEADER.pack(0x80, second, self.last_sequence, timestamp, self.ssrc) + payload

    def _rebase_to(self, sequence: int, timestamp: int, source: int) -> int:
        """Continue our stream from the last packet sent: the next sequence number, the timestamp
        advanced by the time that passed. Returns the marker bit, set as at the start of a talkspurt
        (RFC 3551 section 4.1) when the stream had already begun."""
        continuing = self._source is not None or self.sent > 0
        self._source = source
        self._rebase = False
        self._sequence_offset = (self.last_sequence + 1 - sequence) & 0xFFFF
        self._timestamp_offset = (self.now_timestamp() - timestamp) & 0xFFFFFFFF
        return MARKER if continuing else 0


class ReceptionStats:
    """Packets, losses and jitter of what one leg sends us (RFC 3550 appendix A)."""

    __slots__ = (
        "_base",
        "_cycles",
        "_expected_before",
        "_jitter",
        "_max",
        "_received_before",
        "_source",
        "_transit",
        "clock_rate",
        "received",
    )

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.received = 0
        self._source: int | None = None
        self._base = 0
        self._max = 0
        self._cycles = 0
        self._transit: float | None = None
        self._jitter = 0.0
        # Sources that ended (an SSRC change) keep counting in the totals.
        self._received_before = 0
        self._expected_before = 0

    def update(self, sequence: int, timestamp: int, source: int, arrival: float, timed: bool) -> None:
        """One packet; ``timed`` is False for packets that share a timestamp with others (RFC 4733
        events), which would distort the jitter."""
        self.received += 1
        if source != self._source:
            self._restart(sequence, source)
        else:
            delta = (sequence - self._max) & 0xFFFF
            if 0 < delta < MAX_DROPOUT:
                if sequence < self._max:
                    self._cycles += 0x10000
                self._max = sequence
            elif delta >= 0x10000 - MAX_MISORDER or delta == 0:
                pass  # late or duplicated (RFC 3550 appendix A.1)
            else:
                # A big jump: the sender restarted its numbering; count from here.
                self._restart(sequence, source)
        if timed:
            # RFC 3550 appendix A.8: J += (|D| - J) / 16, in timestamp units.
            transit = arrival * self.clock_rate - timestamp
            if self._transit is not None:
                difference = abs(transit - self._transit)
                if difference < 0x80000000:
                    self._jitter += (difference - self._jitter) / 16.0
            self._transit = transit

    def _restart(self, sequence: int, source: int) -> None:
        if self._source is not None:
            self._expected_before += self._expected_now()
            self._received_before = self.received - 1
        self._source = source
        self._base = sequence
        self._max = sequence
        self._cycles = 0
        self._transit = None

    def _expected_now(self) -> int:
        return self._cycles + self._max - self._base + 1

    @property
    def source(self) -> int | None:
        """The SSRC of the source heard last (the subject of our RTCP report block)."""
        return self._source

    @property
    def expected(self) -> int:
        """RFC 3550 appendix A.3: extended highest sequence number minus the first, plus one."""
        if self._source is None:
            return self._expected_before
        return self._expected_before + self._expected_now()

    @property
    def lost(self) -> int:
        """Packets expected and never received (duplicates can make the difference negative: 0)."""
        return max(0, self.expected - self.received)

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self._jitter / self.clock_rate

    @property
    def jitter_units(self) -> int:
        return int(self._jitter)

    @property
    def extended_max(self) -> int:
        return self._cycles + self._max


__all__ = ["FIELDS", "HEADER", "MARKER", "OutboundStream", "ReceptionStats", "payload_bounds"]
