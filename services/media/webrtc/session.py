"""One browser's WebRTC leg: offer/answer, ICE-lite, DTLS-SRTP, and RTP on our own path.

A :class:`WebRtcSession` answers a browser's offer (JSEP, RFC 8829 section 5.3; RFC 3264 section 6),
or makes an offer to a browser and takes its answer (RFC 8829 sections 5.2 and 5.4: a call that rings
a browser), and answers its re-offers (hold and resume, ICE restarts: RFC 3264 section 8), as an
ICE-lite endpoint with one host candidate. It lives on the worker's shared port: the
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
from services.media.webrtc.negotiation import (
    answer_role,
    audio_section,
    build_offer,
    chosen_codecs,
    g711_offer,
    remote_transport,
    reoffer_role,
)
from services.media.webrtc.srtp import SrtpContext
from shared.sdp import (
    Candidate,
    Codec,
    Connection,
    Direction,
    IceCredentials,
    Origin,
    SdpError,
    SessionDescription,
    Setup,
    answer_media,
    answer_session,
    negotiate_codecs,
    random_session_id,
    revise,
    transport_attributes,
)

#: Our codec preference towards browsers: G.711 first so a carrier leg in G.711 is a passthrough
#: (no transcoding), opus only when the browser offers nothing else; telephone-event kept (RFC 4733).
DEFAULT_CODECS: Final = ("PCMU/8000", "PCMA/8000", "opus/48000/2", "telephone-event")
#: RFC 8445 section 5.1.2.1: type preference 126 (host), local preference 65535, component 1.
HOST_PRIORITY: Final = (126 << 24) | (65535 << 8) | (256 - 1)
#: Addresses one session may hold in the mux: a browser checks from a handful of candidates.
MAX_ADDRESSES: Final = 8
#: DTLS datagrams kept while our offer awaits its answer (a ClientHello is two, plus retransmissions).
MAX_EARLY_DTLS: Final = 16

Transmit = Callable[[bytes, Address], None]


class NegotiationError(RuntimeError):
    """An offer or answer that does not fit where the negotiation stands (RFC 3264 section 4): an answer
    with no offer of ours out, a second different answer to a forked offer, an offer while ours awaits
    its answer (glare), or a change the running DTLS association cannot take. ``code`` names the case
    for the typed error signaling gets."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


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
    #: DTLS that arrived before the answer to our offer, kept for when it comes.
    dtls_early: int = 0
    #: RTP we were asked to send while the browser receives none (it holds: sendonly or inactive).
    not_sent: int = 0
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
        #: Our offer to the browser, while it awaits the answer and after.
        self.offer: SessionDescription | None = None
        #: Our last answer (to the first offer or to a re-offer).
        self.answer: SessionDescription | None = None
        #: Our current description (offer or answer): re-answers keep its o= line (RFC 3264 section 8).
        self.local: SessionDescription | None = None
        #: The browser's direction from its last description (RFC 3264 section 5.1).
        self.remote_direction = Direction.SENDRECV
        #: The browser receives RTP (not on hold): checked per packet, so a plain attribute.
        self.sending = True
        self._mid: str | None = None
        self._early_dtls: list[tuple[bytes, Address]] = []
        self._srtp: SrtpContext | None = None
        self._transmit: Transmit | None = None
        self._draw: Callable[[], IceCredentials] | None = None
        self._rekeyed: Callable[[str], None] | None = None
        self._forget: Callable[[Address], None] | None = None
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
        wish: Direction = Direction.SENDRECV,
    ) -> SessionDescription:
        """Our answer to a browser's offer or re-offer; after the first, the session awaits its checks.

        The first audio section over DTLS-SRTP is accepted with one codec (our first preference the
        browser offers, plus telephone-event at its clock rate) and every other section is refused
        (RFC 3264 section 6). ``setup`` is our DTLS role when the offer leaves the choice to us
        (``actpass``, RFC 8842 section 5.3); browsers offer actpass and accept both. A re-offer is
        answered by :meth:`_accept_reoffer`; ``wish`` narrows the direction we answer with (RFC 3264
        section 6.1: ``recvonly`` while we hold the browser). Raises :class:`~shared.sdp.SdpError`
        (:class:`~shared.sdp.NoCommonCodec` among them) naming the fault, or :class:`NegotiationError`;
        the session is unchanged then.
        """
        if self.codecs:
            return self._accept_reoffer(offer, codecs=codecs, wish=wish)
        if self.offer is not None:
            # RFC 3264 section 4: no new offer while ours is out (SIP answers 491 to such glare).
            raise NegotiationError("glare", "our offer to this browser awaits its answer")
        media = audio_section(offer)
        remote = remote_transport(offer, media)
        credentials, fingerprints, offered_setup = remote.credentials, remote.fingerprints, remote.setup
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
        self._mid = media.mid
        self._use_direction(offer.direction_of(media))
        self.answer = self.local = answer
        return answer

    def create_offer(self, codecs: Sequence[Codec] | None = None) -> SessionDescription:
        """Our offer to a browser (RFC 8829 section 5.2.1): ``a=setup:actpass`` and ``a=ice-lite``, one
        audio section with ``codecs`` (G.711 and telephone-event by default, :func:`g711_offer`).

        The same offer may go to several browsers (a forked INVITE rings them in parallel); the first
        answer given to :meth:`accept_answer` wins. Checks arriving before the answer are answered at
        once (RFC 8445 section 7.3) and DTLS is kept until the answer says who the peer is.
        """
        if self.offer is not None or self.codecs:
            raise NegotiationError("wrong_state", "this session has negotiated or offered already")
        offer = build_offer(
            address=self.address,
            port=self.port,
            ice=self.ice.local,
            candidate=self.local_candidate,
            fingerprint=self.certificate.fingerprint,
            codecs=tuple(codecs) if codecs is not None else g711_offer(),
        )
        self.offer = self.local = offer
        self._mid = offer.media[0].mid
        self.ice.awaiting_answer = True
        return offer

    def accept_answer(self, answer: SessionDescription) -> None:
        """Take the browser's answer to our offer: its ICE credentials, its fingerprint (the DTLS
        certificate is checked against it, RFC 8122 section 5), its DTLS role (``active`` makes us the
        server, ``passive`` the client: RFC 5763 section 5) and its codec.

        Given the same answer again (a 200 OK retransmitted), nothing changes. A different answer once
        one was applied (another browser answered a forked offer) raises :class:`NegotiationError`
        ``already_answered`` and changes nothing; so does an answer when no offer of ours is out.
        """
        offer = self.offer
        if offer is None:
            raise NegotiationError("no_offer", "no offer of ours awaits an answer on this leg")
        media = audio_section(answer, self._mid)
        remote = remote_transport(answer, media)
        if self.codecs:
            if (
                self.ice.remote == remote.credentials
                and self.dtls is not None
                and set(self.dtls.remote_fingerprints) == set(remote.fingerprints)
            ):
                return
            raise NegotiationError(
                "already_answered",
                "another answer to this offer was applied first (a forked offer has one winner)",
            )
        role = answer_role(remote.setup)
        chosen = chosen_codecs(media, offer.media[0].codecs)
        # Everything is checked: from here the answer is applied.
        self.codecs = chosen
        self.dtls = DtlsTransport(self.certificate, role, remote.fingerprints)
        self._use_direction(answer.direction_of(media))
        for loser in self.ice.answered(remote.credentials):
            # Sources of checks from browsers that did not win a forked offer: no longer ours.
            self.addresses.pop(loser, None)
            if self.remote_address == loser:
                self.remote_address = None
            if self._forget is not None:
                self._forget(loser)
        if self.remote_address is None and self.addresses:
            self.remote_address = self.ice.nominated or next(reversed(self.addresses))
        early, self._early_dtls = self._early_dtls, []
        for datagram, source in early:
            if source in self.addresses:
                self.receive_dtls(datagram, source)
        if role is DtlsRole.CLIENT and self.remote_address is not None and self.dtls.state is DtlsState.NEW:
            # The browser's checks came before its answer: open DTLS now, where they came from.
            self._send_all(self.dtls.start(), self.remote_address)
            self._after_dtls()

    def _accept_reoffer(
        self, offer: SessionDescription, *, codecs: Sequence[str], wish: Direction
    ) -> SessionDescription:
        """Our answer to a re-offer on a negotiated leg (RFC 3264 section 8): hold and resume by its
        direction (section 8.4), an ICE restart when its credentials changed (RFC 8839 section
        4.4.1.1.1: we answer with new ones of ours), the same DTLS association (RFC 8842 section 5.5:
        same fingerprint, our role kept), and the codec in use kept first if still offered."""
        dtls = self.dtls
        if dtls is None:
            raise NegotiationError("wrong_state", "this leg has no DTLS association to keep")
        media = audio_section(offer, self._mid)
        remote = remote_transport(offer, media)
        if set(remote.fingerprints) != set(dtls.remote_fingerprints):
            raise NegotiationError(
                "unsupported",
                "the re-offer changes the certificate fingerprint: a new DTLS association is not supported",
            )
        our_setup = reoffer_role(remote.setup, dtls.role)
        current = self.codecs[0]
        preferences = (f"{current.name}/{current.clock_rate}", *codecs)
        chosen = negotiate_codecs(media, preferences, limit=1)
        restart = remote.credentials != self.ice.remote
        local = self.ice.local
        if restart:
            local = self._draw() if self._draw is not None else generate_credentials()
        family = "IP6" if ":" in self.address else "IP4"
        answered = answer_media(
            offer,
            media,
            chosen,
            port=self.port,
            wish=wish,
            connection=Connection("IN", family, self.address),
            attributes=transport_attributes(
                ice=local,
                candidates=(self.local_candidate,),
                end_of_candidates=True,
                fingerprint=self.certificate.fingerprint,
                setup=our_setup,
            ),
        )
        previous = self.local
        origin = (
            previous.origin
            if previous is not None
            else Origin("-", random_session_id(), 1, "IN", family, self.address)
        )
        answer = revise(
            previous,
            answer_session(
                offer,
                origin,
                [answered if section is media else None for section in offer.media],
                ice_lite=True,
            ),
        )
        # Everything is checked: from here the re-offer is applied.
        if restart:
            old_ufrag = self.ufrag
            self.ice.restart(local, remote.credentials)
            if self._rekeyed is not None:
                self._rekeyed(old_ufrag)
        self.codecs = chosen
        self._mid = media.mid
        self._use_direction(offer.direction_of(media))
        self.answer = self.local = answer
        return answer

    def _use_direction(self, direction: Direction) -> None:
        self.remote_direction = direction
        self.sending = direction.receives

    @property
    def on_hold(self) -> bool:
        """The browser holds the call (``sendonly`` or ``inactive``, RFC 3264 section 8.4) or only
        receives: no media is expected from it."""
        return self.remote_direction is not Direction.SENDRECV

    # -- sending

    def send_rtp(self, packet: bytes) -> bool:
        """Protect one RTP packet and send it to the browser; False until connected and while the
        browser receives none (it put the call on hold)."""
        srtp, remote, transmit = self._srtp, self.remote_address, self._transmit
        if srtp is None or remote is None or transmit is None:
            return False
        if not self.sending:
            self.counters.not_sent += 1
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

    def attach(
        self,
        transmit: Transmit,
        *,
        draw: Callable[[], IceCredentials] | None = None,
        rekeyed: Callable[[str], None] | None = None,
        forget: Callable[[Address], None] | None = None,
    ) -> None:
        """Give the session the socket's send function (the mux does on ``add``), and the mux's ways to
        draw credentials with a ufrag no session uses, to route the session by its new ufrag once an ICE
        restart took them (``rekeyed`` gets the old one), and to stop routing a source to it (a browser
        that lost a forked offer)."""
        self._transmit = transmit
        self._draw = draw
        self._rekeyed = rekeyed
        self._forget = forget

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
        if self.state in (WebRtcState.CLOSED, WebRtcState.FAILED):
            return
        if dtls is None:
            if self.ice.awaiting_answer and len(self._early_dtls) < MAX_EARLY_DTLS:
                # The browser's ClientHello can overtake its answer: keep it for when the answer comes.
                self._early_dtls.append((datagram, source))
                self.counters.dtls_early += 1
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
