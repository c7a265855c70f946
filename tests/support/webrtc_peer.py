"""A WebRTC peer reduced to its packets, to drive our ICE-lite port in tests without a browser.

:class:`PacketPeer` writes an offer the way browsers do (ICE credentials, fingerprint, ``actpass``,
rtcp-mux, BUNDLE), or answers ours as Chromium does (``active``, our payload types kept), builds the
connectivity checks a full controlling agent sends (RFC 8445 section 7.2.2), runs the DTLS side the
negotiation leaves it (our own :class:`DtlsTransport`, checked against raw
pyOpenSSL in test_dtls.py) and protects RTP with the keys. It does no I/O: tests move its bytes
through a fake transport or a loopback socket.
"""

from __future__ import annotations

import secrets
import struct
import time
from collections.abc import Callable

from aioice import stun

from services.media.webrtc import (
    Address,
    DtlsCertificate,
    DtlsRole,
    DtlsTransport,
    SrtpContext,
    WebRtcMux,
    WebRtcSession,
    generate_credentials,
)
from shared.sdp import SessionDescription, Setup

_RTP = struct.Struct("!BBHII")


class PacketPeer:
    def __init__(self, *, codecs: str = "111 0 8 101", certificate: DtlsCertificate | None = None) -> None:
        self.certificate = certificate or DtlsCertificate.generate()
        self.credentials = generate_credentials()
        self.codecs = codecs
        self.remote_ufrag = ""
        self.remote_pwd = ""
        self.dtls: DtlsTransport | None = None
        self.srtp: SrtpContext | None = None
        self.ssrc = secrets.randbits(32)
        self.sequence = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self.tie_breaker = secrets.randbits(64)

    def offer(
        self, direction: str = "sendrecv", *, version: int = 2, setup: str = "actpass"
    ) -> SessionDescription:
        """An offer, or with a later ``version`` a re-offer (SIP.js holds with sendonly or inactive)."""
        lines = [
            "v=0",
            f"o=- 4611731400430051336 {version} IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0",
            "a=msid-semantic: WMS",
            f"m=audio 9 UDP/TLS/RTP/SAVPF {self.codecs}",
            "c=IN IP4 0.0.0.0",
            "a=rtcp:9 IN IP4 0.0.0.0",
            f"a=ice-ufrag:{self.credentials.ufrag}",
            f"a=ice-pwd:{self.credentials.pwd}",
            "a=ice-options:trickle",
            f"a=fingerprint:{self.certificate.fingerprint}",
            f"a=setup:{setup}",
            "a=mid:0",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            f"a={direction}",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000",
        ]
        return SessionDescription.parse("\r\n".join(lines) + "\r\n")

    def answer(self, offer: SessionDescription, *, setup: str = "active", formats: str | None = None) -> str:
        """Our answer to the gateway's offer as Chromium writes it: its payload types kept in its order
        (or ``formats``), ``setup`` (Chromium says active), our credentials and fingerprint."""
        media = offer.media[0]
        credentials = offer.ice_credentials_of(media)
        assert credentials is not None
        self.remote_ufrag, self.remote_pwd = credentials.ufrag, credentials.pwd
        role = DtlsRole.SERVER if setup == "passive" else DtlsRole.CLIENT
        self.dtls = DtlsTransport(self.certificate, role, offer.fingerprints_of(media))
        chosen = formats.split() if formats is not None else list(media.formats)
        codecs = {str(codec.payload_type): codec for codec in media.codecs}
        lines = [
            "v=0",
            "o=- 1921781712397045392 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0",
            f"m=audio 9 UDP/TLS/RTP/SAVPF {' '.join(chosen)}",
            "c=IN IP4 0.0.0.0",
            "a=rtcp:9 IN IP4 0.0.0.0",
            f"a=ice-ufrag:{self.credentials.ufrag}",
            f"a=ice-pwd:{self.credentials.pwd}",
            f"a=fingerprint:{self.certificate.fingerprint}",
            f"a=setup:{setup}",
            "a=mid:0",
            "a=sendrecv",
            "a=rtcp-mux",
        ]
        lines += [f"a=rtpmap:{codecs[pt].rtpmap()}" for pt in chosen if pt in codecs]
        return "\r\n".join(lines) + "\r\n"

    def restart_ice(self) -> None:
        """New credentials of ours: the next offer asks for an ICE restart (RFC 8445 section 9)."""
        self.credentials = generate_credentials()

    def accept_answer(self, answer: SessionDescription) -> None:
        media = answer.media[0]
        credentials = answer.ice_credentials_of(media)
        assert credentials is not None
        self.remote_ufrag, self.remote_pwd = credentials.ufrag, credentials.pwd
        role = DtlsRole.CLIENT if answer.setup_of(media) is Setup.PASSIVE else DtlsRole.SERVER
        self.dtls = DtlsTransport(self.certificate, role, answer.fingerprints_of(media))

    def binding_request(
        self,
        *,
        nominate: bool = False,
        controlled: bool = False,
        username: str | None = None,
        pwd: str | None = None,
    ) -> stun.Message:
        """A connectivity check as a full agent sends it (RFC 8445 section 7.2.2)."""
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = username or f"{self.remote_ufrag}:{self.credentials.ufrag}"
        request.attributes["PRIORITY"] = 1853824767
        request.attributes["ICE-CONTROLLED" if controlled else "ICE-CONTROLLING"] = self.tie_breaker
        if nominate:
            request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity((pwd or self.remote_pwd).encode())
        return request

    def start_dtls(self) -> list[bytes]:
        assert self.dtls is not None
        return self.dtls.start()

    def receive_dtls(self, datagram: bytes) -> list[bytes]:
        assert self.dtls is not None
        out = self.dtls.receive(datagram)
        if self.dtls.keys is not None and self.srtp is None:
            self.srtp = SrtpContext(self.dtls.keys)
        return out

    def rtp(self, payload: bytes, *, payload_type: int = 0, marker: bool = False) -> bytes:
        """The next RTP packet of our stream, unprotected."""
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF
        second = payload_type | (0x80 if marker else 0)
        return _RTP.pack(0x80, second, self.sequence, self.timestamp, self.ssrc) + payload

    def srtp_packet(self, payload: bytes, *, payload_type: int = 0, marker: bool = False) -> bytes:
        assert self.srtp is not None
        return self.srtp.protect(self.rtp(payload, payload_type=payload_type, marker=marker))


