"""Our offer to a browser, its answer, forked answers, and browsers' re-offers (hold, resume, ICE
restart) on a WebRTC session, driven through the mux with :class:`PacketPeer` (no sockets)."""

from __future__ import annotations

import pytest

from services.media.webrtc import (
    Address,
    DtlsCertificate,
    DtlsRole,
    NegotiationError,
    WebRtcMux,
    WebRtcSession,
    WebRtcState,
    g711_offer,
)
from services.media.webrtc.negotiation import reoffer_role
from shared.sdp import Direction, NoCommonCodec, SdpError, SessionDescription, Setup
from tests.support.webrtc_peer import FakeTransport, PacketPeer, connect, fake_mux

BROWSER: Address = ("192.0.2.77", 50000)
OTHER_BROWSER: Address = ("192.0.2.78", 50002)


@pytest.fixture(scope="module")
def certificate() -> DtlsCertificate:
    return DtlsCertificate.generate()


def handshake(
    mux: WebRtcMux,
    transport: FakeTransport,
    peer: PacketPeer,
    session: WebRtcSession,
    source: Address,
    outgoing: list[bytes] | None = None,
) -> None:
    """Move DTLS between ``peer`` and the mux until both sides have keys."""
    outgoing = outgoing or []
    for _ in range(10):
        for datagram in outgoing:
            mux.datagram_received(datagram, source)
        outgoing = [out for datagram in transport.take(source) for out in peer.receive_dtls(datagram)]
        if peer.srtp is not None and session.state is WebRtcState.CONNECTED and not outgoing:
            break
    assert peer.srtp is not None, f"peer DTLS: {peer.dtls.state if peer.dtls else None}"
    assert session.state is WebRtcState.CONNECTED, f"session: {session.state} {session.reason}"


def check(mux: WebRtcMux, transport: FakeTransport, peer: PacketPeer, source: Address) -> bool:
    """One nominating check from ``peer``; True when it was answered with a Binding success."""
    mux.datagram_received(bytes(peer.binding_request(nominate=True)), source)
    replies = transport.take(source)
    return bool(replies) and replies[0][:2] == b"\x01\x01"


def assert_media_both_ways(session: WebRtcSession, peer: PacketPeer, transport: FakeTransport) -> None:
    heard: list[bytes] = []
    session.on_rtp = heard.append
    session.receive_srtp(peer.srtp_packet(b"\xff" * 160))
    assert len(heard) == 1
    assert heard[0].endswith(b"\xff" * 160)
    assert session.send_rtp(peer.rtp(b"\x7f" * 160))
    assert session.remote_address is not None
    [protected] = transport.take(session.remote_address)
    assert peer.srtp is not None
    assert peer.srtp.unprotect(protected).endswith(b"\x7f" * 160)


# -- the offer


def test_offer_is_ice_lite_actpass_g711_with_one_host_candidate(certificate: DtlsCertificate) -> None:
    session = WebRtcSession(certificate, address="198.51.100.1", port=7882)
    offer = session.create_offer()
    # What we send must parse back to the same description.
    assert SessionDescription.parse(offer.serialize()) == offer
    assert offer.ice_lite
    assert [group.mids for group in offer.bundle_groups] == [("0",)]
    [media] = offer.media
    assert (media.kind, media.port, media.proto) == ("audio", 7882, "UDP/TLS/RTP/SAVPF")
    assert [str(codec) for codec in media.codecs] == ["PCMU/8000", "PCMA/8000", "telephone-event/8000"]
    assert media.codecs[2].parameters == "0-16"
    assert media.mid == "0"
    assert media.setup is Setup.ACTPASS  # RFC 5763 section 5
    assert media.rtcp_mux
    assert media.end_of_candidates
    assert media.fingerprints == (certificate.fingerprint,)
    assert certificate.fingerprint.algorithm == "sha-256"
    [candidate] = media.candidates
    assert (candidate.address, candidate.port, candidate.type) == ("198.51.100.1", 7882, "host")
    assert offer.direction_of(media) is Direction.SENDRECV
    assert media.ice_ufrag == session.ufrag
    assert media.ice_pwd == session.ice.local.pwd
    assert [msid.stream_id for msid in media.msids] == ["echodesk"]
    assert session.codecs == ()  # nothing negotiated until the answer


def test_offer_puts_the_carriers_law_first() -> None:
    assert [codec.name for codec in g711_offer("PCMA")] == ["PCMA", "PCMU", "telephone-event"]
    assert [codec.name for codec in g711_offer("PCMU")] == ["PCMU", "PCMA", "telephone-event"]


