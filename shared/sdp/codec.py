"""Payload formats as offer/answer sees them (RFC 3264 section 5.1, RFC 3551 static payload types)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shared.sdp.attributes import RtpMap


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload format of a media section, as offer/answer sees it (RFC 3264 section 5.1).

    ``channels`` defaults to 1 for audio (RFC 8866 section 6.6); ``parameters`` is the fmtp text and
    ``feedback`` the rtcp-fb values that apply (RFC 4585 section 4.2, ``*`` included).
    """

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    parameters: str | None = None
    feedback: tuple[str, ...] = ()

    def same_format(self, other: Codec) -> bool:
        """Same encoding (names are case-insensitive, RFC 4855 section 3), clock rate and channels."""
        return (
            self.name.lower() == other.name.lower()
            and self.clock_rate == other.clock_rate
            and self.channels == other.channels
        )

    def rtpmap(self) -> RtpMap:
        # Channels are written only when not 1, as peers do; opus is always /2 (RFC 7587 section 7).
        return RtpMap(
            self.payload_type, self.name, self.clock_rate, self.channels if self.channels != 1 else None
        )

    def __str__(self) -> str:
        channels = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.name}/{self.clock_rate}{channels}"


#: RFC 3551 section 6 table 4 and 5: payload types that need no rtpmap.
STATIC_PAYLOAD_TYPES: Final[dict[int, tuple[str, int, int]]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    # RFC 3551 section 4.5.2: G.722 samples at 16 kHz but its RTP clock is 8000 for historical reasons.
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
    25: ("CelB", 90000, 1),
    26: ("JPEG", 90000, 1),
    28: ("nv", 90000, 1),
    31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1),
    33: ("MP2T", 90000, 1),
    34: ("H263", 90000, 1),
}
