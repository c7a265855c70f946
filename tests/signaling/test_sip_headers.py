"""Header fields: the container, compact forms, list splitting, name-addr, Via and the scalar values."""

from __future__ import annotations

import pytest

from services.signaling.sip import (
    COMPACT_FORMS,
    STAR,
    Address,
    Headers,
    SipParseError,
    SipUri,
    Via,
    canonical_name,
    parse_address,
    parse_contacts,
    parse_via,
    split_list,
)
from services.signaling.sip.headers import (
    MAX_UINT32,
    parse_call_id,
    parse_content_length,
    parse_cseq,
    parse_expires,
    parse_max_forwards,
    parse_media_type,
    parse_option_tags,
)
from services.signaling.sip.parameters import Parameters, parse_header_parameters

# --- the container -------------------------------------------------------------------------------


def test_lookup_is_case_insensitive_and_knows_compact_forms() -> None:
    headers = Headers(
        [("v", "SIP/2.0/UDP a.example.com"), ("VIA", "SIP/2.0/UDP b.example.com"), ("i", "x@y")]
    )
    assert headers.get_all("Via") == ["SIP/2.0/UDP a.example.com", "SIP/2.0/UDP b.example.com"]
    assert headers.get("call-id") == "x@y"
    assert headers.get("I") == "x@y"
    assert "CALL-ID" in headers
    assert headers.count("v") == 2
    assert list(headers) == [
        ("Via", "SIP/2.0/UDP a.example.com"),
        ("Via", "SIP/2.0/UDP b.example.com"),
        ("Call-ID", "x@y"),
    ]


@pytest.mark.parametrize(("short", "long"), sorted(COMPACT_FORMS.items()))
def test_every_compact_form_maps_to_its_long_name(short: str, long: str) -> None:
    assert canonical_name(short) == long
    assert canonical_name(short.upper()) == long
    headers = Headers([(short, "value")])
    assert headers.get(long) == "value"
    assert headers.get(long.upper()) == "value"


def test_unknown_names_keep_their_spelling() -> None:
    assert canonical_name("X-EchoDesk-Tenant") == "X-EchoDesk-Tenant"
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    headers = Headers([("X-EchoDesk-Tenant", "t1")])
    assert headers.get("x-echodesk-tenant") == "t1"
    assert headers.items() == [("X-EchoDesk-Tenant", "t1")]


def test_order_is_kept_across_names() -> None:
    headers = Headers([("Route", "<sip:a>"), ("To", "<sip:b@c>"), ("Route", "<sip:d>")])
    assert [name for name, _ in headers] == ["Route", "To", "Route"]


def test_set_replaces_in_place_and_remove_counts() -> None:
    headers = Headers([("A-A", "1"), ("Contact", "<sip:a@b>"), ("B-B", "2"), ("m", "<sip:c@d>")])
    headers.set("contact", "<sip:e@f>")
    assert headers.items() == [("A-A", "1"), ("Contact", "<sip:e@f>"), ("B-B", "2")]
    headers.set("Expires", "60")
    assert headers.items()[-1] == ("Expires", "60")
    assert headers.remove("CONTACT") == 1
    assert headers.remove("Contact") == 0
    assert "Contact" not in headers
    assert len(headers) == 3


@pytest.mark.parametrize(
    ("name", "value"), [("Bad Name", "x"), ("", "x"), ("X-A", "a\r\nVia: evil"), ("X-A", "a\nb")]
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="header"):
        Headers().add(name, value)


