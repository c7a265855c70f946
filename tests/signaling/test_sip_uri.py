"""SIP and other URIs: parsing, serialization, escapes and the comparison rules of RFC 3261 19.1.4."""

from __future__ import annotations

import pytest

from services.signaling.sip import AbsoluteUri, SipParseError, SipUri, UriParameters, parse_uri
from services.signaling.sip.uri import escape_user, unescape


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


def test_components_of_a_full_sip_uri() -> None:
    uri = sip("sips:alice:secret@Atlanta.example.com:5061;transport=TCP;lr;maddr=239.255.255.1?subject=hi&x=")
    assert uri.scheme == "sips"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "Atlanta.example.com"
    assert uri.port == 5061
    assert uri.params.pairs == (("transport", "TCP"), ("lr", None), ("maddr", "239.255.255.1"))
    assert uri.transport == "tcp"
    assert "LR" in uri.params
    assert uri.params.get("Transport") == "TCP"
    assert uri.params.get("lr") is None
    assert uri.headers == (("subject", "hi"), ("x", ""))


@pytest.mark.parametrize(
    "text",
    [
        "sip:example.com",
        "sip:alice@example.com",
        "SIP:alice@example.com",
        "sip:+995555123456@pbx.example.com;user=phone",
        "sip:192.0.2.1:5060",
        "sip:alice@[2001:db8::1]:5070;transport=tls",
        "sip:[::1]",
        "sip:example.com.",
        "sip:1-2.example.com",
        "sip:qv8m3l2k@8v4k2n1q5s3t.invalid;transport=ws;ob",
        "sip:user;par=u%40example.net@example.com",
        "sip:%61lice@example.com;%6C%72",
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:carol@chicago.com?Subject=next%20meeting&priority=urgent",
    ],
)
def test_valid_sip_uris_serialize_back_to_their_text(text: str) -> None:
    # The scheme is case-insensitive and written in lower case; everything else as received.
    expected = "sip" + text[3:] if text.startswith("SIP:") else text
    assert str(sip(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "sip:@example.com",
        "sip:alice@",
        "sip:alice@example.com:",
        "sip:alice@example.com:65536",
        "sip:alice@example.com:5o60",
        "sip:alice@exa mple.com",
        "sip:alice@-example.com",
        "sip:alice@example-.com",
        "sip:alice@example.123",
        "sip:alice@1.2.3.4.5",
        "sip:alice@256.1.1.1",
        "sip:alice@[2001:db8::1",
        "sip:alice@[not:v6]",
        "sip:alice@[fe80::1%eth0]",
        "sip:alice@example.com;;lr",
        "sip:alice@example.com;transport=",
        "sip:alice@example.com;a b",
        "sip:alice@example.com?subject",
        "sip:alice@example.com?=x",
        "sip:al ice@example.com",
        "sip:al%4@example.com",
        "sip:alice:pass:word@example.com",
        "sip:alice@example.com>",
        "<sip:alice@example.com>",
        ":opaque",
        "1tel:+123",
        "tel:",
        "tel:+1 212",
        "mailto:<a@b>",
    ],
)
def test_malformed_uris_raise_sip_parse_error(text: str) -> None:
    with pytest.raises(SipParseError, match=r"^Bad URI$"):
        parse_uri(text)


@pytest.mark.parametrize(
    ("text", "scheme", "rest"),
    [
        ("tel:+1-212-555-0101;phone-context=example.com", "tel", "+1-212-555-0101;phone-context=example.com"),
        ("mailto:agent@example.com", "mailto", "agent@example.com"),
        ("urn:uuid:5ab5ba43-ff6c-4e5d-9c4b-0a8a4a1c1f3e", "urn", "uuid:5ab5ba43-ff6c-4e5d-9c4b-0a8a4a1c1f3e"),
        ("soap.beep://192.0.2.103:3002", "soap.beep", "//192.0.2.103:3002"),
        ("nobodyKnowsThisScheme:totallyopaquecontent", "nobodyknowsthisscheme", "totallyopaquecontent"),
        ("http://www.example.com", "http", "//www.example.com"),
    ],
)
def test_other_schemes_are_opaque_absolute_uris(text: str, scheme: str, rest: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, AbsoluteUri)
    assert (uri.scheme, uri.rest) == (scheme, rest)
    assert str(uri) == f"{scheme}:{rest}"
    assert uri == AbsoluteUri(scheme, rest)


