"""SDP parsing, serialization and offer/answer (shared.sdp) against real-looking peers."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.sdp import (
    Attribute,
    Bandwidth,
    Candidate,
    Codec,
    Connection,
    Crypto,
    Direction,
    ExtMap,
    Fingerprint,
    Fmtp,
    Group,
    IceCredentials,
    MediaDescription,
    Msid,
    NoCommonCodec,
    Origin,
    Repeat,
    Rtcp,
    RtcpFb,
    RtpMap,
    SdpError,
    SessionDescription,
    Setup,
    Ssrc,
    TimeDescription,
    ZoneAdjustment,
    answer_media,
    answer_session,
    build_media,
    build_session,
    negotiate_codecs,
    random_session_id,
    rejected_media,
    revise,
    transport_attributes,
)
from tests.support.sdp_samples import CHROMIUM_OFFER, FINGERPRINT

# Chromium before gathering (trickle): the RFC 8840 placeholder address and the discard port.
CHROMIUM_TRICKLE_OFFER = f"""\
v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Q9xR
a=ice-pwd:hG7nLk2PzW4vYt8sBq1cXe0m
a=ice-options:trickle
a=fingerprint:sha-256 {FINGERPRINT}
a=setup:actpass
a=mid:0
a=sendrecv
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:126 telephone-event/8000
"""

# What Asterisk (chan_pjsip) sends a carrier: session-level c=, G.711, G.729 without Annex B, DTMF.
ASTERISK_OFFER = """\
v=0
o=- 1821612345 1821612345 IN IP4 198.51.100.10
s=Asterisk
c=IN IP4 198.51.100.10
t=0 0
m=audio 17384 RTP/AVP 0 8 18 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
"""

# sipp's built-in uac scenario body: one static payload type and no rtpmap for the others.
SIPP_OFFER = """\
v=0
o=user1 53655765 2353687637 IN IP4 192.0.2.7
s=-
c=IN IP4 192.0.2.7
t=0 0
m=audio 6000 RTP/AVP 8 0 18
"""


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def offer_with(media_lines: str, session_lines: str = "") -> str:
    """A carrier-style offer whose audio section ends with ``media_lines``."""
    return (
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
        + session_lines
        + "m=audio 4000 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\n"
        + media_lines
    )


# --- Chromium --------------------------------------------------------------------------------------------


def test_chromium_offer_round_trips_byte_for_byte() -> None:
    wire = crlf(CHROMIUM_OFFER)
    assert SessionDescription.parse(wire).serialize() == wire
    assert SessionDescription.parse(wire.encode()).encode() == wire.encode()
    # LF-only input (harmless deviation) comes back with CRLF.
    assert SessionDescription.parse(CHROMIUM_OFFER).serialize() == wire
    assert SessionDescription.parse(crlf(CHROMIUM_TRICKLE_OFFER)).serialize() == crlf(CHROMIUM_TRICKLE_OFFER)


def test_chromium_offer_typed_access() -> None:
    offer = SessionDescription.parse(CHROMIUM_OFFER)
    assert offer.origin == Origin("-", 8817357382961335066, 2, "IN", "IP4", "127.0.0.1")
    assert offer.bundle_groups == (Group("BUNDLE", ("0",)),)
    assert offer.attribute("msid-semantic") == Attribute(
        "msid-semantic", " WMS 5c1c4b0e-8a1f-4a4e-9c07-3d1c3e0f6a21"
    )
    assert not offer.ice_lite
    (audio,) = offer.media
    assert (audio.kind, audio.port, audio.proto) == ("audio", 61864, "UDP/TLS/RTP/SAVPF")
    assert audio.payload_types == (111, 63, 9, 0, 8, 13, 110, 126)
    assert offer.connection_of(audio) == Connection("IN", "IP4", "203.0.113.45")
    assert audio.rtcp == Rtcp(9, Connection("IN", "IP4", "0.0.0.0"))
    assert audio.mid == "0"
    assert offer.media_by_mid("0") is audio
    assert offer.ice_credentials_of(audio) == IceCredentials("Lx1e", "T6Ykyh3ZJrHcLcn8pWDd3Q0s")
    assert audio.ice_options == ("trickle",)
    assert offer.fingerprints_of(audio) == (Fingerprint("sha-256", FINGERPRINT),)
    assert offer.setup_of(audio) is Setup.ACTPASS
    assert audio.rtcp_mux
    assert audio.rtcp_rsize
    assert not audio.end_of_candidates
    assert offer.direction_of(audio) is Direction.SENDRECV
    assert not offer.is_on_hold(audio)
    assert next(extmap.uri for extmap in audio.extmaps) == "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
    assert audio.extmaps[3] == ExtMap(4, "urn:ietf:params:rtp-hdrext:sdes:mid")
    assert audio.msids == (
        Msid("5c1c4b0e-8a1f-4a4e-9c07-3d1c3e0f6a21", "7f3e9d52-0a6b-4c1e-b4a5-9e2f1c8d3b70"),
    )
    assert audio.ssrcs == (
        Ssrc(3735928559, "cname", "Wq3Ptm4b0MZvG4n7"),
        Ssrc(
            3735928559,
            "msid",
            "5c1c4b0e-8a1f-4a4e-9c07-3d1c3e0f6a21 7f3e9d52-0a6b-4c1e-b4a5-9e2f1c8d3b70",
        ),
    )
    assert audio.rtcp_feedback == (RtcpFb("111", "transport-cc"),)


def test_chromium_offer_candidates() -> None:
    audio = SessionDescription.parse(CHROMIUM_OFFER).media[0]
    host, tcp, srflx, relay = audio.candidates
    assert host == Candidate(
        "2027323456",
        1,
        "udp",
        2122260223,
        "192.168.1.23",
        61864,
        "host",
        extensions=(("generation", "0"), ("network-id", "1"), ("network-cost", "10")),
    )
    assert tcp.transport == "tcp"
    assert tcp.extension("tcptype") == "active"
    assert tcp.port == 9
    assert (srflx.type, srflx.related_address, srflx.related_port) == ("srflx", "192.168.1.23", 61864)
    assert (relay.type, relay.address, relay.port) == ("relay", "198.51.100.20", 50123)
    assert relay.extension("network-cost") == "10"
    assert relay.extension("ufrag") is None


def test_chromium_offer_codecs() -> None:
    audio = SessionDescription.parse(CHROMIUM_OFFER).media[0]
    assert audio.codecs == (
        Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1", ("transport-cc",)),
        Codec(63, "red", 48000, 2, "111/111"),
        Codec(9, "G722", 8000),
        Codec(0, "PCMU", 8000),
        Codec(8, "PCMA", 8000),
        Codec(13, "CN", 8000),
        Codec(110, "telephone-event", 48000),
        Codec(126, "telephone-event", 8000),
    )
    assert audio.fmtps[0].parameter_map() == {"minptime": "10", "useinbandfec": "1"}
    assert str(audio.codecs[0]) == "opus/48000/2"


def test_mdns_host_candidate_and_lowercase_fingerprint_are_accepted() -> None:
    mdns = Attribute.parse(
        "candidate:1 1 UDP 2113937151 9b36eaac-bb2e-49bb-bb78-21c41c499900.local 61864 typ host"
        " generation 0 network-cost 999"
    ).typed
    assert isinstance(mdns, Candidate)
    assert mdns.address.endswith(".local")
    fingerprint = Attribute.parse("fingerprint:SHA-256 " + FINGERPRINT.lower()).typed
    assert fingerprint == Fingerprint("sha-256", FINGERPRINT)


def test_fingerprint_of_certificate() -> None:
    der = b"0\x82\x01\x00 not really a certificate"
    fingerprint = Fingerprint.of_certificate(der)
    assert fingerprint.digest == hashlib.sha256(der).digest()
    assert fingerprint.value.count(":") == 31
    assert fingerprint.value == fingerprint.value.upper()
    assert fingerprint.matches(der)
    assert not fingerprint.matches(der + b"x")
    assert Fingerprint.of_certificate(der, "sha-1").matches(der)
    assert not Fingerprint("md2", "00:" * 15 + "00").matches(der)


def test_negotiate_chromium_by_our_preference() -> None:
    audio = SessionDescription.parse(CHROMIUM_OFFER).media[0]
    chosen = negotiate_codecs(audio, ["PCMU", "PCMA", "telephone-event"])
    assert [(c.payload_type, str(c)) for c in chosen] == [
        (0, "PCMU/8000"),
        (8, "PCMA/8000"),
        (126, "telephone-event/8000"),
    ]
    # opus keeps telephone-event/48000 as well: each kept clock rate gets its events (RFC 4733 2.1).
    chosen = negotiate_codecs(audio, ["opus", "pcmu", "telephone-event"])
    assert [c.payload_type for c in chosen] == [111, 0, 110, 126]
    assert chosen[0].feedback == ()
    assert chosen[0].parameters == "minptime=10;useinbandfec=1"


def test_negotiate_by_offer_order_and_limit() -> None:
    audio = SessionDescription.parse(CHROMIUM_OFFER).media[0]
    theirs = negotiate_codecs(audio, ["PCMA", "PCMU", "G722/8000", "telephone-event"], order="theirs")
    assert [c.payload_type for c in theirs] == [9, 0, 8, 126]
    single = negotiate_codecs(audio, ["PCMU", "opus/48000/2", "telephone-event"], limit=1)
    assert [c.payload_type for c in single] == [0, 126]
    single_opus = negotiate_codecs(audio, ["opus", "PCMU", "telephone-event/48000"], limit=1)
    assert [c.payload_type for c in single_opus] == [111, 110]
    # CN only with a kept codec at its rate, and only when we list it.
    assert [c.payload_type for c in negotiate_codecs(audio, ["PCMU", "CN"])] == [0, 13]
    assert [c.payload_type for c in negotiate_codecs(audio, ["opus", "CN"])] == [111]
    # Without telephone-event in our list there is no DTMF payload type in the answer.
    assert [c.payload_type for c in negotiate_codecs(audio, ["PCMU"])] == [0]


def test_ice_lite_answer_to_chromium() -> None:
    offer = SessionDescription.parse(CHROMIUM_OFFER)
    audio = offer.media[0]
    setup = offer.setup_of(audio)
    assert setup is not None
    candidate = Candidate("1", 1, "udp", 2130706431, "203.0.113.9", 40000, "host")
    media = answer_media(
        offer,
        audio,
        negotiate_codecs(audio, ["PCMU", "telephone-event"], limit=1),
        port=40000,
        connection=Connection.for_address("203.0.113.9"),
        ptime=20,
        attributes=transport_attributes(
            ice=IceCredentials("gw01", "abcdefghijklmnopqrstuv"),
            candidates=[candidate],
            end_of_candidates=True,
            fingerprint=Fingerprint("sha-256", FINGERPRINT),
            setup=setup.answer(),
        ),
    )
    origin = Origin.for_address("203.0.113.9", session_id=42)
    answer = answer_session(offer, origin, [media], ice_lite=True)
    assert answer.serialize() == crlf(
        f"""\
