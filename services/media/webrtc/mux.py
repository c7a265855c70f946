"""One UDP port for the WebRTC legs of all a worker's calls (ICE-lite, RFC 8445 section 2.5).

:class:`WebRtcMux` is the socket's ``asyncio.DatagramProtocol``. It classifies each datagram by its
first byte (RFC 7983 section 7) and routes it:

- STUN Binding requests by USERNAME (``<our ufrag>:<their ufrag>``, RFC 8445 section 7.2.2) to the
  session of that ufrag, which checks MESSAGE-INTEGRITY with its ice-pwd (RFC 8489 section 14.5) and
  answers (RFC 8445 section 7.3). Every authenticated request maps its source address to the session:
  Chromium sends its ClientHello before it nominates a pair.
- DTLS (RFC 5764) and SRTP/SRTCP (RFC 3711, RFC 5761) by source address, to the session that
  address authenticated for. Nothing else reaches a session.

What matches no session, and what is not STUN, DTLS or RTP, is counted in :class:`MuxCounters` and
dropped; nothing a peer sends makes the protocol raise. This is how mediasoup's WebRtcServer and
LiveKit's UDP mux serve many browsers on one port, and what PEERS.md shows Chromium accepting.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Final, Self, cast

from aioice import stun

from services.media.webrtc.certificate import DtlsCertificate
from services.media.webrtc.ice import Address, generate_credentials
from services.media.webrtc.session import MAX_ADDRESSES, WebRtcSession
from shared.logging import get_logger
from shared.sdp import IceCredentials

log = get_logger("echodesk.media.webrtc")

#: RFC 5389 section 6: the magic cookie tells STUN from the classic RFC 3489 and from noise.
_MAGIC_COOKIE: Final = b"\x21\x12\xa4\x42"
#: RFC 5389 section 6: a STUN header is 20 bytes and the body a multiple of 4.
_STUN_HEADER: Final = 20
#: The smallest SRTP packet: a 12-byte RTP header (RFC 3550 section 5.1); SRTCP is longer still.
_MIN_RTP: Final = 12
#: A receive buffer for bursts of many calls (the kernel caps it at net.core.rmem_max).
_RECEIVE_BUFFER: Final = 4 * 1024 * 1024
#: Unique ufrags are drawn this many times before giving up (48 random bits: never in practice).
_UFRAG_ATTEMPTS: Final = 8


@dataclass(slots=True)
class MuxCounters:
    """Datagrams the mux answered or dropped, by reason (metrics and tests read them)."""

    stun_answered: int = 0
    #: Authenticated checks answered with 487 (the peer also claimed the controlled role).
    stun_role_conflicts: int = 0
    #: Requests for a known ufrag that failed MESSAGE-INTEGRITY or named the wrong remote ufrag.
    stun_unauthenticated: int = 0
    #: Requests whose USERNAME names no session of ours.
    stun_unknown_user: int = 0
    #: Not parseable as STUN: bad cookie, length, attributes or FINGERPRINT.
    stun_malformed: int = 0
    #: Well-formed STUN that an ICE-lite agent does not answer: indications, responses, other methods.
    stun_ignored: int = 0
    dtls_unknown_source: int = 0
    srtp_unknown_source: int = 0
    #: Datagrams outside the STUN, DTLS and RTP ranges of RFC 7983, runts, empty datagrams.
    unknown: int = 0
    #: Exceptions caught around a session (a defect of ours, never a peer's fault).
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class WebRtcMux(asyncio.DatagramProtocol):
    """The worker's WebRTC port: creates sessions and routes every datagram to one of them."""

    def __init__(
        self,
        certificate: DtlsCertificate,
        advertised_address: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.certificate = certificate
        #: The address put in our candidates and c= lines (the public one behind NAT).
        self.advertised_address = advertised_address
        self.port = 0
        self.counters = MuxCounters()
        self.sessions: dict[str, WebRtcSession] = {}
        self._by_address: dict[Address, WebRtcSession] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._clock = clock
        self._closed = asyncio.Event()

    @classmethod
    async def listen(
        cls,
        host: str,
        port: int,
        *,
        advertised_address: str | None = None,
        certificate: DtlsCertificate | None = None,
    ) -> Self:
        """Bind ``host:port`` (port 0 picks one) and serve. A wildcard ``host`` needs an
        ``advertised_address``: a browser cannot reach 0.0.0.0. Raises OSError when the port is taken."""
        advertised = advertised_address or host
        if advertised in ("0.0.0.0", "::", ""):
            raise ValueError("bound to a wildcard address: give the address browsers reach us at")
        loop = asyncio.get_running_loop()
        _, mux = await loop.create_datagram_endpoint(
            lambda: cls(certificate or DtlsCertificate.generate(), advertised), local_addr=(host, port)
        )
        return mux

    # -- sessions

    def create_session(self) -> WebRtcSession:
        """A new session on this port with fresh ICE credentials, routed from now on."""
        if self.port == 0:
            raise RuntimeError("the mux is not listening yet: its port goes into every answer")
        session = WebRtcSession(
            self.certificate,
            address=self.advertised_address,
            port=self.port,
            credentials=self._unused_credentials(),
            clock=self._clock,
        )
        self.add(session)
        return session

    def _unused_credentials(self) -> IceCredentials:
        for _ in range(_UFRAG_ATTEMPTS):
            credentials = generate_credentials()
            if credentials.ufrag not in self.sessions:
                return credentials
        raise RuntimeError("no unused ICE ufrag could be drawn")

    def add(self, session: WebRtcSession) -> None:
        if session.ufrag in self.sessions:
            raise ValueError(f"ufrag {session.ufrag!r} is taken on this port")
        self.sessions[session.ufrag] = session
        session.attach(
            self._send,
            draw=self._unused_credentials,
            rekeyed=functools.partial(self._rekeyed, session),
            forget=functools.partial(self._forget, session),
        )

    def _rekeyed(self, session: WebRtcSession, old_ufrag: str) -> None:
        """``session`` took new credentials (an ICE restart): checks are routed by its new ufrag from now
        on; the old one is forgotten, its sources stay mapped so media flows until the new nomination."""
        if self.sessions.get(old_ufrag) is session:
            del self.sessions[old_ufrag]
        if session.ufrag in self.sessions and self.sessions[session.ufrag] is not session:
            raise RuntimeError(f"ufrag {session.ufrag!r} is taken on this port")
        self.sessions[session.ufrag] = session

    def _forget(self, session: WebRtcSession, address: Address) -> None:
        if self._by_address.get(address) is session:
            del self._by_address[address]

    def remove(self, session: WebRtcSession) -> None:
        """Close the session and forget its ufrag and addresses."""
        session.close()
        if self.sessions.get(session.ufrag) is session:
            del self.sessions[session.ufrag]
        for address in session.addresses:
            if self._by_address.get(address) is session:
                del self._by_address[address]
        session.addresses.clear()

    def session_at(self, address: Address) -> WebRtcSession | None:
        return self._by_address.get(address)

    # -- asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport, so no isinstance here.
        self._transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            except OSError:
                log.info("webrtc_receive_buffer_unchanged", port=self.port)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._closed.set()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a browser that went away: consent freshness ends the session.
        return None

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            if not data:
                self.counters.unknown += 1
                return
            first = data[0]
            if 127 < first < 192:  # RTP and RTCP (RFC 7983 section 7): the hot path comes first
                session = self._by_address.get(addr)
                if session is None:
                    self.counters.srtp_unknown_source += 1
                elif len(data) < _MIN_RTP:
                    self.counters.unknown += 1
                else:
                    session.receive_srtp(data)
            elif first < 4:
                self._receive_stun(data, addr)
            elif 19 < first < 64:
                session = self._by_address.get(addr)
                if session is None:
                    self.counters.dtls_unknown_source += 1
                else:
                    session.receive_dtls(data, addr)
            else:
                self.counters.unknown += 1
        except Exception:
            # A defect of ours must not stop the port serving every other call.
            self.counters.errors += 1
            errors = self.counters.errors
            if errors & (errors - 1) == 0:  # log the 1st, 2nd, 4th, 8th... so a loop cannot flood
                log.exception("webrtc_datagram_failed", source=str(addr[:2]), errors=errors)

    # -- STUN

    def _receive_stun(self, data: bytes, addr: Address) -> None:
        # RFC 5389 section 6: a 20-byte header with the magic cookie, and a body of 4-byte words.
        if len(data) < _STUN_HEADER or data[4:8] != _MAGIC_COOKIE or len(data) % 4:
            self.counters.stun_malformed += 1
            return
        try:
            message = stun.parse_message(data)
        except (ValueError, struct.error):
            self.counters.stun_malformed += 1
            return
        if message.message_method != stun.Method.BINDING or message.message_class != stun.Class.REQUEST:
            # Binding indications are keepalives (RFC 8445 section 11); responses answer requests
            # a lite agent never sends.
            self.counters.stun_ignored += 1
            return
        username = message.attributes.get("USERNAME")
        session = self.sessions.get(username.partition(":")[0]) if isinstance(username, str) else None
        if session is None:
            self.counters.stun_unknown_user += 1
            return
        result = session.ice.answer(message, addr, self._clock())
        if not result.authenticated:
            self.counters.stun_unauthenticated += 1
            return
        self._map(addr, session)
        if result.response is not None:
            self._send(result.response, addr)
            if result.role_conflict:
                self.counters.stun_role_conflicts += 1
            else:
                self.counters.stun_answered += 1
        session.binding_checked(addr, result.nominated)

    def _map(self, address: Address, session: WebRtcSession) -> None:
        """Route ``address`` to ``session`` (an authenticated check came from it)."""
        previous = self._by_address.get(address)
        if previous is session:
            return
        if previous is not None:
            # A NAT gave the address to another browser: the newest authenticated owner wins.
            previous.addresses.pop(address, None)
        if len(session.addresses) >= MAX_ADDRESSES:
            for stale in session.addresses:
                if stale != session.remote_address:
                    del session.addresses[stale]
                    if self._by_address.get(stale) is session:
                        del self._by_address[stale]
                    break
        session.addresses[address] = None
        self._by_address[address] = session

    # -- sending and closing

    def _send(self, data: bytes, addr: Address) -> None:
        transport = self._transport
        if transport is not None:
            transport.sendto(data, addr)

    def close(self) -> None:
        for session in list(self.sessions.values()):
            self.remove(session)
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()