def test_values_splits_lists_but_not_authentication_headers() -> None:
    headers = Headers(
        [
            ("Allow", "INVITE, ACK,CANCEL"),
            ("Allow", "BYE"),
            ("Supported", ""),
            ("Authorization", 'Digest username="a", realm="b", nonce="c"'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
        ]
    )
    assert headers.values("allow") == ["INVITE", "ACK", "CANCEL", "BYE"]
    assert headers.values("Supported") == []
    assert headers.values("Authorization") == ['Digest username="a", realm="b", nonce="c"']
    assert headers.values("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_typed_views_are_cached_until_the_header_changes() -> None:
    calls: list[list[str]] = []

    def parser(values: list[str]) -> int:
        calls.append(values)
        return len(values)

    headers = Headers([("X-N", "1")])
    assert headers.typed("x-n", parser) == 1
    assert headers.typed("X-N", parser) == 1
    assert len(calls) == 1
    headers.add("X-N", "2")
    assert headers.typed("x-n", parser) == 2
    headers.add("X-Other", "3")
    assert headers.typed("x-n", parser) == 2
    assert len(calls) == 2
    headers.remove("X-N")
    assert headers.typed("x-n", parser) == 0


def test_copy_is_independent_and_equal() -> None:
    headers = Headers([("To", "<sip:a@b>")])
    twin = headers.copy()
    assert twin == headers
    twin.add("From", "<sip:c@d>")
    assert twin != headers
    assert headers.items() == [("To", "<sip:a@b>")]


# --- list splitting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("a", ["a"]),
        ("a, b ,c", ["a", "b", "c"]),
        ('"Watson, Thomas" <sip:t@x>, <sip:u@y>', ['"Watson, Thomas" <sip:t@x>', "<sip:u@y>"]),
        ('"a \\", b" <sip:a@b>, c', ['"a \\", b" <sip:a@b>', "c"]),
        ("<sip:a@b?x=1,2>;p, <sip:c@d>", ["<sip:a@b?x=1,2>;p", "<sip:c@d>"]),
        ("a,,b,", ["a", "", "b", ""]),
        ('x="1,2";y, z', ['x="1,2";y', "z"]),
    ],
)
def test_split_list_respects_quotes_and_angle_brackets(value: str, parts: list[str]) -> None:
    assert split_list(value) == parts


# --- parameters ----------------------------------------------------------------------------------


def test_header_parameters_allow_lws_around_separators() -> None:
    params = parse_header_parameters(' ;   tag    = 1918181833n ; lr ;x="a;b"')
    assert params.pairs == (("tag", "1918181833n"), ("lr", None), ("x", '"a;b"'))
    assert params.get_unquoted("x") == "a;b"
    assert str(params) == ';tag=1918181833n;lr;x="a;b"'