def test_an_offer_or_answer_out_of_turn_is_refused(certificate: DtlsCertificate) -> None:
    fresh = WebRtcSession(certificate, address="198.51.100.1", port=7882)
    with pytest.raises(NegotiationError) as refused:
        fresh.accept_answer(PacketPeer().offer())
    assert refused.value.code == "no_offer"
    fresh.create_offer()
    with pytest.raises(NegotiationError) as refused:
        fresh.accept_offer(PacketPeer().offer())  # glare: RFC 3264 section 4
    assert refused.value.code == "glare"
    with pytest.raises(NegotiationError):
        fresh.create_offer()


# -- the answer


@pytest.mark.parametrize(
    ("setup", "role"),
    [("active", DtlsRole.SERVER), ("passive", DtlsRole.CLIENT)],
)
def test_the_answers_setup_gives_our_dtls_role(
    certificate: DtlsCertificate, setup: str, role: DtlsRole
) -> None:
    session = WebRtcSession(certificate, address="198.51.100.1", port=7882)
    offer = session.create_offer()
    session.accept_answer(SessionDescription.parse(PacketPeer().answer(offer, setup=setup)))
    assert session.dtls is not None
    assert session.dtls.role is role


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        ("0 8 101", ["PCMU/8000", "telephone-event/8000"]),
        ("8 0 101", ["PCMA/8000", "telephone-event/8000"]),
        ("8", ["PCMA/8000"]),
    ],
)
def test_the_browsers_first_codec_is_used(
    certificate: DtlsCertificate, formats: str, expected: list[str]
) -> None:
    session = WebRtcSession(certificate, address="198.51.100.1", port=7882)
    offer = session.create_offer()
    session.accept_answer(SessionDescription.parse(PacketPeer().answer(offer, formats=formats)))
    assert [str(codec) for codec in session.codecs] == expected


def _answer(certificate: DtlsCertificate, edit: tuple[str, str]) -> tuple[WebRtcSession, str]:
    session = WebRtcSession(certificate, address="198.51.100.1", port=7882)
    text = PacketPeer().answer(session.create_offer())
    assert edit[0] in text
    return session, text.replace(*edit)


@pytest.mark.parametrize(
    ("edit", "fault"),
    [
        (("a=setup:active", "a=setup:actpass"), "bad setup"),
        (("a=fingerprint:", "a=x-fingerprint:"), "no fingerprint"),
        (("a=ice-ufrag:", "a=x-ice-ufrag:"), "no ICE credentials"),
        (("a=rtcp-mux\r\n", ""), "no rtcp-mux"),
        (("m=audio 9", "m=audio 0"), "audio rejected"),
        (("UDP/TLS/RTP/SAVPF 0 8 101", "UDP/TLS/RTP/SAVPF 9"), "G722|no common codec"),
    ],
)
def test_answers_we_cannot_take_are_refused_and_change_nothing(
    certificate: DtlsCertificate, edit: tuple[str, str], fault: str
) -> None:
    session, text = _answer(certificate, edit)
    if "SAVPF 9" in text:
        text = text.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:9 G722/8000")
    with pytest.raises(SdpError, match=fault):
        session.accept_answer(SessionDescription.parse(text))
    assert session.codecs == ()
    assert session.dtls is None
    assert session.ice.remote is None


def test_an_answer_with_a_codec_we_did_not_offer_names_it(certificate: DtlsCertificate) -> None:
    session, text = _answer(certificate, ("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/16000"))
    text = text.replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:8 opus/48000/2")
    with pytest.raises(NoCommonCodec, match="PCMU/16000"):
        session.accept_answer(SessionDescription.parse(text))


# -- through the mux: checks and DTLS that overtake the answer


async def test_chromium_like_answer_checks_and_clienthello_before_the_answer(
    certificate: DtlsCertificate,
) -> None:
    mux, transport = fake_mux(certificate)
    session = mux.create_session()
    offer = session.create_offer()
    peer = PacketPeer()
    answer = peer.answer(offer)  # setup:active: the browser is the DTLS client, as Chromium is
    # Its checks come before its 200 OK reaches us: answered at once (RFC 8445 section 7.3).
    assert check(mux, transport, peer, BROWSER)
    assert mux.session_at(BROWSER) is session
    for datagram in peer.start_dtls():
        mux.datagram_received(datagram, BROWSER)
    assert transport.take(BROWSER) == []  # the ClientHello waits for the fingerprint
    assert session.counters.dtls_early >= 1
    session.accept_answer(SessionDescription.parse(answer))
    handshake(mux, transport, peer, session, BROWSER)
    assert [str(codec) for codec in session.codecs] == ["PCMU/8000", "telephone-event/8000"]
    assert_media_both_ways(session, peer, transport)
    assert mux.counters.errors == 0


