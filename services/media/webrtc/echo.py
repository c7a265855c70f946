"""The echo line: a session's own audio sent back to it, as a stream of ours.

The browser must see a stream it did not send (RFC 3550 section 8.2: an SSRC equal to its own would be
a collision), so each packet goes back with our SSRC and with sequence numbers and timestamps shifted
by random offsets (RFC 3550 section 5.1 wants random initial values). Shifting rather than renumbering
keeps the browser's losses and reordering visible to its jitter buffer and its RTCP reports. CSRCs,
header extensions (their ids were negotiated for the browser's stream, not ours: RFC 8285 section 6)
and padding are dropped; marker bit, payload type and payload are kept, so telephone-event (RFC 4733)
is echoed too.
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Callable
from typing import Final

from services.media.webrtc.session import WebRtcSession

_HEADER: Final = struct.Struct("!BBHII")
_FIELDS: Final = struct.Struct("!HII")
_MARKER: Final = 0x80


class RtpEcho:
    """Echoes a :class:`WebRtcSession`'s decrypted RTP back to it (it becomes ``on_rtp``)."""

    def __init__(self, session: WebRtcSession, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.ssrc = secrets.randbits(32)
        self.echoed = 0
        #: Packets that were not RTP version 2 or whose header overran the packet.
        self.dropped = 0
        self._clock = clock
        self._sequence_offset = secrets.randbits(16)
        self._timestamp_offset = secrets.randbits(32)
        self._source: int | None = None
        self._last_sequence = 0
        self._last_timestamp = 0
        self._last_at = 0.0
        session.on_rtp = self.receive

    def receive(self, packet: bytes) -> None:
        size = len(packet)
        if size < 12:
            self.dropped += 1
            return
        first = packet[0]
        start = 12 + 4 * (first & 0x0F)  # CSRCs (RFC 3550 section 5.1)
        if first & 0x10:  # a header extension: 4 bytes, then its length in words (RFC 3550 5.3.1)
            if size < start + 4:
                self.dropped += 1
                return
            start += 4 + 4 * int.from_bytes(packet[start + 2 : start + 4])
        end = size - packet[-1] if first & 0x20 else size  # padding, its count last (RFC 3550 5.1)
        if first >> 6 != 2 or start > end:
            self.dropped += 1
            return
        sequence, timestamp, source = _FIELDS.unpack_from(packet, 2)
        second = packet[1]
        if source != self._source:
            second |= self._rebase(sequence, timestamp, source)
        out_sequence = (sequence + self._sequence_offset) & 0xFFFF
        out_timestamp = (timestamp + self._timestamp_offset) & 0xFFFFFFFF
        self._last_sequence = out_sequence
        self._last_timestamp = out_timestamp
        self._last_at = self._clock()
        header = _HEADER.pack(0x80, second, out_sequence, out_timestamp, self.ssrc)
        if self.session.send_rtp(header + packet[start:end]):
            self.echoed += 1

    def _rebase(self, sequence: int, timestamp: int, source: int) -> int:
        """A new incoming SSRC (the browser restarted its stream): our stream goes on without a
        jump, its timestamps advanced by the time that passed, and the marker bit set as at the start
        of a talkspurt (RFC 3551 section 4.1). Returns the marker bit to set."""
        first = self._source is None
        self._source = source
        if first:
            return 0
        rate = self.session.codecs[0].clock_rate if self.session.codecs else 8000
        elapsed = max(0, round((self._clock() - self._last_at) * rate))
        self._sequence_offset = (self._last_sequence + 1 - sequence) & 0xFFFF
        self._timestamp_offset = (self._last_timestamp + elapsed - timestamp) & 0xFFFFFFFF
        return _MARKER