@pytest.mark.parametrize("text", [";", ";;", "; ;x", ";a=", ";a b", "junk", ";a=b c", ';a="open', ";a=<b>"])
def test_malformed_header_parameters_are_refused(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_header_parameters(text)


def test_parameters_are_immutable_values() -> None:
    params = Parameters([("Tag", "1")])
    changed = params.with_param("tag", "2").with_param("q", "0.5")
    assert params.get("tag") == "1"
    assert changed.pairs == (("tag", "2"), ("q", "0.5"))
    assert changed.without("TAG").pairs == (("q", "0.5"),)
    with pytest.raises(KeyError):
        params["missing"]


# --- name-addr / addr-spec -----------------------------------------------------------------------


def test_name_addr_with_quoted_display_name_and_escapes() -> None:
    address = parse_address('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com> ; tag = 98asjd8')
    assert address.display_name == 'J Rosenberg \\"'
    assert isinstance(address.uri, SipUri)
    assert address.uri.user == "jdrosen"
    assert address.tag == "98asjd8"


def test_display_name_of_tokens_with_and_without_lws_before_the_bracket() -> None:
    assert parse_address("caller<sip:caller@example.com>;tag=323").display_name == "caller"
    address = parse_address("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>")
    assert address.display_name == "token1~` token2'+_ token3*%!.-"


def test_addr_spec_parameters_belong_to_the_header() -> None:
    # RFC 3261 20.10: without angle brackets every ;param is a header parameter.
    address = parse_address("sip:+19725552222@gw1.example.net;unknownparam;tag=1")
    assert isinstance(address.uri, SipUri)
    assert not address.uri.params
    assert "unknownparam" in address.params
    assert address.tag == "1"
    bracketed = parse_address("<sip:+19725552222@gw1.example.net;unknownparam>;tag=1")
    assert isinstance(bracketed.uri, SipUri)
    assert "unknownparam" in bracketed.uri.params
    assert "unknownparam" not in bracketed.params


def test_other_schemes_in_addresses() -> None:
    assert str(parse_address("isbn:2983792873").uri) == "isbn:2983792873"
    assert str(parse_address("<http://www.example.com>;tag=3234233").uri) == "http://www.example.com"


def test_quoted_display_name_holding_special_characters() -> None:
    address = parse_address('"Watson, <Thomas>; \\"Tom\\"" <sip:t.watson@example.org>')
    assert address.display_name == 'Watson, <Thomas>; "Tom"'
    assert str(address) == '"Watson, <Thomas>; \\"Tom\\"" <sip:t.watson@example.org>'


@pytest.mark.parametrize(
    "value",
    [
        "",
        '"Mr. J. User <sip:j.user@example.com>',
        '"Watson, Thomas" < sip:t.watson@example.org >',
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "sip:a,b@example.com",
        "<sip:a@example.com",
        "<sip:a@example.com>junk",
        '"Joe" <sip:joe@example.org>;;;;',
        '"unterminated <sip:a@b>',
        "<sip:a@b>;tag=",
    ],
)
def test_malformed_addresses_are_refused(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_address(value)


def test_address_serializes_as_name_addr_and_sets_tags() -> None:
    address = parse_address("sip:alice@example.com")
    assert str(address) == "<sip:alice@example.com>"
    tagged = address.with_tag("abc")
    assert str(tagged) == "<sip:alice@example.com>;tag=abc"
    assert address.tag is None
    assert parse_address(str(tagged)) == tagged


def test_display_name_cannot_carry_a_line_break() -> None:
    address = Address(parse_address("sip:a@b").uri, "evil\r\nVia: x")
    assert "\r" not in str(address)
    assert "\n" not in str(address)
    assert parse_address(str(address)).display_name == "evil  Via: x"


def test_contacts_star_and_lists() -> None:
    assert parse_contacts(["*"]) == STAR
    assert parse_contacts([]) == ()
    contacts = parse_contacts(['<sip:a@b>;q=0.7;expires=60, "B" <sip:c@d>;q=1', "<sip:e@f>"])
    assert contacts != STAR
    assert [str(c.uri) for c in contacts] == ["sip:a@b", "sip:c@d", "sip:e@f"]
    assert contacts[0].expires == 60
    overlarge = parse_contacts(["<sip:a@b>;expires=99999999999999999999"])
    assert overlarge != STAR
    assert overlarge[0].expires == MAX_UINT32


@pytest.mark.parametrize(
    "values",
    [
        ["*, <sip:a@b>"],
        ["*", "*"],
        ["<sip:a@b>;q=2"],
        ["<sip:a@b>;q=0.1234"],
        ["<sip:a@b>;expires=-1"],
        ["<sip:a@b>,"],
    ],
)
def test_malformed_contacts_are_refused(values: list[str]) -> None:
    with pytest.raises(SipParseError):
        parse_contacts(values)


# --- Via -----------------------------------------------------------------------------------------


def test_via_with_rport_requested_and_filled() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK776asdhds;rport")
    assert (via.protocol, via.version, via.transport) == ("SIP", "2.0", "UDP")
    assert (via.host, via.port, via.sent_by) == ("192.0.2.1", 5070, "192.0.2.1:5070")
    assert via.branch == "z9hG4bK776asdhds"
    assert via.rport_requested
    assert via.rport is None
    answered = via.with_param("received", "203.0.113.9").with_param("rport", "40112")
    assert answered.rport == 40112
    assert answered.received == "203.0.113.9"
    assert (
        str(answered) == "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK776asdhds;rport=40112;received=203.0.113.9"
    )
    assert parse_via(str(answered)) == answered


def test_via_with_lws_everywhere_the_grammar_allows_it() -> None:
    via = parse_via("SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239")
    assert via.transport == "UDP"
    assert via.host == "192.168.255.111"
    assert via.branch == "z9hG4bK30239"
    assert parse_via("SIP/2.0/TCP host.example.com : 5061 ;ttl=16;maddr=224.2.0.1").port == 5061


def test_via_ipv6_sent_by_and_received() -> None:
    via = parse_via("SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKx;received=2001:db8::1")
    assert via.host == "[2001:db8::9]"
    assert via.port == 5061
    assert via.received == "2001:db8::1"


def test_via_transport_is_upper_case_and_any_token() -> None:
    assert parse_via("SIP/2.0/ws df7jal23ls0d.invalid;branch=z9hG4bKx").transport == "WS"
    assert parse_via("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKx").transport == "UNKNOWN"
    assert parse_via("SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw").version == "7.0"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDPhost",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host:",
        "SIP/2.0/UDP ho st",
        "SIP/2.0/UDP 192.0.2.15;;",
        "SIP/2.0/UDP host;branch",
        "SIP/2.0/UDP host;branch=",
        'SIP/2.0/UDP host;branch="quoted"',
        "SIP/2.0/UDP host;received=not-an-ip",
        "SIP/2.0/UDP host;rport=x",
        "SIP/2.0/UDP host;ttl=256",
        "SIP/2.0/UDP host;maddr=-x",
        "SIP/2.0/UDP [::1;branch=z9hG4bKx",
    ],
)
def test_malformed_vias_are_refused(value: str) -> None:
    with pytest.raises(SipParseError, match="Bad Via header"):
        parse_via(value)