async def test_passive_answer_makes_us_open_dtls_where_the_early_checks_came_from(
    certificate: DtlsCertificate,
) -> None:
    mux, transport = fake_mux(certificate)
    session = mux.create_session()
    peer = PacketPeer()
    answer = peer.answer(session.create_offer(), setup="passive")
    assert check(mux, transport, peer, BROWSER)
    session.accept_answer(SessionDescription.parse(answer))
    handshake(mux, transport, peer, session, BROWSER)
    assert session.dtls is not None
    assert session.dtls.role is DtlsRole.CLIENT
    assert_media_both_ways(session, peer, transport)


async def test_forked_offer_first_answer_wins_and_the_other_is_refused(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    session = mux.create_session()
    offer = session.create_offer()
    winner, loser = PacketPeer(), PacketPeer()
    winning, losing = winner.answer(offer), loser.answer(offer)
    # Both browsers answered (two agents clicked at once): both check and send a ClientHello.
    assert check(mux, transport, loser, OTHER_BROWSER)
    assert check(mux, transport, winner, BROWSER)
    for datagram in loser.start_dtls():
        mux.datagram_received(datagram, OTHER_BROWSER)
    for datagram in winner.start_dtls():
        mux.datagram_received(datagram, BROWSER)
    session.accept_answer(SessionDescription.parse(winning))
    with pytest.raises(NegotiationError, match="forked") as refused:
        session.accept_answer(SessionDescription.parse(losing))
    assert refused.value.code == "already_answered"
    session.accept_answer(SessionDescription.parse(winning))  # the same answer again changes nothing
    assert mux.session_at(OTHER_BROWSER) is None
    assert transport.take(OTHER_BROWSER) == []  # no DTLS reply to the loser
    assert not check(mux, transport, loser, OTHER_BROWSER)
    handshake(mux, transport, winner, session, BROWSER)
    assert session.ice.remote is not None
    assert session.ice.remote.ufrag == winner.credentials.ufrag
    assert_media_both_ways(session, winner, transport)


async def test_checks_naming_another_session_before_the_answer_are_not_ours(
    certificate: DtlsCertificate,
) -> None:
    mux, transport = fake_mux(certificate)
    session = mux.create_session()
    peer = PacketPeer()
    peer.answer(session.create_offer())
    # Right ufrag, wrong password: not authenticated, no answer, no route.
    mux.datagram_received(bytes(peer.binding_request(pwd="x" * 24)), BROWSER)
    assert transport.take(BROWSER) == []
    assert mux.session_at(BROWSER) is None
    assert mux.counters.stun_unauthenticated == 1


# -- re-offers from the browser


def _reoffer(session: WebRtcSession, peer: PacketPeer, direction: str, version: int) -> SessionDescription:
    answer = session.accept_offer(peer.offer(direction, version=version))
    assert SessionDescription.parse(answer.serialize()) == answer
    return answer


@pytest.mark.parametrize("we_offered", [False, True])
async def test_hold_and_resume_reoffers_are_answered_and_media_pauses(
    certificate: DtlsCertificate, we_offered: bool
) -> None:
    mux, transport = fake_mux(certificate)
    peer = PacketPeer()
    if we_offered:
        session = mux.create_session()
        answer = peer.answer(session.create_offer())
        assert check(mux, transport, peer, BROWSER)
        session.accept_answer(SessionDescription.parse(answer))
        handshake(mux, transport, peer, session, BROWSER, peer.start_dtls())
    else:
        session = connect(mux, transport, peer, BROWSER)
    first = session.local
    assert first is not None
    ufrag = session.ufrag
    # SIP.js holds with sendonly: we answer recvonly (RFC 3264 section 8.4) and send nothing.
    held = _reoffer(session, peer, "sendonly", 3)
    assert held.direction_of(held.media[0]) is Direction.RECVONLY
    assert held.media[0].setup is Setup.PASSIVE  # we stay the DTLS server (RFC 8842 section 5.5)
    assert held.origin.session_id == first.origin.session_id
    assert held.origin.session_version == first.origin.session_version + 1
    assert session.on_hold
    assert not session.send_rtp(peer.rtp(b"\x7f" * 160))
    assert session.counters.not_sent == 1
    assert transport.take(BROWSER) == []
    heard: list[bytes] = []
    session.on_rtp = heard.append
    session.receive_srtp(peer.srtp_packet(b"\xff" * 160))  # the browser's audio still arrives
    assert len(heard) == 1
    inactive = _reoffer(session, peer, "inactive", 4)
    assert inactive.direction_of(inactive.media[0]) is Direction.INACTIVE
    resumed = _reoffer(session, peer, "sendrecv", 5)
    assert resumed.direction_of(resumed.media[0]) is Direction.SENDRECV
    assert resumed.media[0].ice_ufrag == ufrag  # same credentials: no ICE restart
    assert not session.on_hold
    assert session.state is WebRtcState.CONNECTED  # DTLS and SRTP ran on throughout
    assert_media_both_ways(session, peer, transport)
    # The same offer again gets the same answer, same version (RFC 3264 section 8).
    assert session.accept_offer(peer.offer("sendrecv", version=5)) == resumed


async def test_reoffer_while_we_hold_the_browser_is_answered_recvonly(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    peer = PacketPeer()
    session = connect(mux, transport, peer, BROWSER)
    answer = session.accept_offer(peer.offer(version=3), wish=Direction.RECVONLY)
    assert answer.direction_of(answer.media[0]) is Direction.RECVONLY


async def test_ice_restart_gets_new_credentials_and_keeps_dtls(certificate: DtlsCertificate) -> None:
    mux, transport = fake_mux(certificate)
    peer = PacketPeer()
    session = connect(mux, transport, peer, BROWSER)
    old_ufrag, old_pwd = session.ufrag, session.ice.local.pwd
    dtls = session.dtls
    peer.restart_ice()
    answer = session.accept_offer(peer.offer(version=3))
    [media] = answer.media
    # RFC 8839 section 4.4.1.1.1: the answerer of an ICE restart changes its credentials too.
    assert media.ice_ufrag == session.ufrag != old_ufrag
    assert media.ice_pwd == session.ice.local.pwd != old_pwd
    assert set(mux.sessions) == {session.ufrag}
    # Checks with the new credentials are answered, from a new address too; the old ones are not.
    peer.remote_ufrag, peer.remote_pwd = session.ufrag, session.ice.local.pwd
    assert check(mux, transport, peer, OTHER_BROWSER)
    stale = peer.binding_request(username=f"{old_ufrag}:{peer.credentials.ufrag}", pwd=old_pwd)
    mux.datagram_received(bytes(stale), BROWSER)
    assert transport.take(BROWSER) == []
    assert session.dtls is dtls
    assert session.state is WebRtcState.CONNECTED
    assert session.remote_address == OTHER_BROWSER  # media follows the new nomination
    assert_media_both_ways(session, peer, transport)


async def test_reoffers_that_would_need_a_new_dtls_association_are_refused(
    certificate: DtlsCertificate,
) -> None:
    mux, transport = fake_mux(certificate)
    peer = PacketPeer()
    session = connect(mux, transport, peer, BROWSER)
    before = session.local
    # We are the DTLS server: a re-offer saying passive would make us the client.
    with pytest.raises(SdpError, match="new DTLS association"):
        session.accept_offer(peer.offer(version=3, setup="passive"))
    peer.certificate = DtlsCertificate.generate()
    with pytest.raises(NegotiationError, match="fingerprint") as refused:
        session.accept_offer(peer.offer(version=3))
    assert refused.value.code == "unsupported"
    assert session.local is before
    assert session.state is WebRtcState.CONNECTED


async def test_an_answer_whose_certificate_does_not_match_its_fingerprint_fails_dtls(
    certificate: DtlsCertificate,
) -> None:
    mux, transport = fake_mux(certificate)
    session = mux.create_session()
    peer = PacketPeer()
    answer = peer.answer(session.create_offer())
    # The answer names another certificate than the one the browser's DTLS presents (RFC 8122 5).
    impostor = DtlsCertificate.generate()
    answer = answer.replace(str(peer.certificate.fingerprint), str(impostor.fingerprint))
    session.accept_answer(SessionDescription.parse(answer))
    assert check(mux, transport, peer, BROWSER)
    outgoing = peer.start_dtls()
    for _ in range(10):
        for datagram in outgoing:
            mux.datagram_received(datagram, BROWSER)
        outgoing = [out for datagram in transport.take(BROWSER) for out in peer.receive_dtls(datagram)]
        if not outgoing:
            break
    assert session.state is WebRtcState.FAILED
    assert session.reason == "the peer's certificate does not match its SDP fingerprint"
    assert not session.send_rtp(peer.rtp(b"\x7f" * 160))


@pytest.mark.parametrize(
    ("offered", "current", "answered"),
    [
        (Setup.ACTPASS, DtlsRole.SERVER, Setup.PASSIVE),
        (Setup.ACTPASS, DtlsRole.CLIENT, Setup.ACTIVE),
        (Setup.ACTIVE, DtlsRole.SERVER, Setup.PASSIVE),
        (Setup.PASSIVE, DtlsRole.CLIENT, Setup.ACTIVE),
        (Setup.PASSIVE, DtlsRole.SERVER, None),
        (Setup.ACTIVE, DtlsRole.CLIENT, None),
        (Setup.HOLDCONN, DtlsRole.SERVER, None),
    ],
)
def test_a_reoffer_keeps_our_dtls_role_or_is_refused(
    offered: Setup, current: DtlsRole, answered: Setup | None
) -> None:
    if answered is None:
        with pytest.raises(SdpError, match="new DTLS association"):
            reoffer_role(offered, current)
    else:
        assert reoffer_role(offered, current) is answered