class FakeTransport:
    """What the mux sends, kept instead of sent (``asyncio.DatagramTransport``'s used surface)."""

    def __init__(self, sockname: tuple[str, int] = ("192.0.2.10", 7882)) -> None:
        self.sockname = sockname
        self.sent: list[tuple[bytes, Address]] = []
        self.closed = False

    def sendto(self, data: bytes, addr: Address) -> None:
        self.sent.append((data, addr))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.sockname if name == "sockname" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def take(self, destination: Address) -> list[bytes]:
        """Datagrams sent to ``destination`` since the last take, oldest first."""
        mine = [data for data, addr in self.sent if addr == destination]
        self.sent = [(data, addr) for data, addr in self.sent if addr != destination]
        return mine


def fake_mux(
    certificate: DtlsCertificate,
    address: str = "192.0.2.10",
    *,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[WebRtcMux, FakeTransport]:
    mux = WebRtcMux(certificate, address, clock=clock)
    transport = FakeTransport((address, 7882))
    mux.connection_made(transport)  # type: ignore[arg-type]
    return mux, transport


def connect(
    mux: WebRtcMux,
    transport: FakeTransport,
    peer: PacketPeer,
    source: Address,
    *,
    setup: Setup = Setup.PASSIVE,
) -> WebRtcSession:
    """Offer, answer, a nominating check and the DTLS handshake, all through ``mux``; needs a loop
    running (the session arms DTLS timers)."""
    session = mux.create_session()
    peer.accept_answer(session.accept_offer(peer.offer(), setup=setup))
    mux.datagram_received(bytes(peer.binding_request(nominate=True)), source)
    replies = transport.take(source)
    assert replies, "the check was not answered"
    assert replies[0][0] < 4, "the first reply is not STUN"
    outgoing = peer.start_dtls() if peer.dtls is not None and peer.dtls.role is DtlsRole.CLIENT else []
    incoming = replies[1:]
    for _ in range(10):
        for datagram in outgoing:
            mux.datagram_received(datagram, source)
        incoming += transport.take(source)
        outgoing = [out for datagram in incoming for out in peer.receive_dtls(datagram)]
        incoming = []
        if peer.srtp is not None and session.state.value == "connected" and not outgoing:
            break
    assert peer.srtp is not None, f"peer DTLS: {peer.dtls.state if peer.dtls else None}"
    assert session.state.value == "connected", f"session: {session.state} {session.reason}"
    return session
