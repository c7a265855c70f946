"""A plain RTP leg (RTP/AVP, RFC 3551) towards a carrier or a desk phone, on a port of its own.

Offer/answer (RFC 3264): we offer PCMU, PCMA and telephone-event (RFC 4733) at 20 ms, or answer a
peer's offer with one G.711 codec and telephone-event. A re-offer may move the peer (a new c= or
port) or hold it (``sendonly``/``inactive``, or ``c=0.0.0.0``: RFC 3264 section 8.4).

Symmetric RTP (RFC 4961): behind NAT the address in the SDP is often not where packets come from, so
the leg latches onto the source of the first valid RTP packet (version 2, a payload type we
negotiated, the family of the address we expect) and sends there from then on; any other source is
a stranger, counted and ignored. A new remote address in a re-offer unlatches. RTCP (RFC 3550
section 6) lives on the next port, latched the same way, with a report every 5 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Final, cast

from services.media.ports import PortRange
from services.media.rtcp import RtcpReporter
from services.media.rtp import OutboundStream, ReceptionStats
from services.media.webrtc.ice import Address
from shared.sdp import (
    Codec,
    Connection,
    Direction,
    MediaDescription,
    NoCommonCodec,
    Origin,
    SdpError,
    SessionDescription,
    answer_media,
    answer_session,
    build_media,
    build_session,
    negotiate_codecs,
    random_session_id,
    revise,
)

#: What we offer to carriers and accept from them: G.711 both laws, then DTMF events.
PCMU: Final = Codec(0, "PCMU", 8000)
PCMA: Final = Codec(8, "PCMA", 8000)
TELEPHONE_EVENT: Final = Codec(101, "telephone-event", 8000, parameters="0-16")
G711: Final = ("PCMU/8000", "PCMA/8000")
PTIME_MS: Final = 20
#: RFC 3550 section 6.2 suggests 5 s as the minimum report interval.
RTCP_INTERVAL_S: Final = 5.0
_PLAIN_PROTOS: Final = frozenset({"RTP/AVP", "RTP/AVPF"})


@dataclass(slots=True)
class RtpLegCounters:
    rtp_received: int = 0
    rtp_sent: int = 0
    #: Valid RTP from a source other than the one we latched onto (RFC 4961 style).
    strangers: int = 0
    #: Not RTP version 2, or too short for its header.
    malformed: int = 0
    #: RTP with a payload type we did not negotiate.
    unexpected_payload: int = 0
    #: Packets we were given to send while on hold or with nowhere to send them.
    not_sent: int = 0
    rtcp_received: int = 0
    rtcp_strangers: int = 0
    rtcp_sent: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _RtcpPort(asyncio.DatagramProtocol):
    """The leg's RTCP socket (port + 1)."""

    def __init__(self) -> None:
        self.leg: RtpLeg | None = None

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.leg is not None:
            self.leg.receive_rtcp(data, addr)

    def error_received(self, exc: Exception) -> None:
        return None


