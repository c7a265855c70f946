"""One call's media on a worker: its legs (WebRTC or plain RTP), the relays between them, DTMF,
hold, the media timeout and the quality summary. What the session subjects ask, a :class:`Bridge` does.

Kinds (:class:`~shared.media.SessionKind`): ``webrtc-rtp`` (a browser agent and a carrier, or a
desk phone: the browser is the agent leg whichever side called), ``rtp-rtp`` (a desk phone and a
carrier), ``webrtc-webrtc`` (two browser agents), ``echo`` (a browser or a desk phone hears itself),
``announcement`` (a browser or a desk phone hears a prompt: :mod:`services.media.announcement`). A WebRTC leg
without an offer gets ours (a call that rings a browser) and its answer comes through :meth:`Bridge.update`;
re-offers on any leg are answered there (hold, resume, ICE restart). A relay runs per
direction once both of its legs have negotiated a codec; until then what arrives is counted and
dropped. Browsers are answered with G.711 whenever they offer it (Chromium always does), so the
common bridge is a passthrough (mu-law and A-law translated by table); a browser that offers only Opus
gets Opus and that direction goes through a :class:`~services.media.transcode.TranscodingRelay`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from services.media.announcement import Announcement
from services.media.dtmf import Digit, event_packets
from services.media.ports import PortRange
from services.media.prompt import Prompt, chime
from services.media.quality import mos_estimate
from services.media.recording_fork import RecordingFork
from services.media.relay import Relay, Target
from services.media.rtp import MARKER, OutboundStream, ReceptionStats
from services.media.rtp_leg import RtpLeg
from services.media.transcode import TranscodingRelay, transcodes
from services.media.webrtc import NegotiationError, WebRtcMux, WebRtcSession, g711_offer
from services.media.webrtc.session import DEFAULT_CODECS, WebRtcState
from shared.bus import Rejected
from shared.events import LegKind, LegQuality
from shared.media import (
    CreateSession,
    Hold,
    LegMedia,
    LocalDescription,
    PrepareLeg,
    RemoteDescription,
    ReplaceLeg,
    SendDtmf,
    SessionKind,
)
from shared.sdp import Codec, Direction, NoCommonCodec, SdpError, SessionDescription

#: Towards a browser that hears only what the worker makes itself (the announcement's G.711 prompt).
G711_FOR_BROWSERS = ("PCMU/8000", "PCMA/8000", "telephone-event/8000")
#: Towards a browser bridged to another leg: G.711 first, so the bridge is a passthrough whenever the
#: browser offers it; Opus (transcoded) only when it offers nothing else.
FOR_BROWSERS = DEFAULT_CODECS
#: A gap between digits sent back to back (RFC 4733 section 2.5.1.2 wants events apart).
_INTER_DIGIT_S = 0.04

OnDigit = Callable[[LegKind, Digit], None]


@dataclass(eq=False)
class Leg:
    """One side of a bridge and what the bridge keeps about it."""

    kind: LegKind
    media: WebRtcSession | RtpLeg
    #: Our stream towards this leg (RTP legs keep their own: their RTCP reports on it).
    stream: OutboundStream
    stats: ReceptionStats
    relay: Relay | None = None
    target: Target | None = None
    timed_out: bool = False
    #: Monotonic time until which DTMF we inject keeps this leg's stream busy.
    dtmf_busy_until: float = 0.0
    handles: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def codecs(self) -> tuple[Codec | None, Codec | None]:
        """(audio, telephone-event) as negotiated; audio None until then."""
        media = self.media
        if isinstance(media, RtpLeg):
            return media.audio, media.event
        if not media.codecs:
            return None, None
        event = next((codec for codec in media.codecs if codec.name.lower() == "telephone-event"), None)
        return media.codecs[0], event

    @property
    def held(self) -> bool:
        media = self.media
        return (self.target is not None and self.target.held) or media.on_hold

    @property
    def last_rtp_at(self) -> float | None:
        return self.media.last_rtp_at


def sdp_error(error: SdpError) -> Rejected:
    """The typed error signaling turns into a 488 (no common codec) or a 400 (malformed)."""
    if isinstance(error, NoCommonCodec):
        return Rejected("no_common_codec", str(error))
    return Rejected("bad_sdp", str(error))


def parse_sdp(text: str) -> SessionDescription:
    try:
        return SessionDescription.parse(text)
    except SdpError as error:
        raise sdp_error(error) from None


class Bridge:
    """The legs of one session and the relays between them."""

    def __init__(
        self,
        session_id: str,
        request: CreateSession,
        *,
        mux: WebRtcMux,
        ports: PortRange,
        rtp_host: str,
        advertised_address: str,
        on_digit: OnDigit,
        clock: Callable[[], float] = time.monotonic,
        fork: RecordingFork | None = None,
        prompt: Prompt | None = None,
        on_played: Callable[[], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.request = request
        self.kind = request.kind
        self.legs: dict[LegKind, Leg] = {}
        self.created_at = clock()
        #: When every leg had negotiated a codec: the media timeout counts from then, not while a
        #: browser or a carrier is still ringing (that can take longer than the timeout).
        self.negotiated_at: float | None = None
        self.closed = False
        self._mux = mux
        self._ports = ports
        self._rtp_host = rtp_host
        self._advertised = advertised_address
        self._on_digit = on_digit
        self._clock = clock
        #: Both legs' audio towards the recorder when the call is recorded (``CreateSession.record``).
        self.fork = fork
        #: What an ``announcement`` session plays, and the player once the agent leg is open.
        self._prompt = prompt
        self._on_played = on_played
        self.announcement: Announcement | None = None
        #: Legs prepared to replace a leg (a transfer), with our offer to the new party.
        self.prepared: dict[tuple[LegKind, LegMedia], tuple[Leg, str]] = {}

    # -- creation

    async def open(self) -> tuple[str | None, str | None]:
        """Create the legs; returns (our SDP for the agent, our SDP for the customer).

        Raises :class:`Rejected` (``no_common_codec``, ``bad_sdp``, ``unsupported``); the caller
        closes the bridge then, releasing whatever was opened.
        """
        request = self.request
        kind = request.kind
        if kind is SessionKind.ECHO and request.agent_offer is not None and _plain_rtp(request.agent_offer):
            # The echo line for a desk phone: a plain RTP leg that hears itself.
            agent_sdp = await self._open_rtp(LegKind.AGENT, request.agent_offer, None)
            self._wire()
            return agent_sdp, None
        if kind is SessionKind.ECHO:
            if request.agent_offer is None:
                raise Rejected("unsupported", "the echo line answers the caller's offer; it makes none")
            agent_sdp = self._open_webrtc(LegKind.AGENT, request.agent_offer, DEFAULT_CODECS, None)
            self._wire()
            return agent_sdp, None
        if kind is SessionKind.ANNOUNCEMENT:
            if request.agent_offer is None:
                raise Rejected("unsupported", "the demo line answers the caller's offer; it makes none")
            if _plain_rtp(request.agent_offer):
                agent_sdp = await self._open_rtp(LegKind.AGENT, request.agent_offer, None)
            else:
                # G.711 only: the worker encodes the prompt itself and has no opus encoder on its path.
                agent_sdp = self._open_webrtc(LegKind.AGENT, request.agent_offer, G711_FOR_BROWSERS, None)
            self._wire()
            self._announce(self.legs[LegKind.AGENT])
            return agent_sdp, None
        if kind is SessionKind.WEBRTC_RTP:
            if request.agent_offer is not None:
                agent_sdp = self._open_webrtc(LegKind.AGENT, request.agent_offer, FOR_BROWSERS, None)
                audio, _ = self.legs[LegKind.AGENT].codecs
                customer_sdp = await self._open_rtp(LegKind.CUSTOMER, request.customer_offer, audio)
            else:
                # We ring the browser: the carrier's offer is answered first, so the browser is offered
                # the carrier's law first and the bridge is a passthrough.
                customer_sdp = await self._open_rtp(LegKind.CUSTOMER, request.customer_offer, None)
                audio, _ = self.legs[LegKind.CUSTOMER].codecs
                agent_sdp = self._open_webrtc(LegKind.AGENT, None, G711_FOR_BROWSERS, audio)
            self._wire()
            return agent_sdp, customer_sdp
        if kind is SessionKind.WEBRTC_WEBRTC:
            # The browser that offered (the caller) is answered first; the other is offered its codec.
            offers = {LegKind.AGENT: request.agent_offer, LegKind.CUSTOMER: request.customer_offer}
            first = (
                LegKind.CUSTOMER if request.agent_offer is None and request.customer_offer else LegKind.AGENT
            )
            second = LegKind.CUSTOMER if first is LegKind.AGENT else LegKind.AGENT
            sdp = {first: self._open_webrtc(first, offers[first], FOR_BROWSERS, None)}
            audio, _ = self.legs[first].codecs
            sdp[second] = self._open_webrtc(second, offers[second], FOR_BROWSERS, audio)
            self._wire()
            return sdp[LegKind.AGENT], sdp[LegKind.CUSTOMER]
        if kind is SessionKind.RTP_RTP:
            agent_sdp = await self._open_rtp(LegKind.AGENT, request.agent_offer, None)
            audio, _ = self.legs[LegKind.AGENT].codecs
            customer_sdp = await self._open_rtp(LegKind.CUSTOMER, request.customer_offer, audio)
            if audio is None:
                # We offered to the agent: the customer's codec, if known, goes first.
                customer_audio, _ = self.legs[LegKind.CUSTOMER].codecs
                if customer_audio is not None:
                    agent = self.legs[LegKind.AGENT].media
                    assert isinstance(agent, RtpLeg)
                    agent_sdp = agent.offer(prefer=customer_audio.name).serialize()
            self._wire()
            return agent_sdp, customer_sdp
        raise Rejected("unsupported", f"session kind {kind.value} is not built yet")

    def _open_webrtc(
        self, kind: LegKind, offer_text: str | None, codecs: tuple[str, ...], prefer: Codec | None
    ) -> str:
        """A WebRTC leg: our answer to ``offer_text``, or without one our offer (``prefer``'s G.711 law
        first), whose answer :meth:`update` takes."""
        offer = parse_sdp(offer_text) if offer_text is not None else None
        session = self._mux.create_session()
        self.legs[kind] = Leg(kind, session, OutboundStream(), ReceptionStats())
        try:
            if offer is None:
                return session.create_offer(
                    g711_offer(prefer.name if prefer is not None else None)
                ).serialize()
            return session.accept_offer(offer, codecs=codecs).serialize()
        except SdpError as error:
            raise sdp_error(error) from None

    async def _open_rtp(self, kind: LegKind, offer_text: str | None, prefer: Codec | None) -> str:
        offer = parse_sdp(offer_text) if offer_text is not None else None
        leg = await RtpLeg.open(self._ports, self._rtp_host, self._advertised)
        self.legs[kind] = Leg(kind, leg, leg.outbound, leg.reception)
        name = prefer.name if prefer is not None else None
        if offer is None:
            return leg.offer(prefer=name).serialize()
        try:
            return leg.answer(offer, prefer=name).serialize()
        except SdpError as error:
            raise sdp_error(error) from None

    # -- wiring the relays

    def _wire(self) -> None:
        """(Re)build each leg's relay for its negotiated codecs and point it at the other leg."""
        for leg in self.legs.values():
            audio, event = leg.codecs
            if audio is None:
                continue
            if isinstance(leg.media, WebRtcSession):
                # Our stream towards a browser runs at its codec's clock (48 kHz for Opus, RFC 7587).
                leg.stream.clock_rate = audio.clock_rate
            held = leg.target.held if leg.target is not None else False
            leg.target = Target(leg.media.send_rtp, leg.stream, audio, event)
            leg.target.held = held
        for leg in self.legs.values():
            audio, event = leg.codecs
            if audio is None:
                continue
            other = leg if self.kind is SessionKind.ECHO else self._other(leg)
            other_audio = other.codecs[0] if other is not None else None
            kind = TranscodingRelay if other_audio is not None and transcodes(audio, other_audio) else Relay
            relay = leg.relay
            if (
                relay is None
                or type(relay) is not kind
                or not (relay.audio == audio and relay.event == event)
            ):
                relay = leg.relay = kind(
                    audio, event, functools.partial(self._on_digit, leg.kind), stats=leg.stats
                )
                leg.media.on_rtp = relay.receive
            if other is not None and other.target is not None:
                try:
                    relay.connect(other.target)
                except ValueError as error:
                    raise Rejected("no_common_codec", str(error)) from None
            if self.fork is not None:
                # A transcoded Opus leg is recorded as the G.711 it was turned into.
                recorded = relay.recorded_codec if isinstance(relay, TranscodingRelay) else audio
                relay.tap = self.fork.tap(leg.kind, str(recorded))
        if self.negotiated_at is None and all(leg.codecs[0] is not None for leg in self.legs.values()):
            self.negotiated_at = self._clock()
        self._follow_codec()

    def _announce(self, leg: Leg) -> None:
        """Play the prompt towards ``leg`` in its negotiated G.711 law, from when it can take packets."""
        audio, _ = leg.codecs
        if audio is None:
            raise Rejected("no_common_codec", "the announcement needs PCMU or PCMA")
        media = leg.media
        if isinstance(media, WebRtcSession):
            session = media

            def ready() -> bool:
                return session.state is WebRtcState.CONNECTED
        else:
            rtp = media

            def ready() -> bool:
                return rtp.latched is not None or rtp.expected is not None

        def send(packet: bytes) -> bool:
            target = leg.target
            return (target is None or not target.held) and media.send_rtp(packet)

        prompt = self._prompt if self._prompt is not None else chime()
        played_before = self.announcement is not None and self.announcement.plays > 0
        self.announcement = Announcement(
            prompt.frames(audio.name),
            encoding=audio.name,
            payload_type=audio.payload_type,
            stream=leg.stream,
            send=send,
            ready=ready,
            on_played=None if played_before else self._on_played,
            clock=self._clock,
        )
        self.announcement.start()

    def _follow_codec(self) -> None:
        """A re-offer moved the agent to the other G.711 law: the prompt follows, from its start."""
        announcement = self.announcement
        leg = self.legs.get(LegKind.AGENT)
        audio = leg.codecs[0] if leg is not None else None
        if announcement is None or leg is None or audio is None:
            return
        if (audio.name.upper(), audio.payload_type) != (announcement.encoding, announcement.payload_type):
            announcement.stop()
            self._announce(leg)

    def _other(self, leg: Leg) -> Leg | None:
        for other in self.legs.values():
            if other is not leg:
                return other
        return None

    # -- the session verbs

    def update(self, description: RemoteDescription) -> LocalDescription:
        """The answer to our offer, or a re-offer answered (RFC 3264 section 8), on either leg kind.

        Anything refused (``bad_sdp``, ``no_common_codec``, ``already_answered`` for the second answer
        to a forked offer, ``glare``, ``unsupported``) leaves the leg and its media as they were.
        """
        leg = self._leg(description.leg)
        media = leg.media
        remote = parse_sdp(description.sdp)
        if isinstance(media, WebRtcSession):
            local_sdp = self._update_webrtc(leg, media, description.type, remote)
            self._wire()
            return LocalDescription(sdp=local_sdp)
        other = self._other(leg)
        prefer = other.codecs[0] if other is not None else None
        try:
            if description.type == "answer":
                media.accept_answer(remote)
                local = None
            else:
                local = media.answer(remote, prefer=prefer.name if prefer is not None else None).serialize()
        except SdpError as error:
            raise sdp_error(error) from None
        self._wire()
        return LocalDescription(sdp=local)

    def _update_webrtc(
        self, leg: Leg, session: WebRtcSession, kind: str, remote: SessionDescription
    ) -> str | None:
        try:
            if kind == "answer":
                session.accept_answer(remote)
                return None
            codecs = G711_FOR_BROWSERS if self.kind is SessionKind.ANNOUNCEMENT else FOR_BROWSERS
            # While signaling holds this browser we only receive (RFC 3264 section 6.1's narrowing).
            wish = Direction.RECVONLY if leg.target is not None and leg.target.held else Direction.SENDRECV
            return session.accept_offer(remote, codecs=codecs, wish=wish).serialize()
        except SdpError as error:
            raise sdp_error(error) from None
        except NegotiationError as error:
            raise Rejected(error.code, str(error)) from None

    # -- handing a leg over to a new party (a transfer)

    async def prepare(self, request: PrepareLeg) -> LocalDescription:
        """Our offer for a new party that will take ``request.leg`` (shared/media.py, ``PrepareLeg``).

        The offer puts the other leg's G.711 law first, so the bridge stays a passthrough.
        """
        if self.kind in (SessionKind.ECHO, SessionKind.ANNOUNCEMENT):
            raise Rejected("unsupported", f"a {self.kind.value} session has no leg to hand over")
        current = self._leg(request.leg)
        prepared = self.prepared.get((request.leg, request.media))
        if prepared is not None:
            return LocalDescription(sdp=prepared[1])
        other = self._other(current)
        prefer = other.codecs[0] if other is not None else None
        name = prefer.name if prefer is not None else None
        leg: Leg
        if request.media is LegMedia.WEBRTC:
            session = self._mux.create_session()
            leg = Leg(request.leg, session, OutboundStream(), ReceptionStats())
            sdp = session.create_offer(g711_offer(name)).serialize()
        else:
            rtp = await RtpLeg.open(self._ports, self._rtp_host, self._advertised)
            leg = Leg(request.leg, rtp, rtp.outbound, rtp.reception)
            sdp = rtp.offer(prefer=name).serialize()
        if self.closed:
            # Closed while the port was being opened: nothing may outlive the session.
            self._close_leg(leg)
            raise Rejected("no_session", f"session {self.session_id} closed")
        self.prepared[(request.leg, request.media)] = (leg, sdp)
        return LocalDescription(sdp=sdp)

    def replace(self, request: ReplaceLeg) -> None:
        """The new party answered: its leg takes the old one's place (shared/media.py, ``ReplaceLeg``)."""
        prepared = self.prepared.get((request.leg, request.media))
        if prepared is None:
            raise Rejected(
                "not_prepared", f"no {request.media.value} leg was prepared for the {request.leg.value} leg"
            )
        new, _ = prepared
        remote = parse_sdp(request.answer)
        media = new.media
        try:
            media.accept_answer(remote)
        except SdpError as error:
            raise sdp_error(error) from None
        except NegotiationError as error:
            raise Rejected(error.code, str(error)) from None
        del self.prepared[(request.leg, request.media)]
        old = self.legs[request.leg]
        self.legs[request.leg] = new
        self._close_leg(old)
        self.discard(request.leg)
        for leg in self.legs.values():
            # Whoever held whom before the hand-over, the new party and the other leg talk now.
            if leg.target is not None:
                leg.target.held = False
            if isinstance(leg.media, RtpLeg):
                leg.media.held = False
            leg.timed_out = False
        # The media timeout counts from the new party's answer, not from the call's start.
        self.negotiated_at = None
        self._wire()

    def discard(self, kind: LegKind) -> None:
        """Close every leg prepared for ``kind``."""
        for key in [key for key in self.prepared if key[0] is kind]:
            leg, _ = self.prepared.pop(key)
            self._close_leg(leg)

    def hold(self, request: Hold) -> None:
        leg = self._leg(request.leg)
        if isinstance(leg.media, RtpLeg):
            leg.media.held = request.held
        if leg.target is not None:
            leg.target.held = request.held
        elif request.held:
            raise Rejected("not_negotiated", f"the {request.leg.value} leg has no media to hold yet")

    def send_dtmf(self, request: SendDtmf) -> None:
        """Play a digit towards a leg (RFC 4733 section 2.5): start, updates every 50 ms, the end three
        times. Digits asked back to back are played one after another."""
        leg = self._leg(request.leg)
        target = leg.target
        if target is None or target.event is None:
            raise Rejected(
                "no_telephone_event", f"the {request.leg.value} leg negotiated no telephone-event (RFC 4733)"
            )
        loop = asyncio.get_running_loop()
        now = self._clock()
        start = max(0.0, leg.dtmf_busy_until - now)
        packets = event_packets(request.digit, request.duration_ms, target.event.clock_rate)
        leg.dtmf_busy_until = now + start + packets[-1].at + _INTER_DIGIT_S
        state: dict[str, int] = {}
        event_type = target.event.payload_type

        def begin() -> None:
            target.stream.paused = True
            state["timestamp"] = target.stream.now_timestamp()

        def send(marker: bool, payload: bytes) -> None:
            second = (MARKER if marker else 0) | event_type
            target.send(target.stream.own(second, state["timestamp"], payload))

        def finish() -> None:
            target.stream.paused = self._clock() < leg.dtmf_busy_until - _INTER_DIGIT_S

        leg.handles = [handle for handle in leg.handles if not handle.cancelled()]
        leg.handles.append(loop.call_later(start, begin))
        for packet in packets:
            leg.handles.append(loop.call_later(start + packet.at, send, packet.marker, packet.payload))
        leg.handles.append(loop.call_later(start + packets[-1].at + 0.001, finish))

    def set_recording_paused(self, paused: bool) -> None:
        """Pause (the paused span is silence in the file, marked for the recorder) or resume."""
        if self.fork is None:
            raise Rejected("not_recorded", f"session {self.session_id} is not recorded")
        self.fork.set_paused(paused, self._clock())

    def _leg(self, kind: LegKind) -> Leg:
        leg = self.legs.get(kind)
        if leg is None:
            raise Rejected("no_leg", f"a {self.kind.value} session has no {kind.value} leg")
        return leg

    # -- timeouts, quality, closing

    def timed_out_legs(self, now: float, limit: float) -> list[LegKind]:
        """Legs that sent no RTP for ``limit`` seconds and are not on hold, each reported once; none
        before every leg has negotiated (a call still ringing)."""
        out: list[LegKind] = []
        negotiated_at = self.negotiated_at
        if negotiated_at is None:
            return out
        for leg in self.legs.values():
            if leg.timed_out or leg.held:
                continue
            last = leg.last_rtp_at
            if now - (last if last is not None else negotiated_at) > limit:
                leg.timed_out = True
                out.append(leg.kind)
        return out

    def quality(self) -> list[LegQuality]:
        out: list[LegQuality] = []
        for leg in self.legs.values():
            audio, _ = leg.codecs
            stats = leg.stats
            rtt = leg.media.rtcp.rtt_ms if isinstance(leg.media, RtpLeg) else None
            expected = stats.expected
            loss = stats.lost / expected if expected else 0.0
            # Mouth-to-ear: half the round trip (when known), a 40 ms jitter buffer and 20 ms packets.
            delay = (rtt or 0.0) / 2 + 40.0 + 20.0
            out.append(
                LegQuality(
                    leg=leg.kind,
                    codec=str(audio) if audio is not None else "none",
                    packets_received=stats.received,
                    packets_lost=stats.lost,
                    jitter_ms=round(stats.jitter_ms, 2),
                    rtt_ms=round(rtt, 2) if rtt is not None else None,
                    mos=mos_estimate(loss, delay) if stats.received else None,
                )
            )
        return out

    def counters(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for leg in self.legs.values():
            media = leg.media
            figures = media.counters.as_dict() if isinstance(media, RtpLeg) else asdict(media.counters)
            if leg.relay is not None:
                figures.update(
                    {f"relay_{name}": value for name, value in leg.relay.counters.as_dict().items()}
                )
                figures["dtmf_received"] = leg.relay.dtmf.received
            out[leg.kind.value] = figures
        return out

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.announcement is not None:
            self.announcement.stop()
        if self.fork is not None:
            self.fork.end(self._clock())
        for leg in self.legs.values():
            self._close_leg(leg)
        for kind in list(self.legs):
            self.discard(kind)

    def _close_leg(self, leg: Leg) -> None:
        for handle in leg.handles:
            handle.cancel()
        leg.media.on_rtp = None
        if isinstance(leg.relay, TranscodingRelay):
            leg.relay.close()
        if isinstance(leg.media, RtpLeg):
            leg.media.close()
        else:
            self._mux.remove(leg.media)


__all__ = ["Bridge", "Leg", "parse_sdp", "sdp_error"]


def _plain_rtp(sdp: str) -> bool:
    """True for an RTP/AVP offer (a desk phone), False for WebRTC's UDP/TLS/RTP/SAVPF (RFC 5764 8)."""
    return "RTP/SAVP" not in sdp and "a=ice-ufrag" not in sdp
