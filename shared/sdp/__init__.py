"""Session Description Protocol for offer/answer on both legs (RFC 8866, RFC 3264), sans-I/O.

One model serves the browser leg (Chromium's ``UDP/TLS/RTP/SAVPF`` offers with ICE, DTLS and BUNDLE)
and the carrier leg (``RTP/AVP`` G.711 from Asterisk, sipp and SBCs). Everything here is pure: text in,
frozen dataclasses out, text back; nothing reads a clock, a socket or a random source except
:func:`random_session_id`, which callers may replace with their own.

Parsing (:meth:`SessionDescription.parse`) is strict where offer/answer needs it and tolerant where real
peers deviate harmlessly:

- every fault is an :class:`SdpError` naming the line and the fault (``line 7: bad rtpmap
  'a=rtpmap:xx' (...)``) so signaling can answer 488 or 400 with a reason; nothing else is raised;
- unknown type letters are errors (RFC 8866 section 5: a parser must not act on a description it does
  not understand); unknown *attributes* are kept verbatim (RFC 8866 section 5.13);
- LF-only line endings, trailing blanks and blank lines are accepted; the ``i= u= e= p= c= b= t= z= k=
  a=`` lines of a level may come in any order, and serialization writes the order of RFC 8866 section 5.

Attributes are stored as written, in order (:class:`Attribute`), and interpreted on construction: the
ones this package knows (rtpmap, fmtp, candidate, fingerprint, setup, ...) are validated then and their
typed value is kept, so ``a=rtpmap:xx`` fails at its line, typed access never fails later, and a parsed
description serializes back byte for byte (modulo CRLF and trailing blanks).

Offer/answer (RFC 3264): :attr:`MediaDescription.codecs` (static payload types included),
:func:`negotiate_codecs`, :meth:`Direction.answer`, :meth:`SessionDescription.is_on_hold`,
:func:`answer_media`, :func:`answer_session` and :func:`revise` for the origin version of re-offers.

Modules: :mod:`~shared.sdp.session` (media sections, descriptions, the parser),
:mod:`~shared.sdp.attributes` (``a=`` lines), :mod:`~shared.sdp.fields` (``o= c= b= t= r= z=``),
:mod:`~shared.sdp.codec`, :mod:`~shared.sdp.offer_answer`, :mod:`~shared.sdp.errors`. Import from
``shared.sdp``.
"""

from shared.sdp.attributes import (
    Attribute,
    AttributeValue,
    Candidate,
    Crypto,
    Direction,
    ExtMap,
    Fingerprint,
    Fmtp,
    Group,
    IceCredentials,
    Msid,
    Rtcp,
    RtcpFb,
    RtpMap,
    Setup,
    Ssrc,
)
from shared.sdp.codec import STATIC_PAYLOAD_TYPES, Codec
from shared.sdp.errors import NoCommonCodec, SdpError
from shared.sdp.fields import Bandwidth, Connection, Origin, Repeat, TimeDescription, ZoneAdjustment
from shared.sdp.offer_answer import (
    answer_media,
    answer_session,
    build_media,
    build_session,
    negotiate_codecs,
    random_session_id,
    rejected_media,
    revise,
    transport_attributes,
)
from shared.sdp.session import MediaDescription, SessionDescription

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "AttributeValue",
    "Bandwidth",
    "Candidate",
    "Codec",
    "Connection",
    "Crypto",
    "Direction",
    "ExtMap",
    "Fingerprint",
    "Fmtp",
    "Group",
    "IceCredentials",
    "MediaDescription",
    "Msid",
    "NoCommonCodec",
    "Origin",
    "Repeat",
    "Rtcp",
    "RtcpFb",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Setup",
    "Ssrc",
    "TimeDescription",
    "ZoneAdjustment",
    "answer_media",
    "answer_session",
    "build_media",
    "build_session",
    "negotiate_codecs",
    "random_session_id",
    "rejected_media",
    "revise",
    "transport_attributes",
]
