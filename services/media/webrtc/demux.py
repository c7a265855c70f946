"""Telling the protocols on one UDP port apart by their first byte (RFC 7983 section 7).

STUN, DTLS and SRTP share the port of a WebRTC leg (RFC 8843 bundles every stream on it, RFC 5761
puts RTCP beside RTP), and the worker serves all its calls on one port, so every datagram is
classified before anything else reads it.
"""

from __future__ import annotations

from enum import Enum


class PacketKind(Enum):
    """What a datagram carries, by the ranges of RFC 7983 section 7."""

    STUN = "stun"
    ZRTP = "zrtp"
    DTLS = "dtls"
    TURN_CHANNEL = "turn-channel"
    RTP = "rtp"
    UNKNOWN = "unknown"


def classify(datagram: bytes) -> PacketKind:
    """The kind of ``datagram`` (RFC 7983 section 7): 0-3 STUN, 16-19 ZRTP, 20-63 DTLS, 64-79 TURN
    channels, 128-191 RTP and RTCP; anything else, and an empty datagram, is unknown.

    The mux inlines these comparisons on its hot path; this is their reference and the tests' oracle.
    """
    if not datagram:
        return PacketKind.UNKNOWN
    first = datagram[0]
    if first <= 3:
        return PacketKind.STUN
    if 16 <= first <= 19:
        return PacketKind.ZRTP
    if 20 <= first <= 63:
        return PacketKind.DTLS
    if 64 <= first <= 79:
        return PacketKind.TURN_CHANNEL
    if 128 <= first <= 191:
        return PacketKind.RTP
    return PacketKind.UNKNOWN


def is_rtcp(packet: bytes) -> bool:
    """Whether an RTP-range packet is RTCP multiplexed on the RTP port (RFC 5761 section 4).

    RTCP packet types 192-223 would be RTP payload types 64-95 with the marker bit set, which RFC 5761
    section 4 keeps free for this reason. ``packet`` must be at least two bytes long.
    """
    return 192 <= packet[1] <= 223
