"""The SDP answer of an ICE-lite WebRTC session to browser offers (JSEP, RFC 3264, RFC 8839, RFC 8842)."""

from __future__ import annotations

import re

import pytest

from services.media.webrtc import DtlsCertificate, DtlsRole, WebRtcSession, generate_credentials
from shared.sdp import Candidate, NoCommonCodec, SdpError, SessionDescription, Setup

FINGERPRINT = (
    "6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08"
)


def chromium_offer(
    formats: str = "111 63 9 0 8 13 110 126",
    *,
    setup: str | None = "actpass",
    fingerprint: bool = True,
    ice: bool = True,
    rtcp_mux: bool = True,
    extra_sections: str = "",
    bundle: str = "0",
) -> str:
    """An offer as Chromium writes it (RFC 8829 section 5.2), with parts removable for the error cases."""
    lines = [
        "v=0",
        "o=- 8817357382961335066 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {bundle}",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS stream",
        f"m=audio 61864 UDP/TLS/RTP/SAVPF {formats}",
        "c=IN IP4 203.0.113.45",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=candidate:2027323456 1 udp 2122260223 192.168.1.23 61864 typ host generation 0",
        "a=candidate:1876313031 1 udp 1686052607 203.0.113.45 61864 typ srflx raddr 192.168.1.23 rport 61864",
    ]
    if ice:
        lines += ["a=ice-ufrag:Lx1e", "a=ice-pwd:T6Ykyh3ZJrHcLcn8pWDd3Q0s", "a=ice-options:trickle"]
    if fingerprint:
        lines.append(f"a=fingerprint:sha-256 {FINGERPRINT}")
    if setup is not None:
        lines.append(f"a=setup:{setup}")
    lines += [
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendrecv",
        "a=msid:stream track",
    ]
    if rtcp_mux:
        lines.append("a=rtcp-mux")
    lines += [
        "a=rtcp-rsize",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "a=ssrc:1001 cname:abc",
    ]
    text = "\r\n".join(lines) + "\r\n"
    return text + extra_sections


VIDEO_AND_DATA = (
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:Lx1e\r\n"
    "a=ice-pwd:T6Ykyh3ZJrHcLcn8pWDd3Q0s\r\n"
    f"a=fingerprint:sha-256 {FINGERPRINT}\r\n"
    "a=setup:actpass\r\n"
    "a=mid:1\r\n"
    "a=sendrecv\r\n"
    "a=rtcp-mux\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:Lx1e\r\n"
    "a=ice-pwd:T6Ykyh3ZJrHcLcn8pWDd3Q0s\r\n"
    f"a=fingerprint:sha-256 {FINGERPRINT}\r\n"
    "a=setup:actpass\r\n"
    "a=mid:2\r\n"
    "a=sctp-port:5000\r\n"
)


@pytest.fixture(scope="module")
def certificate() -> DtlsCertificate:
    return DtlsCertificate.generate()


def answer_to(
    certificate: DtlsCertificate, offer: str, *, address: str = "198.51.100.1", setup: Setup = Setup.PASSIVE
) -> tuple[WebRtcSession, SessionDescription]:
    session = WebRtcSession(certificate, address=address, port=7882)
    answer = session.accept_offer(SessionDescription.parse(offer), setup=setup)
    # What we send must parse back to the same description.
    assert SessionDescription.parse(answer.serialize()) == answer
    return session, answer


def test_answer_to_chromium_is_ice_lite_passive_pcmu_with_one_host_candidate(
    certificate: DtlsCertificate,
) -> None:
    session, answer = answer_to(certificate, chromium_offer())
    text = answer.serialize()
    assert answer.ice_lite
    assert [group.mids for group in answer.bundle_groups] == [("0",)]
    [media] = answer.media
    assert (media.kind, media.port, media.proto) == ("audio", 7882, "UDP/TLS/RTP/SAVPF")
    assert media.formats == ("0", "126")
    assert [str(codec) for codec in media.codecs] == ["PCMU/8000", "telephone-event/8000"]
    assert media.mid == "0"
    assert media.setup is Setup.PASSIVE
    assert media.rtcp_mux
    assert media.end_of_candidates
    assert media.fingerprints == (certificate.fingerprint,)
    assert media.candidates == (Candidate("1", 1, "udp", 2130706431, "198.51.100.1", 7882, "host"),)
    assert answer.connection_of(media) is not None
    assert answer.connection_of(media).address == "198.51.100.1"
    assert answer.direction_of(media).value == "sendrecv"
    assert "a=rtcp-fb" not in text
    assert "a=extmap" not in text
    assert "a=ssrc" not in text
    assert "a=ice-options" not in text  # no trickle: a lite agent gives its only candidate at once
    assert session.ice.remote is not None
    assert session.ice.remote.ufrag == "Lx1e"
    assert session.dtls is not None
    assert session.dtls.role is DtlsRole.SERVER
    assert media.ice_ufrag == session.ufrag


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        ("111 8 0 126", ["PCMU/8000", "telephone-event/8000"]),
        ("111 8 126", ["PCMA/8000", "telephone-event/8000"]),
        ("111 110", ["opus/48000/2", "telephone-event/48000"]),
        ("111", ["opus/48000/2"]),
        ("0", ["PCMU/8000"]),
    ],
)
def test_codec_preference_pcmu_then_pcma_then_opus(
    certificate: DtlsCertificate, formats: str, expected: list[str]
) -> None:
    session, answer = answer_to(certificate, chromium_offer(formats))
    assert [str(codec) for codec in answer.media[0].codecs] == expected
    assert [str(codec) for codec in session.codecs] == expected