class RtpLeg(asyncio.DatagramProtocol):
    """One plain RTP leg: its two sockets, its negotiation, latching and hold state."""

    def __init__(self, advertised_address: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        #: The address in our c= line (the worker's public one).
        self.address = advertised_address
        self.port = 0
        self.counters = RtpLegCounters()
        #: The negotiated audio codec and telephone-event (None until negotiated).
        self.audio: Codec | None = None
        self.event: Codec | None = None
        #: Where the SDP says the peer receives RTP and RTCP; None while unknown or held with 0.0.0.0.
        self.expected: Address | None = None
        self.expected_rtcp: Address | None = None
        #: The source we latched onto; media goes there once known.
        self.latched: Address | None = None
        self.latched_rtcp: Address | None = None
        #: The peer's direction from its last description (RFC 3264 section 5.1).
        self.remote_direction = Direction.SENDRECV
        #: We hold the peer (signaling asked): nothing is sent to it.
        self.held = False
        self.last_rtp_at: float | None = None
        self.on_rtp: Callable[[bytes], None] | None = None
        self.outbound = OutboundStream()
        self.reception = ReceptionStats()
        self.rtcp = RtcpReporter(self.outbound, self.reception)
        self.local: SessionDescription | None = None
        # Before the answer, what we offered (early media may overtake the answer's signaling).
        self._accepted = frozenset(codec.payload_type for codec in (PCMU, PCMA, TELEPHONE_EVENT))
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._clock = clock
        self._ports: PortRange | None = None

    @classmethod
    async def open(cls, ports: PortRange, host: str, advertised_address: str) -> RtpLeg:
        """A leg on the next free even port of ``ports`` with RTCP on the odd one after it."""
        port, transport, leg, rtcp_transport, rtcp = await ports.bind(
            host, lambda: cls(advertised_address), _RtcpPort
        )
        leg.port = port
        leg._transport = transport
        leg._rtcp_transport = rtcp_transport
        leg._ports = ports
        rtcp.leg = leg
        leg._arm_rtcp()
        return leg

    @property
    def family(self) -> str:
        return "IP6" if ":" in self.address else "IP4"

    @property
    def on_hold(self) -> bool:
        """Either side holds this leg: no media is expected from it (the media timeout skips it)."""
        return self.held or not self.remote_direction.sends

    # -- offer/answer (RFC 3264)

    def offer(self, prefer: str | None = None) -> SessionDescription:
        """Our offer: PCMU and PCMA (``prefer``'s law first), telephone-event, ptime 20, sendrecv."""
        codecs = [PCMA, PCMU] if prefer is not None and prefer.upper() == "PCMA" else [PCMU, PCMA]
        media = build_media(
            "audio",
            self.port,
            [*codecs, TELEPHONE_EVENT],
            connection=Connection("IN", self.family, self.address),
            direction=Direction.SENDRECV,
            ptime=PTIME_MS,
        )
        self.local = self._session([media])
        return self.local

    def accept_answer(self, answer: SessionDescription) -> None:
        """The peer's answer to our offer (possibly again: a 183 and then the 200's)."""
        media = self._section(answer)
        audio = next(
            (codec for codec in media.codecs if codec.same_format(PCMU) or codec.same_format(PCMA)), None
        )
        if audio is None:
            raise NoCommonCodec(media.codecs, G711)
        event = next((codec for codec in media.codecs if codec.name.lower() == "telephone-event"), None)
        self._use(answer, media, audio, event if event is not None and event.clock_rate == 8000 else None)

    def answer(self, offer: SessionDescription, prefer: str | None = None) -> SessionDescription:
        """Our answer to the peer's offer or re-offer: one G.711 codec and telephone-event."""
        media = self._section(offer)
        preferences = ("PCMA/8000", "PCMU/8000") if prefer and prefer.upper() == "PCMA" else G711
        chosen = negotiate_codecs(media, (*preferences, "telephone-event/8000"), limit=1)
        wish = Direction.of(send=not self.held, receive=True)
        answered = answer_media(
            offer,
            media,
            chosen,
            port=self.port,
            wish=wish,
            connection=Connection("IN", self.family, self.address),
            ptime=PTIME_MS,
        )
        event = next((codec for codec in chosen if codec.name.lower() == "telephone-event"), None)
        self._use(offer, media, chosen[0], event)
        local = self._session([answered if section is media else None for section in offer.media], offer)
        self.local = revise(self.local, local)
        return self.local

    def _session(
        self, media: list[MediaDescription | None], offer: SessionDescription | None = None
    ) -> SessionDescription:
        if self.local is not None:
            origin = self.local.origin
        else:
            origin = Origin("-", random_session_id(), 1, "IN", self.family, self.address)
        if offer is not None:
            return answer_session(offer, origin, media)
        return build_session(origin, [section for section in media if section is not None])

    @staticmethod
    def _section(description: SessionDescription) -> MediaDescription:
        for media in description.media:
            if media.kind == "audio" and media.proto in _PLAIN_PROTOS:
                if media.is_rejected:
                    raise SdpError("audio rejected", "the peer refused the audio stream (port 0)")
                return media
        raise SdpError("no audio to use", "want an m=audio section over RTP/AVP")

    def _use(
        self, description: SessionDescription, media: MediaDescription, audio: Codec, event: Codec | None
    ) -> None:
        self.audio = audio
        self.event = event
        accepted = {audio.payload_type}
        if event is not None:
            accepted.add(event.payload_type)
        self._accepted = frozenset(accepted)
        self.remote_direction = description.direction_of(media)
        connection = description.connection_of(media)
        expected: Address | None = None
        expected_rtcp: Address | None = None
        if connection is not None and not description.is_unreachable(media):
            expected = (connection.address, media.port)
            rtcp = media.rtcp
            rtcp_host = rtcp.connection.address if rtcp is not None and rtcp.connection is not None else None
            expected_rtcp = (
                rtcp_host or connection.address,
                rtcp.port if rtcp is not None else media.port + 1,
            )
        if expected is not None and expected != self.expected:
            # RFC 3264 section 8.3.1: the peer moved; latch anew on its new source.
            self.latched = None
            self.latched_rtcp = None
        self.expected = expected
        self.expected_rtcp = expected_rtcp

    # -- media

    def datagram_received(self, data: bytes, addr: Address) -> None:
        counters = self.counters
        if len(data) < 12 or data[0] >> 6 != 2:
            counters.malformed += 1
            return
        if data[1] & 0x7F not in self._accepted:
            counters.unexpected_payload += 1
            return
        latched = self.latched
        if latched is None:
            if (":" in addr[0]) != (self.family == "IP6"):
                counters.strangers += 1
                return
            self.latched = latched = addr
        elif addr != latched:
            counters.strangers += 1
            return
        counters.rtp_received += 1
        self.last_rtp_at = self._clock()
        on_rtp = self.on_rtp
        if on_rtp is not None:
            on_rtp(data)

    def send_rtp(self, packet: bytes) -> bool:
        destination = self.latched or self.expected
        transport = self._transport
        if self.held or destination is None or transport is None or not self.remote_direction.receives:
            self.counters.not_sent += 1
            return False
        transport.sendto(packet, destination)
        self.counters.rtp_sent += 1
        return True

    def receive_rtcp(self, data: bytes, addr: Address) -> None:
        latched = self.latched_rtcp
        if latched is None:
            # Latch RTCP once RTP is latched, on the RTP source's host (RFC 4961 section 4).
            if self.latched is None or addr[0] != self.latched[0]:
                self.counters.rtcp_strangers += 1
                return
            self.latched_rtcp = addr
        elif addr != latched:
            self.counters.rtcp_strangers += 1
            return
        self.counters.rtcp_received += 1
        self.rtcp.receive(data)

    def _arm_rtcp(self) -> None:
        self._rtcp_timer = asyncio.get_running_loop().call_later(RTCP_INTERVAL_S, self._send_report)

    def _send_report(self) -> None:
        self._rtcp_timer = None
        destination = self.latched_rtcp or self.expected_rtcp
        transport = self._rtcp_transport
        if transport is None:
            return
        if destination is not None and not self.held:
            transport.sendto(self.rtcp.report(), destination)
            self.counters.rtcp_sent += 1
        self._arm_rtcp()

    # -- asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: the peer is not listening yet or has gone; the media timeout decides.
        return None

    def close(self) -> None:
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
            self._rtcp_timer = None
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.close()
        self._transport = self._rtcp_transport = None
        if self._ports is not None:
            self._ports.release(self.port)
            self._ports = None


__all__ = ["PCMA", "PCMU", "TELEPHONE_EVENT", "RtpLeg", "RtpLegCounters"]
