"""The shared WebRTC port without sockets: demultiplexing, ICE-lite checks, routing by address."""

from __future__ import annotations

import itertools
import struct

import pytest
from aioice import stun

from services.media.webrtc import (
    DtlsCertificate,
    PacketKind,
    RtpEcho,
    WebRtcMux,
    WebRtcState,
    classify,
    is_rtcp,
)
from shared.sdp import Setup
from tests.support.webrtc_peer import PacketPeer, connect, fake_mux

BROWSER = ("198.51.100.7", 50000)
OTHER = ("198.51.100.8", 50001)
STRANGER = ("203.0.113.9", 40000)


@pytest.fixture(scope="module")
def certificate() -> DtlsCertificate:
    return DtlsCertificate.generate()


@pytest.mark.parametrize(
    ("first", "kind"),
    [
        (0, PacketKind.STUN),
        (3, PacketKind.STUN),
        (4, PacketKind.UNKNOWN),
        (16, PacketKind.ZRTP),
        (19, PacketKind.ZRTP),
        (20, PacketKind.DTLS),
        (63, PacketKind.DTLS),
        (64, PacketKind.TURN_CHANNEL),
        (79, PacketKind.TURN_CHANNEL),
        (80, PacketKind.UNKNOWN),
        (127, PacketKind.UNKNOWN),
        (128, PacketKind.RTP),
        (191, PacketKind.RTP),
        (192, PacketKind.UNKNOWN),
        (255, PacketKind.UNKNOWN),
    ],
)
def test_first_byte_ranges_of_rfc_7983(first: int, kind: PacketKind) -> None:
    assert classify(bytes([first, 0, 0, 0])) is kind


def test_empty_datagram_is_unknown() -> None:
    assert classify(b"") is PacketKind.UNKNOWN


@pytest.mark.parametrize(
    ("second", "rtcp"),
    [(0, False), (0x80, False), (191, False), (192, True), (200, True), (223, True), (224, False)],
)
def test_rtcp_on_the_rtp_port_by_packet_type(second: int, rtcp: bool) -> None:
    assert is_rtcp(bytes([0x80, second])) is rtcp


async def test_binding_request_answered_with_mapped_address_integrity_and_fingerprint(
    certificate: DtlsCertificate,
) -> None:
    mux, transport = fake_mux(certificate)
    session = mux.create_session()
    peer = PacketPeer()
    peer.accept_answer(session.accept_offer(peer.offer()))
    request = peer.binding_request()
    mux.datagram_received(bytes(request), BROWSER)

    [(data, destination)] = transport.sent
    assert destination == BROWSER
    response = stun.parse_message(data)  # raises if FINGERPRINT is wrong
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == BROWSER
    assert "FINGERPRINT" in response.attributes
    assert response.check_message_integrity(session.ice.local.pwd.encode())
    assert mux.counters.stun_answered == 1
    assert mux.session_at(BROWSER) is session
    assert session.state is WebRtcState.CHECKING
    assert session.ice.last_check_at is not None