v=0
o=- 42 1 IN IP4 203.0.113.9
s=-
t=0 0
a=group:BUNDLE 0
a=ice-lite
m=audio 40000 UDP/TLS/RTP/SAVPF 0 126
c=IN IP4 203.0.113.9
a=mid:0
a=ice-ufrag:gw01
a=ice-pwd:abcdefghijklmnopqrstuv
a=fingerprint:sha-256 {FINGERPRINT}
a=setup:passive
a=candidate:1 1 udp 2130706431 203.0.113.9 40000 typ host
a=end-of-candidates
a=sendrecv
a=rtcp-mux
a=rtpmap:0 PCMU/8000
a=rtpmap:126 telephone-event/8000
a=ptime:20
"""
    )
    assert SessionDescription.parse(answer.serialize()) == answer


def test_setup_answer_rules() -> None:
    assert Setup.ACTPASS.answer() is Setup.PASSIVE
    assert Setup.ACTPASS.answer(Setup.ACTIVE) is Setup.ACTIVE
    assert Setup.ACTIVE.answer() is Setup.PASSIVE
    assert Setup.PASSIVE.answer() is Setup.ACTIVE
    assert Setup.HOLDCONN.answer() is Setup.HOLDCONN
    with pytest.raises(ValueError, match="active or passive"):
        Setup.ACTPASS.answer(Setup.ACTPASS)


# --- carriers -------------------------------------------------------------------------------------------


def test_asterisk_offer_round_trips_and_reads() -> None:
    wire = crlf(ASTERISK_OFFER)
    offer = SessionDescription.parse(wire)
    assert offer.serialize() == wire
    (audio,) = offer.media
    assert offer.connection == Connection("IN", "IP4", "198.51.100.10")
    assert audio.connections == ()
    assert offer.connection_of(audio) == offer.connection
    assert audio.codecs == (
        Codec(0, "PCMU", 8000),
        Codec(8, "PCMA", 8000),
        Codec(18, "G729", 8000, parameters="annexb=no"),
        Codec(101, "telephone-event", 8000, parameters="0-16"),
    )
    assert (audio.ptime, audio.maxptime) == (20.0, 150.0)
    assert offer.ice_credentials_of(audio) is None
    assert offer.fingerprints_of(audio) == ()


def test_sipp_offer_static_payload_types_without_rtpmap() -> None:
    offer = SessionDescription.parse(SIPP_OFFER)
    assert offer.media[0].codecs == (Codec(8, "PCMA", 8000), Codec(0, "PCMU", 8000), Codec(18, "G729", 8000))
    assert [c.payload_type for c in negotiate_codecs(offer.media[0], ["PCMU", "PCMA"])] == [0, 8]


def test_dynamic_payload_type_without_rtpmap_is_not_a_codec() -> None:
    offer = SessionDescription.parse(offer_with("").replace("0 8 101", "0 96 101"))
    assert [c.payload_type for c in offer.media[0].codecs] == [0, 101]


def test_answer_to_carrier() -> None:
    offer = SessionDescription.parse(ASTERISK_OFFER)
    audio = offer.media[0]
    codecs = negotiate_codecs(audio, ["PCMA", "PCMU", "telephone-event"])
    origin = Origin("echodesk", 7, 7, "IN", "IP4", "203.0.113.9")
    answer = answer_session(
        offer,
        origin,
        [answer_media(offer, audio, codecs, port=30000, ptime=20)],
        connection=Connection.for_address("203.0.113.9"),
    )
    assert answer.serialize() == crlf(
        """\
