"""Bridges that ring a browser (our offer, its answer through ``update``), agent-to-agent bridges
between two browsers, and re-offers on running legs, with :class:`PacketPeer` browsers on a mux
without sockets and, where a carrier is needed, a plain RTP peer on loopback."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from services.media.bridge import Bridge
from services.media.ports import PortRange
from services.media.webrtc import Address, DtlsCertificate, DtlsRole, WebRtcMux, WebRtcSession, WebRtcState
from shared.bus import Rejected
from shared.events import LegKind
from shared.media import CreateSession, RemoteDescription, SessionKind
from shared.sdp import Direction, SessionDescription, Setup
from tests.support.rtp_peer import RtpPeer
from tests.support.webrtc_peer import FakeTransport, PacketPeer, fake_mux

HOST = "127.0.0.1"
CALLER: Address = ("192.0.2.77", 50000)
CALLEE: Address = ("192.0.2.88", 50010)
_ports = itertools.count(23000, 100)


@pytest.fixture(scope="module")
def certificate() -> DtlsCertificate:
    return DtlsCertificate.generate()


@pytest.fixture
async def mux(certificate: DtlsCertificate) -> tuple[WebRtcMux, FakeTransport]:
    # async: the mux is made on the running loop (sessions arm DTLS timers on it).
    return fake_mux(certificate)


def make_bridge(mux: WebRtcMux, request: CreateSession) -> Bridge:
    low = next(_ports)
    return Bridge(
        "s1",
        request,
        mux=mux,
        ports=PortRange(low, low + 99),
        rtp_host=HOST,
        advertised_address=HOST,
        on_digit=lambda leg, digit: None,
    )


def join(
    mux: WebRtcMux, transport: FakeTransport, peer: PacketPeer, session: WebRtcSession, source: Address
) -> None:
    """A nominating check from ``peer`` and the DTLS handshake, whichever side is the client."""
    mux.datagram_received(bytes(peer.binding_request(nominate=True)), source)
    replies = transport.take(source)
    assert replies
    assert replies[0][:2] == b"\x01\x01"
    assert peer.dtls is not None
    outgoing = peer.start_dtls() if peer.dtls.role is DtlsRole.CLIENT else []
    incoming = replies[1:]
    for _ in range(10):
        for datagram in outgoing:
            mux.datagram_received(datagram, source)
        incoming += transport.take(source)
        outgoing = [out for datagram in incoming for out in peer.receive_dtls(datagram)]
        incoming = []
        if peer.srtp is not None and session.state is WebRtcState.CONNECTED and not outgoing:
            break
    assert session.state is WebRtcState.CONNECTED, session.reason
    assert peer.srtp is not None


def heard_by(peer: PacketPeer, transport: FakeTransport, source: Address) -> list[bytes]:
    """What the bridge sent ``peer`` since the last look, decrypted (RTP only)."""
    assert peer.srtp is not None
    return [peer.srtp.unprotect(packet) for packet in transport.take(source) if 127 < packet[0] < 192]


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for loopback packets; the bound only turns a hang into a failure."""
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_inbound_call_rings_a_browser_and_carries_audio_hold_and_garbage(
    mux: tuple[WebRtcMux, FakeTransport],
) -> None:
    mux_, transport = mux
    carrier = await RtpPeer.open(HOST)
    request = CreateSession(
        tenant_id="t1",
        call_id="c1",
        kind=SessionKind.WEBRTC_RTP,
        customer_offer=carrier.description(codecs="8"),
    )
    bridge = make_bridge(mux_, request)
    try:
        agent_sdp, customer_sdp = await bridge.open()
        assert agent_sdp is not None
        assert customer_sdp is not None
        # The carrier offers only A-law: it gets A-law, and the browser is offered A-law first.
        assert "RTP/AVP 8 101" in customer_sdp
        offer = SessionDescription.parse(agent_sdp)
        assert offer.ice_lite
        assert offer.media[0].setup is Setup.ACTPASS
        assert [str(codec) for codec in offer.media[0].codecs][:2] == ["PCMA/8000", "PCMU/8000"]
        carrier.learn(customer_sdp)
        session = bridge.legs[LegKind.AGENT].media
        assert isinstance(session, WebRtcSession)
        # Ringing the browser takes as long as it takes: no media timeout before its answer.
        assert bridge.negotiated_at is None
        assert bridge.timed_out_legs(bridge.created_at + 3600, 1.0) == []
        # The carrier's audio before the browser answered goes nowhere.
        carrier.send(8, b"\xd5" * 160)
        customer = bridge.legs[LegKind.CUSTOMER]
        await until(
            lambda: customer.relay is not None and customer.relay.counters.not_relayed == 1, "dropped"
        )
        browser = PacketPeer()
        answer = browser.answer(offer)
        reply = bridge.update(RemoteDescription(leg=LegKind.AGENT, sdp=answer, type="answer"))
        assert reply.sdp is None
        join(mux_, transport, browser, session, CALLER)

        # A second browser's answer to the same (forked) offer is refused; the first stays.
        with pytest.raises(Rejected) as refused:
            bridge.update(RemoteDescription(leg=LegKind.AGENT, sdp=PacketPeer().answer(offer), type="answer"))
        assert refused.value.code == "already_answered"

        async def both_ways(payload: int) -> None:
            carrier.send(8, bytes([payload]) * 160)
            await until(lambda: session.counters.rtp_sent > sent, "carrier -> browser")
            [packet] = heard_by(browser, transport, CALLER)
            assert packet[1] & 0x7F == 8  # A-law end to end: a passthrough
            assert packet[12:] == bytes([payload]) * 160
            received = len(carrier.received)
            mux_.datagram_received(browser.srtp_packet(bytes([payload]) * 160, payload_type=8), CALLER)
            await until(lambda: len(carrier.received) > received, "browser -> carrier")
            assert carrier.received[-1].payload == bytes([payload]) * 160

        sent = session.counters.rtp_sent
        await both_ways(0x55)

        # A re-INVITE with garbage SDP is refused (signaling answers 488) and the call keeps its audio.
        for leg in (LegKind.AGENT, LegKind.CUSTOMER):
            with pytest.raises(Rejected) as refused:
                bridge.update(RemoteDescription(leg=leg, sdp="v=0\r\nthis is no SDP\r\n", type="offer"))
            assert refused.value.code == "bad_sdp"
        sent = session.counters.rtp_sent
        await both_ways(0x5A)

        # SIP.js holds with sendonly: answered recvonly, nothing more goes to the browser, its audio still
        # reaches the carrier, and the media timeout leaves the held leg alone.
        held = bridge.update(
            RemoteDescription(
                leg=LegKind.AGENT, sdp=browser.offer("sendonly", version=3).serialize(), type="offer"
            )
        )
        assert held.sdp is not None
        assert "a=recvonly" in held.sdp
        assert bridge.legs[LegKind.AGENT].held
        not_sent = session.counters.not_sent
        carrier.send(8, b"\xd5" * 160)
        await until(lambda: session.counters.not_sent > not_sent, "held")
        assert heard_by(browser, transport, CALLER) == []
        assert bridge.negotiated_at is not None
        assert bridge.timed_out_legs(bridge.negotiated_at + 3600, 1.0) == [LegKind.CUSTOMER]
        resumed = bridge.update(
            RemoteDescription(leg=LegKind.AGENT, sdp=browser.offer(version=4).serialize(), type="offer")
        )
        assert resumed.sdp is not None
        assert "a=sendrecv" in resumed.sdp
        sent = session.counters.rtp_sent
        await both_ways(0x66)
        assert session.counters.srtp_rejected == 0
    finally:
        bridge.close()
        carrier.close()


