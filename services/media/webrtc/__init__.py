"""The WebRTC leg of a media worker: an ICE-lite endpoint on one UDP port for all its calls.

A browser reaches every call of a worker on one port (:class:`WebRtcMux`). Packets are told apart by
their first byte (RFC 7983 section 7, :mod:`.demux`); STUN connectivity checks find their session by
ICE username and are answered as an ICE-lite agent (RFC 8445 sections 2.5 and 7.3, :mod:`.ice`); an
authenticated check maps its source address to the session, and DTLS (RFC 5764, :mod:`.dtls`) and
SRTP (RFC 3711, :mod:`.srtp`) then follow that address. A :class:`WebRtcSession` answers the browser's
offer, or offers to a browser and takes its answer (the SDP rules are in :mod:`.negotiation`), and
moves RTP on our own path (``on_rtp`` in, ``send_rtp`` out); :class:`RtpEcho` sends a session's audio
back (the echo line). aiortc's track pipeline is not on this path.
"""

from services.media.webrtc.certificate import DtlsCertificate
from services.media.webrtc.demux import PacketKind, classify, is_rtcp
from services.media.webrtc.dtls import DtlsRole, DtlsState, DtlsTransport
from services.media.webrtc.echo import RtpEcho
from services.media.webrtc.ice import Address, BindingResult, IceLiteAgent, generate_credentials
from services.media.webrtc.mux import MuxCounters, WebRtcMux
from services.media.webrtc.negotiation import g711_offer
from services.media.webrtc.session import (
    DEFAULT_CODECS,
    NegotiationError,
    SessionCounters,
    WebRtcSession,
    WebRtcState,
)
from services.media.webrtc.srtp import SrtpContext, SrtpKeys

__all__ = [
    "DEFAULT_CODECS",
    "Address",
    "BindingResult",
    "DtlsCertificate",
    "DtlsRole",
    "DtlsState",
    "DtlsTransport",
    "IceLiteAgent",
    "MuxCounters",
    "NegotiationError",
    "PacketKind",
    "RtpEcho",
    "SessionCounters",
    "SrtpContext",
    "SrtpKeys",
    "WebRtcMux",
    "WebRtcSession",
    "WebRtcState",
    "classify",
    "g711_offer",
    "generate_credentials",
    "is_rtcp",
]
