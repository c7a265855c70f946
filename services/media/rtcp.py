"""RTCP reports of one plain RTP leg (RFC 3550 section 6): what we send, and the round trip we learn.

Every report interval the leg sends a compound packet (section 6.1): a sender report when we have
sent RTP since the last one, a receiver report otherwise, each with one report block about the
source we receive (section 6.4.1: fraction and cumulative lost, extended highest sequence number,
jitter, LSR and DLSR), then an SDES with our CNAME. A report block the peer sends about our SSRC gives
the round-trip time: A - LSR - DLSR (section 6.4.1, figure 2).
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Callable
from typing import Final

from services.media.rtp import OutboundStream, ReceptionStats

SR: Final = 200
RR: Final = 201
SDES: Final = 202
#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
_NTP_OFFSET: Final = 2_208_988_800
_HEADER: Final = struct.Struct("!BBHI")
_SENDER_INFO: Final = struct.Struct("!IIIII")
_BLOCK: Final = struct.Struct("!IIIIII")


def _ntp(wall: float) -> tuple[int, int]:
    seconds = int(wall)
    return (seconds + _NTP_OFFSET) & 0xFFFFFFFF, int((wall - seconds) * (1 << 32)) & 0xFFFFFFFF


class RtcpReporter:
    """RTCP of one leg: builds our compound reports and reads the peer's (section 6.4)."""

    def __init__(
        self,
        outbound: OutboundStream,
        reception: ReceptionStats,
        *,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbound = outbound
        self.reception = reception
        self.cname = secrets.token_hex(8).encode()
        self.received = 0
        self.malformed = 0
        self.sent = 0
        #: The latest round trip computed from a report block about our stream, in milliseconds.
        self.rtt_ms: float | None = None
        self._wall = wall
        self._clock = clock
        self._sent_at_last_report = 0
        self._expected_prior = 0
        self._received_prior = 0
        #: (middle 32 bits of the peer's last SR NTP timestamp, when it arrived) for LSR/DLSR.
        self._last_sr: tuple[int, float] | None = None

    def report(self) -> bytes:
        """Our next compound packet: SR or RR with one report block when we receive, then SDES."""
        blocks = b""
        count = 0
        source = self.reception.source
        if source is not None:
            blocks = self._block(source)
            count = 1
        ssrc = self.outbound.ssrc
        if self.outbound.sent != self._sent_at_last_report:
            self._sent_at_last_report = self.outbound.sent
            wall = self._wall()
            seconds, fraction = _ntp(wall)
            info = _SENDER_INFO.pack(
                seconds,
                fraction,
                self.outbound.now_timestamp(),
                self.outbound.sent & 0xFFFFFFFF,
                self.outbound.octets & 0xFFFFFFFF,
            )
            body = info + blocks
            head = _HEADER.pack(0x80 | count, SR, (len(body) + 8) // 4 - 1, ssrc)
        else:
            body = blocks
            head = _HEADER.pack(0x80 | count, RR, (len(body) + 8) // 4 - 1, ssrc)
        self.sent += 1
        return head + body + self._sdes(ssrc)

    def _block(self, source: int) -> bytes:
        stats = self.reception
        expected = stats.expected
        received = stats.received
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (received - self._received_prior)
        self._expected_prior, self._received_prior = expected, received
        fraction = (
            0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        )
        cumulative = min(stats.lost, 0x7FFFFF)
        lsr, dlsr = 0, 0
        if self._last_sr is not None:
            lsr = self._last_sr[0]
            dlsr = int((self._clock() - self._last_sr[1]) * 65536) & 0xFFFFFFFF
        return _BLOCK.pack(
            source,
            (min(fraction, 255) << 24) | cumulative,
            stats.extended_max & 0xFFFFFFFF,
            stats.jitter_units & 0xFFFFFFFF,
            lsr,
            dlsr,
        )

    def _sdes(self, ssrc: int) -> bytes:
        # RFC 3550 section 6.5: one chunk, CNAME item (type 1), a null item, padded to 32 bits.
        item = bytes((1, len(self.cname))) + self.cname + b"\x00"
        item += b"\x00" * (-(4 + len(item)) % 4)
        return _HEADER.pack(0x81, SDES, (8 + len(item)) // 4 - 1, ssrc) + item

    def receive(self, data: bytes) -> None:
        """A compound packet from the peer; malformed ones are counted and dropped."""
        offset = 0
        size = len(data)
        if size < 8 or data[0] >> 6 != 2 or data[1] not in (SR, RR):
            # RFC 3550 section 6.1: a compound packet starts with SR or RR.
            self.malformed += 1
            return
        self.received += 1
        while offset + 8 <= size:
            first, kind, length, _ = _HEADER.unpack_from(data, offset)
            end = offset + 4 * (length + 1)
            if first >> 6 != 2 or end > size:
                self.malformed += 1
                return
            body = offset + 8
            if kind == SR:
                if body + _SENDER_INFO.size > end:
                    self.malformed += 1
                    return
                seconds, fraction = struct.unpack_from("!II", data, body)
                self._last_sr = (((seconds & 0xFFFF) << 16) | (fraction >> 16), self._clock())
                body += _SENDER_INFO.size
            if kind in (SR, RR):
                for index in range(first & 0x1F):
                    start = body + index * _BLOCK.size
                    if start + _BLOCK.size > end:
                        break
                    source, _, _, _, lsr, dlsr = _BLOCK.unpack_from(data, start)
                    if source == self.outbound.ssrc and lsr:
                        self._round_trip(lsr, dlsr)
            offset = end

    def _round_trip(self, lsr: int, dlsr: int) -> None:
        seconds, fraction = _ntp(self._wall())
        arrival = ((seconds & 0xFFFF) << 16) | (fraction >> 16)
        rtt = (arrival - lsr - dlsr) & 0xFFFFFFFF
        if rtt < 0x80000000:
            self.rtt_ms = 1000.0 * rtt / 65536


__all__ = ["RR", "SDES", "SR", "RtcpReporter"]