async def test_agent_to_agent_between_two_browsers(mux: tuple[WebRtcMux, FakeTransport]) -> None:
    mux_, transport = mux
    caller, callee = PacketPeer(), PacketPeer()
    request = CreateSession(
        tenant_id="t1", call_id="c2", kind=SessionKind.WEBRTC_WEBRTC, agent_offer=caller.offer().serialize()
    )
    bridge = make_bridge(mux_, request)
    try:
        agent_sdp, customer_sdp = await bridge.open()
        assert agent_sdp is not None
        assert customer_sdp is not None
        answer, offer = SessionDescription.parse(agent_sdp), SessionDescription.parse(customer_sdp)
        assert answer.media[0].setup is Setup.PASSIVE
        assert offer.media[0].setup is Setup.ACTPASS
        # The caller's choice (PCMU from its "111 0 8 101") is offered to the callee first.
        assert [str(codec) for codec in answer.media[0].codecs] == ["PCMU/8000", "telephone-event/8000"]
        assert str(offer.media[0].codecs[0]) == "PCMU/8000"
        caller.accept_answer(answer)
        first, second = bridge.legs[LegKind.AGENT].media, bridge.legs[LegKind.CUSTOMER].media
        assert isinstance(first, WebRtcSession)
        assert isinstance(second, WebRtcSession)
        join(mux_, transport, caller, first, CALLER)
        reply = bridge.update(
            RemoteDescription(leg=LegKind.CUSTOMER, sdp=callee.answer(offer, setup="passive"), type="answer")
        )
        assert reply.sdp is None
        join(mux_, transport, callee, second, CALLEE)
        # The relay is synchronous: a packet in is a packet out before datagram_received returns.
        mux_.datagram_received(caller.srtp_packet(b"\x11" * 160), CALLER)
        [to_callee] = heard_by(callee, transport, CALLEE)
        assert to_callee[12:] == b"\x11" * 160
        mux_.datagram_received(callee.srtp_packet(b"\x22" * 160), CALLEE)
        [to_caller] = heard_by(caller, transport, CALLER)
        assert to_caller[12:] == b"\x22" * 160
        # The callee holds (inactive): answered inactive; the caller's audio stops there.
        held = bridge.update(
            RemoteDescription(
                leg=LegKind.CUSTOMER, sdp=callee.offer("inactive", version=3).serialize(), type="offer"
            )
        )
        assert held.sdp is not None
        assert (
            SessionDescription.parse(held.sdp).direction_of(SessionDescription.parse(held.sdp).media[0])
            is Direction.INACTIVE
        )
        mux_.datagram_received(caller.srtp_packet(b"\x11" * 160), CALLER)
        assert heard_by(callee, transport, CALLEE) == []
    finally:
        bridge.close()


