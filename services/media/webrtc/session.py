"""One browser's WebRTC leg: the SDP answer, ICE-lite, DTLS-SRTP, and RTP on our own path.

A :class:`WebRtcSession` answers a browser's offer (JSEP, RFC 8829 section 5.3; RFC 3264 section 6)
as an ICE-lite endpoint with one host candidate, then lives on the worker's shared port: the
:class:`~services.media.webrtc.mux.WebRtcMux` hands it the Binding requests for its ufrag and the DTLS
and SRTP datagrams of the addresses those requests authenticated. Decrypted RTP goes to
:attr:`WebRtcSession.on_rtp`; :meth:`WebRtcSession.send_rtp` protects and sends to the browser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import pylibsrtp

from services.media.webrtc.certificate import DtlsCertificate
from services.media.webrtc.dtls import DtlsRole, DtlsState, DtlsTransport
from services.media.webrtc.ice import Address, IceLiteAgent, generate_credentials
from services.media.webrtc.srtp import SrtpContext
from shared.sdp import (
    Candidate,
    Codec,
    Connection,
    IceCredentials,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
    Setup,
    answer_media,
    answer_session,
    negotiate_codecs,
    random_session_id,
    transport_attributes,
)

#: Our codec preference towards browsers: G.711 first so a carrier leg in G.711 is a passthrough
#: (no transcoding), opus only when the browser offers nothing else; telephone-event kept (RFC 4733).
DEFAULT_CODECS: Final = ("PCMU/8000", "PCMA/8000", "opus/48000/2", "telephone-event")
#: RFC 8445 section 5.1.2.1: type preference 126 (host), local preference 65535, component 1.
HOST_PRIORITY: Final = (126 << 24) | (65535 << 8) | (256 - 1)
#: The proto of DTLS-SRTP media: RFC 5764 section 8 (SAVP) and JSEP's feedback profile (SAVPF).
_DTLS_SRTP_PROTOS: Final = frozenset({"UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP"})
#: Addresses one session may hold in the mux: a browser checks from a handful of candidates.
MAX_ADDRESSES: Final = 8

Transmit = Callable[[bytes, Address], None]


class WebRtcState(StrEnum):
    NEW = "new"
    #: An authenticated connectivity check arrived; DTLS is under way.
    CHECKING = "checking"
    #: DTLS is done and the SRTP keys are set: media flows.
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(slots=True)
class SessionCounters:
    rtp_received: int = 0
    rtcp_received: int = 0
    rtp_sent: int = 0
    rtcp_sent: int = 0
    #: SRTP or SRTCP packets that failed authentication or replay checks (RFC 3711 section 3.3).
    srtp_rejected: int = 0
    #: SRTP that arrived before the keys (the browser's media can overtake our last DTLS flight).
    srtp_early: int = 0
    #: Packets we were asked to send that libsrtp refused (malformed or too long).
    send_rejected: int = 0
    dtls_received: int = 0


class WebRtcSession:
    """The WebRTC leg of one call on the worker's shared port."""

    def __init__(
        self,
        certificate: DtlsCertificate,
        *,
        address: str,
        port: int,
        credentials: IceCredentials | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.certificate = certificate
        #: The advertised address and port of our only candidate (the worker's public address).
        self.address = address
        self.port = port
        self.ice = IceLiteAgent(credentials or generate_credentials())
        self.state = WebRtcState.NEW
        #: Why the session failed or closed.
        self.reason: str | None = None
        self.counters = SessionCounters()
        #: The codecs of our answer, the chosen one first, telephone-event after it.
        self.codecs: tuple[Codec, ...] = ()
        #: Where media to the browser goes: the nominated pair, or before nomination the latest
        #: authenticated source (RFC 8445 section 8.2 lets a lite agent send once a pair is valid).
        self.remote_address: Address | None = None
        #: Sources of authenticated checks, oldest first; the mux routes DTLS and SRTP by them.
        self.addresses: dict[Address, None] = {}
        #: Monotonic time of the last RTP packet that authenticated: the media timeout's input.
        self.last_rtp_at: float | None = None
        #: Decrypted RTP from the browser.
        self.on_rtp: Callable[[bytes], None] | None = None
        #: Decrypted RTCP (compound packets) from the browser.
        self.on_rtcp: Callable[[bytes], None] | None = None
        self.on_state_change: Callable[[WebRtcState], None] | None = None
        self.dtls: DtlsTransport | None = None
        self.answer: SessionDescription | None = None
        self._srtp: SrtpContext | None = None
        self._transmit: Transmit | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._dtls_seen = False
        self._clock = clock

    @property
    def ufrag(self) -> str:
        return self.ice.local.ufrag

    @property
    def local_candidate(self) -> Candidate:
        """Our only candidate: a host candidate on the advertised address (RFC 8445 section 5.1.1.1;
        a lite agent has host candidates only, section 2.5)."""
        return Candidate("1", 1, "udp", HOST_PRIORITY, self.address, self.port, "host")

    # -- offer/answer

    def accept_offer(
        self,
        offer: SessionDescription,
        *,
        setup: Setup = Setup.PASSIVE,
        codecs: Sequence[str] = DEFAULT_CODECS,
    ) -> SessionDescription:
        """Our answer to a browser's offer; the session is then ready for its checks.

        The first audio section over DTLS-SRTP is accepted with one codec (our first preference the
        browser offers, plus telephone-event at its clock rate) and every other section is refused
        (RFC 3264 section 6). ``setup`` is our DTLS role when the offer leaves the choice to us
        (``actpass``, RFC 8842 section 5.3); browsers offer actpass and accept both. Raises
        :class:`~shared.sdp.SdpError` (:class:`~shared.sdp.NoCommonCodec` among them) naming the fault.
        """
        if self.answer is not None:
            raise RuntimeError("this session has answered already; re-offers are not handled yet")
        media = self._audio_section(offer)
        credentials = offer.ice_credentials_of(media)
        if credentials is None:
            raise SdpError("no ICE credentials", "an ICE-lite answerer needs ice-ufrag and ice-pwd")
        fingerprints = offer.fingerprints_of(media)
        if not fingerprints:
            raise SdpError("no fingerprint", "DTLS-SRTP needs the offerer's certificate fingerprint")
        if not media.rtcp_mux:
            raise SdpError("no rtcp-mux", "we serve RTCP on the RTP port only (RFC 5761)")
        # RFC 4145 section 4: a missing setup attribute means active.
        offered_setup = offer.setup_of(media) or Setup.ACTIVE
        if offered_setup is Setup.HOLDCONN:
            raise SdpError("bad setup", "holdconn leaves no DTLS connection to set up")
        our_setup = offered_setup.answer(setup)
        chosen = negotiate_codecs(media, codecs, limit=1)
        family = "IP6" if ":" in self.address else "IP4"
        answered = answer_media(
            offer,
            media,
            chosen,
            port=self.port,
            connection=Connection("IN", family, self.address),
            attributes=transport_attributes(
                ice=self.ice.local,
                candidates=(self.local_candidate,),
                end_of_candidates=True,
                fingerprint=self.certificate.fingerprint,
                setup=our_setup,
            ),
        )
        origin = Origin("-", random_session_id(), 1, "IN", family, self.address)
        answer = answer_session(
            offer,
            origin,
            [answered if section is media else None for section in offer.media],
            ice_lite=True,
        )
        self.ice.remote = credentials
        self.codecs = chosen
        role = DtlsRole.SERVER if our_setup is Setup.PASSIVE else DtlsRole.CLIENT
        self.dtls = DtlsTransport(self.certificate, role, fingerprints)
        self.answer = answer
        return answer

    @staticmethod
    def _audio_section(offer: SessionDescription) -> MediaDescription:
        for media in offer.media:
            if media.kind == "audio" and not media.is_rejected and media.proto in _DTLS_SRTP_PROTOS:
                return media
        raise SdpError("no audio to answer", "want an m=audio section over UDP/TLS/RTP/SAVPF")

    # -- sending

    def send_rtp(self, packet: bytes) -> bool:
        """Protect one RTP packet and send it to the browser; False until connected."""
        srtp, remote, transmit = self._srtp, self.remote_address, self._transmit
        if srtp is None or remote is None or transmit is None:
            return False
        try:
            protected = srtp.protect(packet)
        except (pylibsrtp.Error, ValueError):
            self.counters.send_rejected += 1
            return False
        transmit(protected, remote)
        self.counters.rtp_sent += 1
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        """Protect one (compound) RTCP packet and send it on the RTP port (RFC 5761)."""
        srtp, remote, transmit = self._srtp, self.remote_address, self._transmit
        if srtp is None or remote is None or transmit is None:
            return False
        try:
            protected = srtp.protect_rtcp(packet)
        except (pylibsrtp.Error, ValueError):
            self.counters.send_rejected += 1
            return False
        transmit(protected, remote)
        self.counters.rtcp_sent += 1
        return True

    def close(self) -> None:
        """Send DTLS close_notify and stop; the mux forgets the session on ``remove``."""
        if self.state is WebRtcState.CLOSED:
            return
        self._cancel_timer()
        if self.dtls is not None and self.remote_address is not None:
            self._send_all(self.dtls.close(), self.remote_address)
        self._srtp = None
        self._set_state(WebRtcState.CLOSED, self.reason or "closed")

    # -- what the mux calls

    def attach(self, transmit: Transmit) -> None:
        """Give the session the socket's send function (the mux does on ``add``)."""
        self._transmit = transmit

    def binding_checked(self, source: Address, nominated: bool) -> None:
        """An authenticated check from ``source`` was answered (RFC 8445 section 7.3)."""
        if nominated or (self.ice.nominated is None and not self._dtls_seen):
            # Before nomination, the pair the browser's DTLS uses wins over its other checks.
            self.remote_address = source
        if self.state is WebRtcState.NEW:
            self._set_state(WebRtcState.CHECKING)
        dtls = self.dtls
        if dtls is not None and dtls.role is DtlsRole.CLIENT and dtls.state is DtlsState.NEW:
            # As DTLS client we open once a pair works: the ClientHello goes where the check came from.
            self._send_all(dtls.start(), source)
            self._after_dtls()

    def receive_dtls(self, datagram: bytes, source: Address) -> None:
        dtls = self.dtls
        if dtls is None or self.state in (WebRtcState.CLOSED, WebRtcState.FAILED):
            return
        self.counters.dtls_received += 1
        if self.ice.nominated is None:
            # Chromium sends its ClientHello before it nominates: the pair it uses is the one to answer.
            self.remote_address = source
            self._dtls_seen = True
        self._send_all(dtls.receive(datagram), source)
        self._after_dtls()

    def receive_srtp(self, packet: bytes) -> None:
        """One SRTP or SRTCP packet (at least 12 bytes, first byte 128-191) from our addresses."""
        srtp = self._srtp
        if srtp is None:
            self.counters.srtp_early += 1
            return
        if 191 < packet[1] < 224:  # RTCP packet types on the RTP port (RFC 5761 section 4)
            try:
                rtcp = srtp.unprotect_rtcp(packet)
            except (pylibsrtp.Error, ValueError):
                self.counters.srtp_rejected += 1
                return
            self.counters.rtcp_received += 1
            if self.on_rtcp is not None:
                self.on_rtcp(rtcp)
            return
        try:
            rtp = srtp.unprotect(packet)
        except (pylibsrtp.Error, ValueError):
            self.counters.srtp_rejected += 1
            return
        self.counters.rtp_received += 1
        self.last_rtp_at = self._clock()
        on_rtp = self.on_rtp
        if on_rtp is not None:
            on_rtp(rtp)

    # -- internals

    def _send_all(self, datagrams: list[bytes], destination: Address | None) -> None:
        transmit = self._transmit
        if transmit is None or destination is None:
            return
        for datagram in datagrams:
            transmit(datagram, destination)

    def _after_dtls(self) -> None:
        dtls = self.dtls
        if dtls is None:
            return
        if dtls.state is DtlsState.CONNECTED and self._srtp is None and dtls.keys is not None:
            self._srtp = SrtpContext(dtls.keys)
            self._set_state(WebRtcState.CONNECTED)
        elif dtls.state is DtlsState.FAILED:
            self._srtp = None
            self._set_state(WebRtcState.FAILED, dtls.reason)
        elif dtls.state is DtlsState.CLOSED and self.state is not WebRtcState.CLOSED:
            self._srtp = None
            self._set_state(WebRtcState.CLOSED, dtls.reason)
        self._arm_timer()

    def _arm_timer(self) -> None:
        self._cancel_timer()
        dtls = self.dtls
        if dtls is None or self.state in (WebRtcState.CLOSED, WebRtcState.FAILED):
            return
        delay = dtls.timeout()
        if delay is not None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.dtls is None:
            return
        self._send_all(self.dtls.handle_timeout(), self.remote_address)
        self._after_dtls()

    def _set_state(self, state: WebRtcState, reason: str | None = None) -> None:
        if state is self.state:
            return
        self.state = state
        if reason is not None:
            self.reason = reason
        if self.on_state_change is not None:
            self.on_state_change(state)