def test_no_common_codec_names_what_was_offered(certificate: DtlsCertificate) -> None:
    with pytest.raises(NoCommonCodec, match="G722/8000"):
        answer_to(certificate, chromium_offer("9 13"))


@pytest.mark.parametrize(
    ("offered", "wish", "answered", "role"),
    [
        ("actpass", Setup.PASSIVE, Setup.PASSIVE, DtlsRole.SERVER),
        ("actpass", Setup.ACTIVE, Setup.ACTIVE, DtlsRole.CLIENT),
        ("active", Setup.ACTIVE, Setup.PASSIVE, DtlsRole.SERVER),
        ("passive", Setup.PASSIVE, Setup.ACTIVE, DtlsRole.CLIENT),
        (None, Setup.PASSIVE, Setup.PASSIVE, DtlsRole.SERVER),  # RFC 4145 section 4: absent is active
    ],
)
def test_dtls_role_follows_the_offer(
    certificate: DtlsCertificate, offered: str | None, wish: Setup, answered: Setup, role: DtlsRole
) -> None:
    session, answer = answer_to(certificate, chromium_offer(setup=offered), setup=wish)
    assert answer.media[0].setup is answered
    assert session.dtls is not None
    assert session.dtls.role is role


@pytest.mark.parametrize(
    ("offer", "fault"),
    [
        (chromium_offer(fingerprint=False), "no fingerprint"),
        (chromium_offer(ice=False), "no ICE credentials"),
        (chromium_offer(rtcp_mux=False), "no rtcp-mux"),
        (chromium_offer(setup="holdconn"), "bad setup"),
        (
            chromium_offer()
            .replace("m=audio", "m=video")
            .replace("UDP/TLS/RTP/SAVPF 111", "UDP/TLS/RTP/SAVPF 96 111"),
            "no audio",
        ),
        (chromium_offer().replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"), "no audio"),
    ],
)
def test_offers_we_cannot_answer_are_refused_with_the_reason(
    certificate: DtlsCertificate, offer: str, fault: str
) -> None:
    with pytest.raises(SdpError, match=fault):
        answer_to(certificate, offer)


def test_video_and_data_channel_are_refused_and_left_out_of_bundle(certificate: DtlsCertificate) -> None:
    _, answer = answer_to(certificate, chromium_offer(extra_sections=VIDEO_AND_DATA, bundle="0 1 2"))
    audio, video, data = answer.media
    assert (audio.port, video.port, data.port) == (7882, 0, 0)
    assert (video.mid, data.mid) == ("1", "2")
    assert [group.mids for group in answer.bundle_groups] == [("0",)]


def test_ipv6_address_in_connection_and_candidate(certificate: DtlsCertificate) -> None:
    _, answer = answer_to(certificate, chromium_offer(), address="2001:db8::7")
    [media] = answer.media
    connection = answer.connection_of(media)
    assert connection is not None
    assert connection.addr_type == "IP6"
    assert answer.origin.addr_type == "IP6"
    assert media.candidates[0].address == "2001:db8::7"


def test_the_same_offer_again_gets_the_same_answer(certificate: DtlsCertificate) -> None:
    # Re-offers are answered (test_webrtc_offer.py); an unchanged one changes nothing (RFC 3264 8).
    session, answer = answer_to(certificate, chromium_offer())
    assert session.accept_offer(SessionDescription.parse(chromium_offer())) == answer


def test_credentials_have_rfc_8839_lengths_and_characters() -> None:
    drawn = [generate_credentials() for _ in range(200)]
    for credentials in drawn:
        assert re.fullmatch(r"[A-Za-z0-9+/]{8}", credentials.ufrag)
        assert re.fullmatch(r"[A-Za-z0-9+/]{24}", credentials.pwd)
    assert len({credentials.ufrag for credentials in drawn}) == len(drawn)


def test_sending_before_connected_is_refused(certificate: DtlsCertificate) -> None:
    session, _ = answer_to(certificate, chromium_offer())
    assert not session.send_rtp(bytes(172))
    assert not session.send_rtcp(bytes(8))