async def test_callee_side_offer_first_in_agent_to_agent(mux: tuple[WebRtcMux, FakeTransport]) -> None:
    """Signaling may hold the offer on the customer side (the callee's browser sent it): it is answered,
    and the agent side gets our offer."""
    mux_, _ = mux
    peer = PacketPeer(codecs="8 101")
    request = CreateSession(
        tenant_id="t1", call_id="c3", kind=SessionKind.WEBRTC_WEBRTC, customer_offer=peer.offer().serialize()
    )
    bridge = make_bridge(mux_, request)
    try:
        agent_sdp, customer_sdp = await bridge.open()
        assert agent_sdp is not None
        assert customer_sdp is not None
        assert SessionDescription.parse(customer_sdp).media[0].setup is Setup.PASSIVE
        offer = SessionDescription.parse(agent_sdp)
        assert offer.media[0].setup is Setup.ACTPASS
        assert str(offer.media[0].codecs[0]) == "PCMA/8000"
    finally:
        bridge.close()


async def test_an_answer_on_a_leg_we_answered_is_refused(mux: tuple[WebRtcMux, FakeTransport]) -> None:
    mux_, _ = mux
    peer = PacketPeer()
    request = CreateSession(
        tenant_id="t1", call_id="c4", kind=SessionKind.ECHO, agent_offer=peer.offer().serialize()
    )
    bridge = make_bridge(mux_, request)
    try:
        await bridge.open()
        with pytest.raises(Rejected) as refused:
            bridge.update(RemoteDescription(leg=LegKind.AGENT, sdp=peer.offer().serialize(), type="answer"))
        assert refused.value.code == "no_offer"
    finally:
        bridge.close()