def test_escaped_components_stay_escaped_and_unescape_on_demand() -> None:
    uri = sip("sip:sips%3Auser%40example.com@example.net")
    assert uri.user == "sips%3Auser%40example.com"
    assert unescape(uri.user) == "sips:user@example.com"
    assert uri.host == "example.net"
    nul = sip("sip:null-%00-null@example.com")
    assert nul.user is not None
    assert unescape(nul.user) == "null-\x00-null"


def test_escaped_parameter_names_are_found_by_their_text() -> None:
    # RFC 4475 3.1.1.3: ;%6C%72 is the lr parameter, n%61me=v%61lue%25%34%31 is name=value%41.
    uri = sip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert "lr" in uri.params
    value = uri.params.get("name")
    assert value is not None
    assert unescape(value) == "value%41"
    assert isinstance(uri.params, UriParameters)


def test_user_part_may_hold_semicolons_question_marks_and_slashes() -> None:
    # RFC 4475 3.1.1.9: the parameters before "@" belong to the user part.
    uri = sip("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u%40example.net"
    assert not uri.params


def test_escape_user_round_trips_through_unescape() -> None:
    text = "an agent; with spaces@and/ünïcode"
    escaped = escape_user(text)
    assert " " not in escaped
    assert "@" not in escaped
    assert unescape(escaped) == text
    assert sip(f"sip:{escaped}@example.com").user == escaped


def test_address_of_record_drops_parameters_and_unescapes() -> None:
    uri = sip("sip:%61gent100@PBX.Example.com;transport=ws?x=y")
    assert uri.address_of_record == "sip:agent100@pbx.example.com"
    assert sip("sips:example.com:5061").address_of_record == "sips:example.com:5061"


def test_replace_changes_one_component() -> None:
    uri = sip("sip:alice@example.com;transport=ws")
    moved = uri.replace(host="192.0.2.7", port=5080)
    assert str(moved) == "sip:alice@192.0.2.7:5080;transport=ws"
    assert str(uri) == "sip:alice@example.com;transport=ws"


# RFC 3261 19.1.4, the examples given there.
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice@atlanta.com", "sip:alice:pw@atlanta.com"),
    ("sip:atlanta.com", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com", "sip:alice@atlanta.com;maddr=192.0.2.1"),
    ("sip:alice@atlanta.com;lr", "sip:alice@atlanta.com;lr=on"),
    # An escaped reserved character is not the character (19.1.2).
    ("sip:a%3Bb@atlanta.com", "sip:a;b@atlanta.com"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent_uris_compare_equal_with_equal_hashes(a: str, b: str) -> None:
    assert sip(a) == sip(b)
    assert sip(b) == sip(a)
    assert hash(sip(a)) == hash(sip(b))


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_different_uris_compare_unequal(a: str, b: str) -> None:
    assert sip(a) != sip(b)
    assert sip(b) != sip(a)


def test_sip_and_absolute_uris_never_compare_equal() -> None:
    assert parse_uri("sip:alice@example.com") != parse_uri("tel:+15551234")
    assert parse_uri("tel:+15551234") == parse_uri("TEL:+15551234")


def test_parsing_the_same_text_twice_gives_equal_values() -> None:
    text = "sip:alice@example.com;transport=ws"
    assert parse_uri(text) == parse_uri(text)
    assert str(parse_uri(text)) == text