v=0
o=echodesk 7 7 IN IP4 203.0.113.9
s=-
c=IN IP4 203.0.113.9
t=0 0
m=audio 30000 RTP/AVP 8 0 101
a=sendrecv
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
"""
    )


def test_offer_to_carrier_and_rejected_sections() -> None:
    media = build_media(
        "audio",
        30000,
        [Codec(0, "PCMU", 8000), Codec(101, "telephone-event", 8000, parameters="0-16")],
        connection=Connection.for_address("2001:db8::9"),
    )
    origin = Origin.for_address("2001:db8::9", random_session_id())
    assert origin.addr_type == "IP6"
    assert 0 <= origin.session_id < 2**63
    offer = build_session(origin, [media])
    assert SessionDescription.parse(offer.serialize()) == offer
    assert "c=IN IP6 2001:db8::9\r\n" in offer.serialize()

    two = SessionDescription.parse(
        crlf(CHROMIUM_OFFER)
        + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n"
    )
    audio_answer = answer_media(two, two.media[0], negotiate_codecs(two.media[0], ["PCMU"]), port=40000)
    answer = answer_session(
        two, origin, [audio_answer, None], connection=Connection.for_address("2001:db8::9")
    )
    assert answer.media[1] == rejected_media(two.media[1])
    assert answer.media[1].port == 0
    assert answer.media[1].formats == ("96",)
    assert answer.media[1].mid == "1"
    # Only accepted sections stay in the BUNDLE group (RFC 8843 section 7.3).
    assert answer.bundle_groups == (Group("BUNDLE", ("0",)),)
    with pytest.raises(ValueError, match="2 media sections"):
        answer_session(two, origin, [audio_answer])


# --- hold and resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction_line", "on_hold", "answered"),
    [
        ("a=sendonly\n", True, Direction.RECVONLY),
        ("a=inactive\n", True, Direction.INACTIVE),
        ("a=recvonly\n", False, Direction.SENDONLY),
        ("a=sendrecv\n", False, Direction.SENDRECV),
        ("", False, Direction.SENDRECV),
    ],
)
def test_hold_and_resume_answers(direction_line: str, on_hold: bool, answered: Direction) -> None:
    offer = SessionDescription.parse(offer_with(direction_line))
    audio = offer.media[0]
    assert offer.is_on_hold(audio) is on_hold
    answer = answer_media(offer, audio, negotiate_codecs(audio, ["PCMU"]), port=5000)
    assert answer.direction is answered


def test_rfc2543_hold_with_zero_address() -> None:
    offer = SessionDescription.parse(
        offer_with("a=sendrecv\n").replace("c=IN IP4 192.0.2.1", "c=IN IP4 0.0.0.0")
    )
    audio = offer.media[0]
    assert offer.is_on_hold(audio)
    # RFC 3264 section 8.4: send it neither RTP nor RTCP, so we only receive.
    assert answer_media(offer, audio, audio.codecs[:1], port=5000).direction is Direction.RECVONLY


def test_zero_address_with_ice_is_a_placeholder_not_hold() -> None:
    offer = SessionDescription.parse(CHROMIUM_TRICKLE_OFFER)
    audio = offer.media[0]
    assert offer.connection_of(audio) == Connection("IN", "IP4", "0.0.0.0")
    assert audio.port == 9
    assert not offer.is_on_hold(audio)
    assert answer_media(offer, audio, audio.codecs[:1], port=5000).direction is Direction.SENDRECV


def test_media_direction_overrides_session_direction() -> None:
    offer = SessionDescription.parse(offer_with("", session_lines="a=sendonly\n"))
    assert offer.direction_of(offer.media[0]) is Direction.SENDONLY
    assert offer.is_on_hold(offer.media[0])
    offer = SessionDescription.parse(offer_with("a=sendrecv\n", session_lines="a=sendonly\n"))
    assert offer.direction_of(offer.media[0]) is Direction.SENDRECV


def test_direction_answer_rules_with_our_wish() -> None:
    assert Direction.SENDRECV.answer(Direction.INACTIVE) is Direction.INACTIVE
    assert Direction.SENDRECV.answer(Direction.SENDONLY) is Direction.SENDONLY
    assert Direction.SENDONLY.answer(Direction.SENDONLY) is Direction.INACTIVE
    assert Direction.RECVONLY.answer(Direction.SENDRECV) is Direction.SENDONLY
    assert Direction.INACTIVE.answer() is Direction.INACTIVE


def test_revise_increments_version_only_on_change() -> None:
    origin = Origin("-", 99, 5, "IN", "IP4", "203.0.113.9")
    first = build_session(
        origin,
        [build_media("audio", 4000, [Codec(0, "PCMU", 8000)])],
        connection=Connection.for_address("203.0.113.9"),
    )
    assert revise(None, first) is first
    # Same content, even under a fresh origin: same version (RFC 3264 section 8).
    again = replace_origin(first, Origin("other", 1, 1, "IN", "IP4", "192.0.2.1"))
    assert revise(first, again) == first
    held = build_session(
        origin,
        [build_media("audio", 4000, [Codec(0, "PCMU", 8000)], direction=Direction.SENDONLY)],
        connection=first.connection,
    )
    second = revise(first, held)
    assert second.origin == Origin("-", 99, 6, "IN", "IP4", "203.0.113.9")
    resumed = revise(second, first)
    assert resumed.origin.session_version == 7
    assert resumed.media == first.media


def replace_origin(description: SessionDescription, origin: Origin) -> SessionDescription:
    return SessionDescription(
        origin=origin, connection=description.connection, media=description.media, times=description.times
    )


# --- no common codec ----------------------------------------------------------------------------------


def test_no_common_codec_names_the_offered_codecs() -> None:
    offer = SessionDescription.parse(offer_with("").replace("0 8 101", "18 101"))
    with pytest.raises(NoCommonCodec) as caught:
        negotiate_codecs(offer.media[0], ["PCMU", "PCMA", "telephone-event"])
    error = caught.value
    assert isinstance(error, SdpError)
    assert str(error) == (
        "no common codec (offered G729/8000, telephone-event/8000; we accept PCMU, PCMA, telephone-event)"
    )
    assert [str(codec) for codec in error.offered] == ["G729/8000", "telephone-event/8000"]


def test_telephone_event_alone_is_not_a_common_codec() -> None:
    audio = SessionDescription.parse(ASTERISK_OFFER).media[0]
    with pytest.raises(NoCommonCodec):
        negotiate_codecs(audio, ["opus", "telephone-event"])
    with pytest.raises(NoCommonCodec):
        negotiate_codecs(audio, [])
    with pytest.raises(ValueError, match="codec preference"):
        negotiate_codecs(audio, ["PCMU/x"])
    with pytest.raises(ValueError, match="codec preference"):
        negotiate_codecs(audio, ["PCMU/+8000"])
    with pytest.raises(ValueError, match="at least one"):
        negotiate_codecs(audio, ["PCMU"], limit=0)


# --- malformed descriptions --------------------------------------------------------------------------

HEAD = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0 101\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (HEAD + "a=rtpmap:xx\n", 7, "line 7: bad rtpmap 'a=rtpmap:xx'"),
        (HEAD + "a=rtpmap:128 foo/8000\n", 7, "line 7: bad rtpmap 'a=rtpmap:128 foo/8000' (payload type 128"),
        (HEAD + "a=rtpmap:101 telephone-event/0\n", 7, "line 7: bad rtpmap"),
        (HEAD + "a=rtpmap:101 telephone-event\n", 7, "line 7: bad rtpmap"),
        (HEAD + "a=fmtp:101\n", 7, "line 7: bad fmtp"),
        (HEAD + "a=rtcp-fb:abc nack\n", 7, "line 7: bad rtcp-fb"),
        (HEAD + "a=candidate:1 1 udp 1 192.0.2.1 5000 host\n", 7, "line 7: bad candidate"),
        (HEAD + "a=candidate:1 0 udp 1 192.0.2.1 5000 typ host\n", 7, "(component 0 is not 1-256)"),
        (HEAD + "a=candidate:1 1 udp 4294967296 192.0.2.1 5000 typ host\n", 7, "line 7: bad candidate"),
        (HEAD + "a=candidate:1 1 udp 1 999.0.2.1 5000 typ host\n", 7, "is not an address"),
        (HEAD + "a=candidate:1 1 udp 1 192.0.2.1 5000 typ host generation\n", 7, "has no value"),
        (HEAD + "a=candidate:1 1 udp 1 192.0.2.1 5000 typ srflx raddr 1.1.1.1 raddr 2.2.2.2\n", 7, "second"),
        (HEAD + "a=fingerprint:sha-256 ZZ:00\n", 7, "line 7: bad fingerprint"),
        (HEAD + "a=fingerprint:sha-256 AB:CD:EF\n", 7, "sha-256 is 32 bytes"),
        (HEAD + "a=setup:both\n", 7, "line 7: bad setup 'a=setup:both'"),
        (HEAD + "a=ice-ufrag:abc\n", 7, "line 7: bad ice-ufrag"),
        (HEAD + "a=ice-pwd:abcdefghijklmnopqrstuvw!\n", 7, "line 7: bad ice-pwd"),
        (HEAD + "a=ice-options:\n", 7, "line 7: bad ice-options"),
        (HEAD + "a=mid:a b\n", 7, "line 7: bad mid"),
        (HEAD + "a=group:\n", 7, "line 7: bad group"),
        (HEAD + "a=msid:a b c\n", 7, "line 7: bad msid"),
        (HEAD + "a=ssrc:abc cname:x\n", 7, "line 7: bad ssrc"),
        (HEAD + "a=ssrc:1\n", 7, "line 7: bad ssrc"),
        (HEAD + "a=extmap:0 urn:x\n", 7, "line 7: bad extmap"),
        (HEAD + "a=extmap:1/sideways urn:x\n", 7, "line 7: bad extmap"),
        (HEAD + "a=rtcp:port\n", 7, "line 7: bad rtcp"),
        (HEAD + "a=rtcp:9 IN IP4\n", 7, "line 7: bad rtcp"),
        (HEAD + "a=crypto:1 AES_CM_128_HMAC_SHA1_80\n", 7, "line 7: bad crypto"),
        (HEAD + "a=ptime:0\n", 7, "line 7: bad ptime"),
        (HEAD + "a=maxptime:-20\n", 7, "line 7: bad maxptime"),
        (HEAD + "a=sendrecv:yes\n", 7, "line 7: bad sendrecv 'a=sendrecv:yes' (takes no value)"),
        (HEAD + "a=rtcp-mux:1\n", 7, "line 7: bad rtcp-mux"),
        (HEAD + "a=sendonly\na=sendonly\na=recvonly\n", 9, "line 9: conflicting direction 'a=recvonly'"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\na=inactive\na=sendrecv\n", 5, "line 5: conflicting direction"),
        (HEAD + "a=rtpmap\n", 7, "line 7: bad rtpmap 'a=rtpmap' (missing value)"),
        (HEAD + "a=\n", 7, "line 7: bad attribute name"),
        (HEAD + "a=bad name:x\n", 7, "line 7: bad attribute name"),
        (HEAD + "a=x-foo:a\rb\n", 7, "line 7: bad character"),
        (HEAD + "x=unknown\n", 7, "line 7: unknown line type 'x='"),
        (HEAD + "t=0 0\n", 7, "line 7: unexpected 't=' line in a media section"),
        (HEAD + "i=one\ni=two\n", 8, "line 8: second 'i=' line in a media section"),
        (HEAD + "b=AS:x\n", 7, "line 7: bad bandwidth"),
        (HEAD + "b=AS\n", 7, "line 7: bad bandwidth"),
        (HEAD + "c=IN IP4 300.1.1.1\n", 7, "line 7: bad connection"),
        (HEAD + "c=IN IP5 192.0.2.1\n", 7, "address type 'IP5'"),
        (HEAD + "c=ATM NSAP 47.0005\n", 7, "network type 'ATM'"),
        (HEAD + "c=IN IP4 2001:db8::1\n", 7, "is not an IP4 address"),
        (HEAD + "c=IN IP4 224.2.1.1\n", 7, "needs a TTL"),
        (HEAD + "c=IN IP4 192.0.2.1/127\n", 7, "TTL belongs to an IPv4 multicast"),
        (HEAD + "c=IN IP6 ff15::101/3/2\n", 7, "IPv6 address has no TTL"),
        (HEAD + "m=audio 70000 RTP/AVP 0\n", 7, "line 7: bad media 'm=audio 70000 RTP/AVP 0' (port 70000"),
        (HEAD + "m=audio 4000 RTP/AVP PCMU\n", 7, "line 7: bad media"),
        (HEAD + "m=audio 4000 RTP/AVP 200\n", 7, "payload type 200 is not 0-127"),
        (HEAD + "m=audio 4000 RTP/AVP\n", 7, "line 7: bad media"),
        (HEAD + "m=audio 4000/0 RTP/AVP 0\n", 7, "line 7: bad media"),
        (HEAD + "m=audio 4000 RTP//AVP 0\n", 7, "line 7: bad media"),
        ("v=1\n", 1, "line 1: bad version"),
        ("o=- 1 1 IN IP4 192.0.2.1\n", 1, "line 1: expected 'v=' line"),
        ("v=0\ns=-\n", 2, "line 2: expected 'o=' line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\nt=0 0\n", 3, "line 3: expected 's=' line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1 x\n", 2, "line 2: bad origin"),
        ("v=0\no=- x 1 IN IP4 192.0.2.1\n", 2, "session id 'x' is not a number"),
        ("v=0\no=- 1 1 IN IP4 host_name\n", 2, "line 2: bad origin"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\n", 2, "line 2: missing 's=' line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\n", 4, "line 4: missing 't=' line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nm=audio 1 RTP/AVP 0\n", 4, "line 4: missing 't=' line before"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nr=7d 1h 0\nt=0 0\n", 4, "line 4: 'r=' line before any"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0\n", 4, "line 4: bad timing"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nr=7x 1h 0\n", 5, "line 5: bad repeat"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nz=0\n", 5, "line 5: bad zone adjustment"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nz=0 1h\nz=0 1h\n", 6, "line 6: 'z=' line without"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\n", 5, "second session"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\ni=a\ni=b\n", 5, "line 5: second 'i=' line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nu=a\nu=b\n", 5, "line 5: second 'u=' line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nk=clear:x\nk=clear:y\n", 5, "line 5: second 'k=' line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 1 RTP/AVP 0\n", 5, "line 5: missing connection"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nfoo\n", 5, "line 5: not a <type>=<value> line 'foo'"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n a=x\n", 5, "line 5: not a <type>=<value>"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nA=x\n", 5, "line 5: unknown line type 'A='"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nv=0\n", 5, "line 5: unexpected 'v=' line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\na=x\x00\n", 5, "line 5: bad character"),
        ("", 1, "line 1: missing 'v=' line"),
        ("\n\n", 1, "line 1: missing 'v=' line"),
    ],
)
def test_malformed_line_is_named(text: str, line: int, message: str) -> None:
    with pytest.raises(SdpError) as caught:
        SessionDescription.parse(text)
    assert caught.value.line == line
    if message.startswith("line "):
        assert str(caught.value).startswith(message)
    else:
        assert message in str(caught.value)


def test_error_parts_for_a_sip_reason() -> None:
    with pytest.raises(SdpError) as caught:
        SessionDescription.parse(HEAD + "a=rtpmap:xx\n")
    error = caught.value
    assert (error.line, error.reason, error.text) == (7, "bad rtpmap", "a=rtpmap:xx")
    assert error.detail is not None
    assert "clock rate" in error.detail
    long_line = "a=rtpmap:" + "x" * 500
    with pytest.raises(SdpError) as caught:
        SessionDescription.parse(HEAD + long_line + "\n")
    assert len(str(caught.value)) < 250


def test_invalid_utf8_names_its_line() -> None:
    with pytest.raises(SdpError, match=r"^line 3: not UTF-8"):
        SessionDescription.parse(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=\xff\r\nt=0 0\r\n")


def test_building_invalid_values_raises_sdp_error() -> None:
    with pytest.raises(SdpError, match=r"^bad rtpmap 'a=rtpmap:xx'"):
        Attribute("rtpmap", "xx")
    with pytest.raises(SdpError, match="payload type 300"):
        RtpMap(300, "PCMU", 8000)
    with pytest.raises(SdpError, match="bad ice-pwd"):
        IceCredentials("abcd", "short")
    with pytest.raises(SdpError, match="conflicting direction"):
        build_media("audio", 4000, [Codec(0, "PCMU", 8000)], attributes=[Attribute("inactive")])
    with pytest.raises(SdpError, match="missing connection"):
        build_session(
            Origin.for_address("192.0.2.1", 1), [build_media("audio", 4000, [Codec(0, "PCMU", 8000)])]
        )


# --- tolerance ------------------------------------------------------------------------------------------


def test_harmless_deviations_are_accepted() -> None:
    sloppy = (
        "v=0 \r\n"
        "o=-  1   1 IN IP4 192.0.2.1\n"
        "s=\n"
        "\n"
        "a=tool:some  tool \t\r\n"  # session attribute before t= and c=, trailing blanks
        "t=0 0\n"
        "c=IN IP4 192.0.2.1\n"
        "m=audio 4000 RTP/AVP 0 8 \n"
        "a=rtpmap:0 PCMU/8000\n"
        "c=IN IP4 192.0.2.2\n"  # c= after a= in the media section
        "a=X-Vendor-Thing\n"
        "\r\n"
    )
    parsed = SessionDescription.parse(sloppy)
    assert parsed.origin.session_id == 1
    assert parsed.name == ""
    assert parsed.attribute("tool") == Attribute("tool", "some  tool")
    assert parsed.media[0].formats == ("0", "8")
    assert parsed.media[0].connections == (Connection("IN", "IP4", "192.0.2.2"),)
    assert parsed.serialize() == crlf(
        "v=0\n"
        "o=- 1 1 IN IP4 192.0.2.1\n"
        "s= \n"
        "c=IN IP4 192.0.2.1\n"
        "t=0 0\n"
        "a=tool:some  tool\n"
        "m=audio 4000 RTP/AVP 0 8\n"
        "c=IN IP4 192.0.2.2\n"
        "a=rtpmap:0 PCMU/8000\n"
        "a=X-Vendor-Thing\n"
    )


def test_unknown_attributes_kept_verbatim_in_order() -> None:
    lines = "a=zzz:1\na=rtcp-mux\na=aaa: spaced  value\na=x-empty:\na=rtpmap:0 PCMU/8000\na=flag\n"
    parsed = SessionDescription.parse(offer_with(lines))
    names = [(a.name, a.value) for a in parsed.media[0].attributes]
    assert names == [
        ("rtpmap", "101 telephone-event/8000"),
        ("zzz", "1"),
        ("rtcp-mux", None),
        ("aaa", " spaced  value"),
        ("x-empty", ""),
        ("rtpmap", "0 PCMU/8000"),
        ("flag", None),
    ]
    assert parsed.serialize() == crlf(offer_with(lines))


def test_full_session_level_lines_round_trip() -> None:
    text = crlf(
        "v=0\n"
        "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\n"
        "s=SDP Seminar\n"
        "i=A Seminar on the session description protocol\n"
        "u=http://www.example.com/seminars/sdp.pdf\n"
        "e=j.doe@example.com (Jane Doe)\n"
        "p=+1 617 555-6011\n"
        "c=IN IP4 224.2.17.12/127\n"
        "b=CT:1000\n"
        "t=2873397496 2873404696\n"
        "r=7d 1h 0 25h\n"
        "z=2882844526 -1h 2898848070 0\n"
        "t=0 0\n"
        "k=prompt\n"
        "a=recvonly\n"
        "m=audio 49170/2 RTP/AVP 0\n"
        "i=voice\n"
        "c=IN IP6 ff15::101/3\n"
        "b=AS:64\n"
        "b=TIAS:64000\n"
        "k=clear:secret\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\n"
        "c=IN IP6 2001:db8::1\n"
        "a=sctp-port:5000\n"
        "m=video 0 RTP/AVP\n"
    )
    parsed = SessionDescription.parse(text)
    assert parsed.serialize() == text
    first = parsed.times[0]
    assert first.repeats == (Repeat("7d", "1h", ("0", "25h")),)
    assert Repeat.seconds(first.repeats[0].interval) == 604800
    assert first.zone_adjustments == (ZoneAdjustment(2882844526, "-1h"), ZoneAdjustment(2898848070, "0"))
    assert parsed.connection == Connection("IN", "IP4", "224.2.17.12", ttl=127)
    audio, data, video = parsed.media
    assert audio.port_count == 2
    assert audio.bandwidths == (Bandwidth("AS", 64), Bandwidth("TIAS", 64000))
    assert audio.connections == (Connection("IN", "IP6", "ff15::101", address_count=3),)
    assert audio.key == "clear:secret"
    assert audio.information == "voice"
    assert data.codecs == ()
    assert data.formats == ("webrtc-datachannel",)
    assert video.is_rejected
    assert video.formats == ()
    assert parsed.direction_of(audio) is Direction.RECVONLY


def test_rfc4566_style_zone_line_after_time_without_repeat() -> None:
    parsed = SessionDescription.parse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nz=0 1h\n")
    assert parsed.times == (TimeDescription(zone_adjustments=(ZoneAdjustment(0, "1h"),)),)


def test_sdes_crypto_for_rtp_savp() -> None:
    parsed = SessionDescription.parse(
        offer_with(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\n"
        )
    )
    (crypto,) = parsed.media[0].cryptos
    assert crypto.suite == "AES_CM_128_HMAC_SHA1_80"
    assert crypto.key_params.startswith("inline:")


# --- properties -----------------------------------------------------------------------------------------

TOKEN_ALPHABET = "!#$%&'*+-." + string.digits + string.ascii_letters + "^_`{|}~"
tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=10)
ice_chars = string.ascii_letters + string.digits + "+/"
texts = st.text(st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]), max_size=20).filter(
    lambda text: text == text.rstrip(" \t")
)
ports = st.integers(0, 65535)
hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,10}\.(local|example\.com)", fullmatch=True)
ipv4 = st.ip_addresses(v=4).filter(lambda ip: not ip.is_multicast).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda ip: not ip.is_multicast).map(str)


@st.composite
def connections(draw: st.DrawFn) -> Connection:
    kind = draw(st.sampled_from(["ip4", "ip6", "mcast4", "mcast6", "fqdn"]))
    if kind == "ip4":
        return Connection("IN", "IP4", draw(ipv4))
    if kind == "ip6":
        return Connection("IN", "IP6", draw(ipv6))
    if kind == "fqdn":
        return Connection("IN", draw(st.sampled_from(["IP4", "IP6"])), draw(hostnames))
    count = draw(st.none() | st.integers(1, 9))
    if kind == "mcast4":
        address = str(ipaddress.IPv4Address(draw(st.integers(0xE0000000, 0xEFFFFFFF))))
        return Connection("IN", "IP4", address, draw(st.integers(0, 255)), count)
    return Connection("IN", "IP6", f"ff15::{draw(st.integers(1, 0xFFFF)):x}", address_count=count)


candidates = st.builds(
    Candidate,
    foundation=st.text(ice_chars, min_size=1, max_size=32),
    component=st.integers(1, 256),
    transport=st.sampled_from(["udp", "UDP", "tcp"]),
    priority=st.integers(0, 2**32 - 1),
    address=ipv4 | ipv6 | hostnames,
    port=ports,
    type=st.sampled_from(["host", "srflx", "prflx", "relay"]),
    related_address=st.none() | ipv4,
    related_port=st.none() | ports,
    extensions=st.lists(
        st.tuples(
            tokens.filter(lambda name: name not in ("raddr", "rport")),
            st.text(string.printable[:94], min_size=1, max_size=8),
        ),
        max_size=3,
    ).map(tuple),
)
fingerprints = st.sampled_from(["sha-1", "sha-256", "sha-512"]).flatmap(
    lambda name: st.binary(
        min_size={"sha-1": 20, "sha-256": 32, "sha-512": 64}[name],
        max_size={"sha-1": 20, "sha-256": 32, "sha-512": 64}[name],
    ).map(lambda digest: Fingerprint(name, digest.hex(":").upper()))
)
payload_types = st.integers(0, 127)
known_attributes = st.one_of(
    st.builds(
        RtpMap,
        payload_types,
        tokens.filter(lambda t: "/" not in t),
        st.integers(1, 96000),
        st.none() | st.integers(1, 8),
    ),
    st.builds(
        Fmtp,
        payload_types.map(str),
        st.from_regex(r"[a-z0-9-]+(=[0-9]+)?(;[a-z]+=[0-9]+){0,3}", fullmatch=True),
    ),
    st.builds(
        RtcpFb,
        payload_types.map(str) | st.just("*"),
        tokens,
        st.none() | st.sampled_from(["pli", "fir", "100"]),
    ),
    candidates,
    fingerprints,
    st.builds(Rtcp, ports, st.none() | connections()),
    st.builds(Group, st.sampled_from(["BUNDLE", "LS"]), st.lists(tokens, max_size=3).map(tuple)),
    st.builds(Msid, tokens, st.none() | tokens),
    st.builds(Ssrc, st.integers(0, 2**32 - 1), tokens.filter(lambda t: ":" not in t), st.none() | texts),
    st.builds(
        ExtMap,
        st.integers(1, 14),
        st.from_regex(r"urn:[a-z:-]{1,20}", fullmatch=True),
        st.none() | st.sampled_from(Direction),
        st.none() | st.just("attrs"),
    ),
    st.builds(
        Crypto,
        st.integers(1, 9),
        tokens,
        st.just("inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj"),
        st.lists(st.sampled_from(["UNENCRYPTED_SRTP", "KDR=1"]), max_size=2).map(tuple),
    ),
).map(lambda typed: typed.to_attribute())
KNOWN = {
    "rtpmap",
    "fmtp",
    "rtcp-fb",
    "candidate",
    "fingerprint",
    "setup",
    "rtcp",
    "group",
    "msid",
    "ssrc",
    "extmap",
    "crypto",
    "ptime",
    "maxptime",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "mid",
    "rtcp-mux",
    "rtcp-rsize",
    "ice-lite",
    "end-of-candidates",
    "sendrecv",
    "sendonly",
    "recvonly",
    "inactive",
}
DIRECTIONS = {direction.value for direction in Direction}
simple_attributes = st.one_of(
    st.sampled_from(list(Direction)).map(lambda d: Attribute(d.value)),
    st.sampled_from(["rtcp-mux", "rtcp-rsize", "ice-lite", "end-of-candidates"]).map(Attribute),
    st.sampled_from(list(Setup)).map(lambda s: Attribute("setup", s.value)),
    st.integers(1, 200).map(lambda ms: Attribute("ptime", str(ms))),
    st.text(ice_chars, min_size=4, max_size=8).map(lambda u: Attribute("ice-ufrag", u)),
    st.text(ice_chars, min_size=22, max_size=30).map(lambda p: Attribute("ice-pwd", p)),
    tokens.map(lambda mid: Attribute("mid", mid)),
    st.builds(Attribute, tokens.filter(lambda name: name not in KNOWN), st.none() | texts),
)
attributes = (
    st.lists(known_attributes | simple_attributes, max_size=8)
    .filter(lambda items: len({a.name for a in items if a.name in DIRECTIONS}) <= 1)
    .map(tuple)
)


@st.composite
def media_descriptions(draw: st.DrawFn) -> MediaDescription:
    rtp = draw(st.booleans())
    port = draw(ports)
    if rtp:
        proto = draw(st.sampled_from(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "RTP/AVPF"]))
        formats = draw(st.lists(payload_types.map(str), min_size=0 if port == 0 else 1, max_size=6))
    else:
        proto = draw(st.sampled_from(["UDP/DTLS/SCTP", "udptl", "TCP/MSRP"]))
        formats = draw(st.lists(tokens, min_size=0 if port == 0 else 1, max_size=3))
    return MediaDescription(
        kind=draw(st.sampled_from(["audio", "video", "application", "image"])),
        port=port,
        proto=proto,
        formats=tuple(formats),
        port_count=draw(st.none() | st.integers(1, 4)),
        information=draw(st.none() | texts),
        connections=tuple(draw(st.lists(connections(), min_size=1, max_size=2))),
        bandwidths=tuple(draw(st.lists(st.builds(Bandwidth, tokens, st.integers(0, 10**9)), max_size=2))),
        key=draw(st.none() | texts),
        attributes=draw(attributes),
    )


repeats = st.builds(
    Repeat,
    st.from_regex(r"[1-9][0-9]{0,5}[dhms]?", fullmatch=True),
    st.from_regex(r"[0-9]{1,5}[dhms]?", fullmatch=True),
    st.lists(st.from_regex(r"[0-9]{1,5}[dhms]?", fullmatch=True), min_size=1, max_size=3).map(tuple),
)
zones = st.builds(
    ZoneAdjustment, st.integers(0, 2**32), st.from_regex(r"-?[0-9]{1,4}[dhms]?", fullmatch=True)
)
sessions = st.builds(
    SessionDescription,
    origin=st.builds(
        Origin,
        tokens,
        st.integers(0, 2**64),
        st.integers(0, 2**64),
        st.just("IN"),
        st.just("IP4"),
        ipv4 | hostnames,
    ),
    name=texts,
    information=st.none() | texts,
    uri=st.none() | texts,
    emails=st.lists(texts, max_size=2).map(tuple),
    phones=st.lists(texts, max_size=2).map(tuple),
    connection=st.none() | connections(),
    bandwidths=st.lists(st.builds(Bandwidth, tokens, st.integers(0, 10**9)), max_size=2).map(tuple),
    times=st.lists(
        st.builds(
            TimeDescription,
            st.integers(0, 2**40),
            st.integers(0, 2**40),
            st.lists(repeats, max_size=2).map(tuple),
            st.lists(zones, max_size=2).map(tuple),
        ),
        min_size=1,
        max_size=2,
    ).map(tuple),
    key=st.none() | texts,
    attributes=attributes,
    media=st.lists(media_descriptions(), max_size=3).map(tuple),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(sessions)
def test_valid_sessions_round_trip(session: SessionDescription) -> None:
    wire = session.serialize()
    parsed = SessionDescription.parse(wire)
    assert parsed == session
    assert parsed.serialize() == wire
    assert SessionDescription.parse(wire.replace("\r\n", "\n")) == session


@settings(max_examples=500)
@given(st.text())
def test_arbitrary_text_raises_only_sdp_error(text: str) -> None:
    with contextlib.suppress(SdpError):
        SessionDescription.parse(text)


@settings(max_examples=300)
@given(st.binary())
def test_arbitrary_bytes_raise_only_sdp_error(data: bytes) -> None:
    with contextlib.suppress(SdpError):
        SessionDescription.parse(data)


SDP_LINE_PREFIXES = [
    *(f"{letter}=" for letter in "vosiuepcbtrzkm"),
    *(f"a={name}:" for name in sorted(KNOWN)),
    *(f"a={name}" for name in sorted(KNOWN)),
    "c=IN IP4 ",
    "c=IN IP6 ",
    "m=audio ",
    "a=candidate:1 1 udp 1 ",
]


@settings(max_examples=1000)
@given(
    st.sampled_from([CHROMIUM_OFFER, ASTERISK_OFFER, SIPP_OFFER]),
    st.lists(
        st.tuples(
            st.integers(0, 60),
            st.sampled_from(["replace", "insert", "mutate"]),
            st.sampled_from(SDP_LINE_PREFIXES),
            st.text(max_size=30) | st.from_regex(r"[0-9a-zA-Z./:* -]{0,30}", fullmatch=True),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_descriptions_raise_only_sdp_error(base: str, edits: list[tuple[int, str, str, str]]) -> None:
    lines = base.split("\n")
    for index, action, prefix, noise in edits:
        at = index % len(lines)
        if action == "replace":
            lines[at] = prefix + noise
        elif action == "insert":
            lines.insert(at, prefix + noise)
        else:
            line = lines[at]
            cut = len(noise) % (len(line) + 1)
            lines[at] = line[:cut] + noise + line[cut + len(noise) % 3 :]
    text = "\n".join(lines)
    try:
        parsed = SessionDescription.parse(text)
    except SdpError as error:
        failure: SdpError | None = error
    else:
        failure = None
    if failure is not None:
        assert failure.line is not None
        return
    # What parses must serialize and parse back to the same description.
    assert SessionDescription.parse(parsed.serialize()) == parsed
    for media in parsed.media:
        media.codecs  # noqa: B018 - typed access must not fail on anything the parser accepted
        parsed.is_on_hold(media)
        parsed.ice_credentials_of(media)
