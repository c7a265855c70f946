"""The SDP of a WebRTC leg, without state: our offer to a browser and the checks its descriptions pass.

:class:`~services.media.webrtc.session.WebRtcSession` keeps the negotiation's state; what is here is
pure (descriptions in, descriptions or errors out) so each rule is tested on its own:

- :func:`build_offer`: JSEP's offer (RFC 8829 section 5.2.1) as an ICE-lite endpoint: one audio
  section over UDP/TLS/RTP/SAVPF with mid ``0`` in a BUNDLE group, our ICE credentials and only host
  candidate, ``a=ice-lite`` (RFC 8839 section 5.3), a sha-256 fingerprint, ``a=setup:actpass`` (RFC
  5763 section 5: the offerer lets the answerer pick its DTLS role), rtcp-mux, G.711 and
  telephone-event (RFC 4733).
- :func:`remote_transport`: what a browser's offer or answer must carry for DTLS-SRTP over ICE.
- :func:`answer_role` and :func:`reoffer_role`: the DTLS role an answer gives us, and the one a
  re-offer must leave us (RFC 8842 section 5.5).
- :func:`chosen_codecs`: the codec a browser's answer picked among those we offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from services.media.webrtc.dtls import DtlsRole
from shared.sdp import (
    Attribute,
    Candidate,
    Codec,
    Connection,
    Direction,
    Fingerprint,
    Group,
    IceCredentials,
    MediaDescription,
    Msid,
    NoCommonCodec,
    Origin,
    SdpError,
    SessionDescription,
    Setup,
    build_media,
    build_session,
    random_session_id,
    transport_attributes,
)

PCMU: Final = Codec(0, "PCMU", 8000)
PCMA: Final = Codec(8, "PCMA", 8000)
TELEPHONE_EVENT: Final = Codec(101, "telephone-event", 8000, parameters="0-16")
#: Our mid: the one audio section of our offers (RFC 8843 section 7.2 needs a mid to bundle).
MID: Final = "0"
#: The proto of DTLS-SRTP media: RFC 5764 section 8 (SAVP) and JSEP's feedback profile (SAVPF).
DTLS_SRTP_PROTOS: Final = frozenset({"UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP"})
#: JSEP's profile for what we offer (RFC 8829 section 5.1.2).
OFFER_PROTO: Final = "UDP/TLS/RTP/SAVPF"
#: The msid of our stream (RFC 8830): a browser then puts our track in a MediaStream of its own.
STREAM_ID: Final = "echodesk"
TRACK_ID: Final = "audio"
_RATE_BOUND: Final = frozenset({"telephone-event", "cn"})


def g711_offer(prefer: str | None = None) -> tuple[Codec, ...]:
    """PCMU and PCMA (``prefer``'s law first, so a bridge to a carrier in that law is a passthrough),
    then telephone-event at 8 kHz (RFC 4733 section 2.1: the event clock is the audio clock)."""
    first, second = (PCMA, PCMU) if prefer is not None and prefer.upper() == "PCMA" else (PCMU, PCMA)
    return (first, second, TELEPHONE_EVENT)


def build_offer(
    *,
    address: str,
    port: int,
    ice: IceCredentials,
    candidate: Candidate,
    fingerprint: Fingerprint,
    codecs: Sequence[Codec],
) -> SessionDescription:
    """Our offer to a browser (RFC 8829 section 5.2.1) as an ICE-lite endpoint with one candidate."""
    family = "IP6" if ":" in address else "IP4"
    media = build_media(
        "audio",
        port,
        codecs,
        proto=OFFER_PROTO,
        connection=Connection("IN", family, address),
        direction=Direction.SENDRECV,
        mid=MID,
        rtcp_mux=True,
        attributes=(
            *transport_attributes(
                ice=ice,
                candidates=(candidate,),
                end_of_candidates=True,
                fingerprint=fingerprint,
                setup=Setup.ACTPASS,
            ),
            Msid(STREAM_ID, TRACK_ID).to_attribute(),
        ),
    )
    origin = Origin("-", random_session_id(), 1, "IN", family, address)
    return build_session(
        origin,
        [media],
        attributes=(Group("BUNDLE", (MID,)).to_attribute(), Attribute("ice-lite")),
    )


def audio_section(description: SessionDescription, mid: str | None = None) -> MediaDescription:
    """The audio section over DTLS-SRTP we negotiate: the one with ``mid`` when given and present,
    else the first that is not refused."""
    if mid is not None:
        media = description.media_by_mid(mid)
        if media is not None and media.kind == "audio" and media.proto in DTLS_SRTP_PROTOS:
            if media.is_rejected:
                raise SdpError("audio rejected", "the browser refused the audio stream (port 0)")
            return media
    for media in description.media:
        if media.kind == "audio" and not media.is_rejected and media.proto in DTLS_SRTP_PROTOS:
            return media
    raise SdpError("no audio to answer", "want an m=audio section over UDP/TLS/RTP/SAVPF")


@dataclass(frozen=True, slots=True)
class RemoteTransport:
    """The browser's side of ICE and DTLS for one section."""

    credentials: IceCredentials
    fingerprints: tuple[Fingerprint, ...]
    #: ``a=setup`` as written; RFC 4145 section 4: absent means active.
    setup: Setup


def remote_transport(description: SessionDescription, media: MediaDescription) -> RemoteTransport:
    """ICE credentials (RFC 8839 section 5.4), the certificate fingerprint (RFC 8122 section 5) and
    rtcp-mux (RFC 5761; we serve RTCP on the RTP port only), or an :class:`SdpError` naming the fault."""
    credentials = description.ice_credentials_of(media)
    if credentials is None:
        raise SdpError("no ICE credentials", "an ICE-lite endpoint needs ice-ufrag and ice-pwd")
    fingerprints = description.fingerprints_of(media)
    if not fingerprints:
        raise SdpError("no fingerprint", "DTLS-SRTP needs the browser's certificate fingerprint")
    if not media.rtcp_mux:
        raise SdpError("no rtcp-mux", "we serve RTCP on the RTP port only (RFC 5761)")
    return RemoteTransport(credentials, fingerprints, description.setup_of(media) or Setup.ACTIVE)


def answer_role(setup: Setup) -> DtlsRole:
    """Our DTLS role from the browser's answer to our ``actpass`` (RFC 5763 section 5): ``active``
    (Chromium, aiortc) makes us the server, ``passive`` the client."""
    if setup is Setup.ACTIVE:
        return DtlsRole.SERVER
    if setup is Setup.PASSIVE:
        return DtlsRole.CLIENT
    raise SdpError("bad setup", f"an answer's setup is active or passive (RFC 5763 section 5), not {setup}")


def reoffer_role(offered: Setup, current: DtlsRole) -> Setup:
    """Our ``a=setup`` answering a re-offer on a running DTLS association: the role stays (RFC 8842
    section 5.5); a re-offer that would swap it asks for a new association, which we do not make."""
    keep = Setup.PASSIVE if current is DtlsRole.SERVER else Setup.ACTIVE
    # actpass lets us keep our role; active asks us to be passive and passive to be active.
    if offered is not Setup.HOLDCONN and offered.answer(keep) is keep:
        return keep
    raise SdpError(
        "bad setup",
        f"setup:{offered} would make us DTLS {'client' if current is DtlsRole.SERVER else 'server'} "
        "on a running association; a new DTLS association is not supported (RFC 8842 section 5.5)",
    )


def chosen_codecs(media: MediaDescription, offered: Sequence[Codec]) -> tuple[Codec, ...]:
    """The browser's choice from an answer to our offer: its first audio codec that we offered, then
    telephone-event at that codec's clock when it kept it (RFC 3264 section 6.1, RFC 4733 section 2.1).

    The answer's payload types are used: what we send must carry the types its author receives
    (RFC 3264 section 5.1). Raises :class:`NoCommonCodec` when it kept none of ours.
    """
    audio = next(
        (
            codec
            for codec in media.codecs
            if codec.name.lower() not in _RATE_BOUND and any(codec.same_format(ours) for ours in offered)
        ),
        None,
    )
    if audio is None:
        raise NoCommonCodec(media.codecs, [str(codec) for codec in offered])
    event = next(
        (
            codec
            for codec in media.codecs
            if codec.name.lower() == "telephone-event" and codec.clock_rate == audio.clock_rate
        ),
        None,
    )
    return (audio,) if event is None else (audio, event)


__all__ = [
    "DTLS_SRTP_PROTOS",
    "MID",
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "RemoteTransport",
    "answer_role",
    "audio_section",
    "build_offer",
    "chosen_codecs",
    "g711_offer",
    "remote_transport",
    "reoffer_role",
]