async def test_wrong_message_integrity_is_ignored(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    session = mux.create_session()
    peer = PacketPeer()
    peer.accept_answer(session.accept_offer(peer.offer()))
    mux.datagram_received(bytes(peer.binding_request(pwd="x" * 24)), BROWSER)
    unsigned = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    unsigned.attributes["USERNAME"] = f"{session.ufrag}:{peer.credentials.ufrag}"
    mux.datagram_received(bytes(unsigned), BROWSER)

    assert transport.sent == []
    assert mux.counters.stun_unauthenticated == 2
    assert mux.session_at(BROWSER) is None
    assert session.state is WebRtcState.NEW
    assert session.ice.last_check_at is None


async def test_unknown_ufrag_and_wrong_remote_ufrag_are_ignored(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    session = mux.create_session()
    peer = PacketPeer()
    peer.accept_answer(session.accept_offer(peer.offer()))
    mux.datagram_received(bytes(peer.binding_request(username=f"nobody:{peer.credentials.ufrag}")), BROWSER)
    # Our ufrag and password, but not the ufrag of the browser the session answered.
    mux.datagram_received(bytes(peer.binding_request(username=f"{session.ufrag}:intruder")), BROWSER)

    assert transport.sent == []
    assert mux.counters.stun_unknown_user == 1
    assert mux.counters.stun_unauthenticated == 1
    assert mux.session_at(BROWSER) is None


async def test_check_before_the_offer_was_answered_is_ignored(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    session = mux.create_session()
    peer = PacketPeer()
    peer.remote_ufrag, peer.remote_pwd = session.ufrag, session.ice.local.pwd
    mux.datagram_received(bytes(peer.binding_request()), BROWSER)
    assert transport.sent == []
    assert mux.counters.stun_unauthenticated == 1


async def test_peer_claiming_the_controlled_role_gets_487(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    session = mux.create_session()
    peer = PacketPeer()
    peer.accept_answer(session.accept_offer(peer.offer()))
    mux.datagram_received(bytes(peer.binding_request(controlled=True)), BROWSER)

    [(data, _)] = transport.sent
    error = stun.parse_message(data)
    assert error.message_class == stun.Class.ERROR
    assert error.error_code == 487
    assert error.check_message_integrity(session.ice.local.pwd.encode())
    assert mux.counters.stun_role_conflicts == 1


async def test_nomination_decides_where_media_goes(certificate: DtlsCertificate) -> None:
    mux, _ = fake_mux(certificate)
    session = mux.create_session()
    peer = PacketPeer()
    peer.accept_answer(session.accept_offer(peer.offer()))
    mux.datagram_received(bytes(peer.binding_request()), BROWSER)
    assert session.remote_address == BROWSER
    mux.datagram_received(bytes(peer.binding_request(nominate=True)), OTHER)
    assert session.remote_address == OTHER
    assert session.ice.nominated == OTHER
    # Consent checks on another pair do not move media once a pair is nominated.
    mux.datagram_received(bytes(peer.binding_request()), BROWSER)
    assert session.remote_address == OTHER
    assert mux.session_at(BROWSER) is session
    assert mux.session_at(OTHER) is session


async def test_before_nomination_media_follows_the_dtls_pair(certificate: DtlsCertificate) -> None:
    mux, _ = fake_mux(certificate)
    session = mux.create_session()
    peer = PacketPeer()
    peer.accept_answer(session.accept_offer(peer.offer()))
    mux.datagram_received(bytes(peer.binding_request()), BROWSER)
    for datagram in peer.start_dtls():
        mux.datagram_received(datagram, BROWSER)
    # Another candidate pair checked after the ClientHello does not take the media away from it.
    mux.datagram_received(bytes(peer.binding_request()), OTHER)
    assert session.remote_address == BROWSER
    mux.datagram_received(bytes(peer.binding_request(nominate=True)), OTHER)
    assert session.remote_address == OTHER


def test_a_mux_that_is_not_listening_creates_no_session(certificate: DtlsCertificate) -> None:
    with pytest.raises(RuntimeError, match="not listening"):
        WebRtcMux(certificate, "192.0.2.10").create_session()


async def test_indications_responses_and_other_methods_are_not_answered(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    mux.create_session()
    for method, cls in (
        (stun.Method.BINDING, stun.Class.INDICATION),
        (stun.Method.BINDING, stun.Class.RESPONSE),
        (stun.Method.ALLOCATE, stun.Class.REQUEST),
    ):
        mux.datagram_received(bytes(stun.Message(method, cls)), BROWSER)
    assert transport.sent == []
    assert mux.counters.stun_ignored == 3


async def test_malformed_stun_is_counted(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    good = bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes={"PRIORITY": 1}))
    no_cookie = good[:4] + b"\x00\x00\x00\x00" + good[8:]
    bad_length = good[:2] + struct.pack("!H", 400) + good[4:]
    without_username = good[:2] + struct.pack("!H", 8) + good[4:20] + struct.pack("!HH", 0x0024, 4) + bytes(4)
    bad_attribute = good[:2] + struct.pack("!H", 8) + good[4:20] + struct.pack("!HH", 0x0024, 2) + b"\x00" * 4
    for datagram in (good[:10], no_cookie, bad_length, bad_attribute, good + b"\x00"):
        mux.datagram_received(datagram, STRANGER)
    mux.datagram_received(without_username, STRANGER)
    assert transport.sent == []
    assert mux.counters.stun_malformed == 5
    assert mux.counters.stun_unknown_user == 1
    assert mux.counters.errors == 0


async def test_dtls_and_srtp_from_unmapped_sources_are_dropped(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    mux.create_session()
    mux.datagram_received(b"\x16\xfe\xfd" + bytes(20), STRANGER)
    mux.datagram_received(b"\x80\x00" + bytes(30), STRANGER)
    mux.datagram_received(b"\x40\x00\x00\x04abcd", STRANGER)  # a TURN channel: not ours
    mux.datagram_received(b"", STRANGER)
    assert transport.sent == []
    assert mux.counters.dtls_unknown_source == 1
    assert mux.counters.srtp_unknown_source == 1
    assert mux.counters.unknown == 2


@pytest.mark.parametrize("setup", [Setup.PASSIVE, Setup.ACTIVE])
async def test_handshake_then_echo_through_the_mux(certificate: DtlsCertificate, setup: Setup) -> None:
    mux, transport = fake_mux(certificate)
    peer = PacketPeer()
    session = connect(mux, transport, peer, BROWSER, setup=setup)
    echo = RtpEcho(session)
    assert peer.srtp is not None

    payloads = [bytes([n]) * 160 for n in range(5)]
    for payload in payloads:
        mux.datagram_received(peer.srtp_packet(payload), BROWSER)
    echoed = [peer.srtp.unprotect(data) for data in transport.take(BROWSER)]
    assert [packet[12:] for packet in echoed] == payloads
    assert {struct.unpack_from("!I", packet, 8)[0] for packet in echoed} == {echo.ssrc}
    sequences = [struct.unpack_from("!H", packet, 2)[0] for packet in echoed]
    assert [(b - a) & 0xFFFF for a, b in itertools.pairwise(sequences)] == [1, 1, 1, 1]
    assert session.counters.rtp_received == session.counters.rtp_sent == 5
    assert session.last_rtp_at is not None


async def test_tampered_srtp_is_rejected_and_the_stream_goes_on(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    peer = PacketPeer()
    session = connect(mux, transport, peer, BROWSER)
    RtpEcho(session)
    packet = bytearray(peer.srtp_packet(b"\x01" * 160))
    packet[20] ^= 0xFF
    mux.datagram_received(bytes(packet), BROWSER)
    mux.datagram_received(peer.srtp_packet(b"\x02" * 160), BROWSER)
    assert session.counters.srtp_rejected == 1
    assert session.counters.rtp_received == 1
    assert len(transport.take(BROWSER)) == 1


async def test_srtcp_is_told_from_srtp_and_reaches_on_rtcp(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    peer = PacketPeer()
    session = connect(mux, transport, peer, BROWSER)
    received: list[bytes] = []
    session.on_rtcp = received.append
    # An empty receiver report (RFC 3550 section 6.4.2): V=2, RC=0, PT=201, length 1.
    report = struct.pack("!BBHI", 0x80, 201, 1, peer.ssrc)
    assert peer.srtp is not None
    mux.datagram_received(peer.srtp.protect_rtcp(report), BROWSER)
    assert received == [report]
    assert session.counters.rtcp_received == 1
    assert session.send_rtcp(report)
    [sent] = transport.take(BROWSER)
    assert peer.srtp.unprotect_rtcp(sent) == report


async def test_two_sessions_are_kept_apart(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    first, second = PacketPeer(), PacketPeer()
    one = connect(mux, transport, first, BROWSER)
    two = connect(mux, transport, second, OTHER)
    RtpEcho(one)
    RtpEcho(two)
    mux.datagram_received(first.srtp_packet(b"\x11" * 160), BROWSER)
    mux.datagram_received(second.srtp_packet(b"\x22" * 160), OTHER)
    # The other session's packet from the wrong address fails authentication there.
    mux.datagram_received(second.srtp_packet(b"\x33" * 160), BROWSER)
    assert first.srtp is not None
    assert second.srtp is not None
    [to_first] = transport.take(BROWSER)
    [to_second] = transport.take(OTHER)
    assert first.srtp.unprotect(to_first)[12:] == b"\x11" * 160
    assert second.srtp.unprotect(to_second)[12:] == b"\x22" * 160
    assert one.counters.srtp_rejected == 1
    assert two.counters.srtp_rejected == 0


async def test_remove_forgets_ufrag_and_addresses(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    peer = PacketPeer()
    session = connect(mux, transport, peer, BROWSER)
    mux.remove(session)
    # close_notify went to the browser (RFC 5246 section 7.2.1).
    assert [data[0] for data in transport.take(BROWSER)] == [21]
    assert session.state is WebRtcState.CLOSED
    assert mux.session_at(BROWSER) is None
    mux.datagram_received(bytes(peer.binding_request()), BROWSER)
    assert mux.counters.stun_unknown_user == 1
    assert transport.sent == []


async def test_address_taken_over_by_another_session(certificate: DtlsCertificate) -> None:
    mux, _ = fake_mux(certificate)
    first, second = PacketPeer(), PacketPeer()
    one, two = mux.create_session(), mux.create_session()
    first.accept_answer(one.accept_offer(first.offer()))
    second.accept_answer(two.accept_offer(second.offer()))
    mux.datagram_received(bytes(first.binding_request()), BROWSER)
    mux.datagram_received(bytes(second.binding_request()), BROWSER)  # a NAT reused the mapping
    assert mux.session_at(BROWSER) is two
    assert BROWSER not in one.addresses


async def test_addresses_per_session_are_bounded(certificate: DtlsCertificate) -> None:
    mux, _ = fake_mux(certificate)
    peer = PacketPeer()
    session = mux.create_session()
    peer.accept_answer(session.accept_offer(peer.offer()))
    mux.datagram_received(bytes(peer.binding_request(nominate=True)), BROWSER)
    for port in range(40000, 40050):
        mux.datagram_received(bytes(peer.binding_request()), ("198.51.100.7", port))
    assert len(session.addresses) <= 8
    assert BROWSER in session.addresses  # the nominated pair stays
    assert mux.session_at(("198.51.100.7", 40000)) is None
    assert mux.session_at(("198.51.100.7", 40049)) is session


async def test_consent_expires_30_seconds_after_the_last_check(certificate: DtlsCertificate) -> None:
    now = [1000.0]
    mux, _ = fake_mux(certificate, clock=lambda: now[0])
    session = mux.create_session()
    peer = PacketPeer()
    peer.accept_answer(session.accept_offer(peer.offer()))
    assert not session.ice.consent_expired(now[0] + 100)
    mux.datagram_received(bytes(peer.binding_request()), BROWSER)
    assert session.ice.last_check_at == 1000.0
    assert not session.ice.consent_expired(1029.0)
    assert session.ice.consent_expired(1031.0)