def test_via_equality_ignores_host_case() -> None:
    assert parse_via("SIP/2.0/UDP Host.Example.com;branch=z9hG4bKa") == Via(
        "UDP", "host.example.com", None, Parameters([("branch", "z9hG4bKa")])
    )


# --- scalar values -------------------------------------------------------------------------------


def test_cseq() -> None:
    assert (parse_cseq("0009 INVITE").seq, parse_cseq("0009 INVITE").method) == (9, "INVITE")
    assert parse_cseq("4294967295\t  REGISTER").seq == MAX_UINT32
    assert str(parse_cseq("1 OPTIONS")) == "1 OPTIONS"
    for bad in (
        "4294967296 INVITE",
        "36893488147419103232 REGISTER",
        "1",
        "INVITE 1",
        "-1 BYE",
        "1 BY E",
        "1 ",
    ):
        with pytest.raises(SipParseError, match="Bad CSeq header"):
            parse_cseq(bad)
    with pytest.raises(SipParseError):
        parse_cseq("1" * 5000 + " INVITE")


def test_max_forwards_content_length_expires_call_id() -> None:
    assert parse_max_forwards("0068") == 68
    for bad in ("256", "300", "-1", "", "7x"):
        with pytest.raises(SipParseError, match="Max-Forwards"):
            parse_max_forwards(bad)
    assert parse_content_length("0") == 0
    for bad in ("-999", "", "1.5", "١٢"):
        with pytest.raises(SipParseError, match="Content-Length"):
            parse_content_length(bad)
    assert parse_expires("3600") == 3600
    assert parse_expires("1" + "0" * 100) == MAX_UINT32
    with pytest.raises(SipParseError):
        parse_expires("Thu, 01 Dec 2040 16:00:00 GMT")
    assert parse_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{") != ""
    for bad in ("a b", "", "a@b@c", "a;b"):
        with pytest.raises(SipParseError, match="Call-ID"):
            parse_call_id(bad)


def test_media_types_and_option_tags() -> None:
    media, params = parse_media_type("Multipart/Mixed ; boundary=7a9cbec02ceef655")
    assert media == "multipart/mixed"
    assert params.get("boundary") == "7a9cbec02ceef655"
    with pytest.raises(SipParseError):
        parse_media_type("application")
    assert parse_option_tags(["100rel, timer", "replaces"]) == ("100rel", "timer", "replaces")
    assert parse_option_tags([""]) == ()
    with pytest.raises(SipParseError):
        parse_option_tags(["a b"])
