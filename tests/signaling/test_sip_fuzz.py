"""Property tests of the SIP message layer: the parser raises nothing but SipParseError on any
input, and generated valid messages survive encode -> parse unchanged."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.signaling.sip import (
    AbsoluteUri,
    Address,
    CSeq,
    FramingError,
    MessageFrame,
    Parameters,
    ParseLimits,
    Request,
    Response,
    SipParseError,
    SipUri,
    StreamFramer,
    UriParameters,
    Via,
    check_request,
    check_response,
    error_response,
    make_response,
    parse_message,
    parse_uri,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEEDS = [
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:agent100@pbx.example.com>\r\n"
    b'From: "Agent 100" <sip:agent100@pbx.example.com>;tag=k1s3n5q7vd\r\n'
    b"Call-ID: 5nqc8i0f6ojbrp4cs0e6fu\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:qv8m3l2k@df7jal23ls0d.invalid;transport=ws>;"
    b'+sip.instance="<urn:uuid:5ab5>";expires=600\r\n'
    b"Expires: 600\r\n"
    b"Require: path\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"INVITE sip:%2B995555@[2001:db8::1]:5070;user=phone SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;received=192.0.2.9 ,SIP/2.0/TCP h.example.com\r\n"
    b"t: sip:bob@example.com\r\n"
    b"f: Alice <sip:alice@example.com>;tag=1\r\n"
    b"i: abc@def\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: *\r\n"
    b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Accept: application/sdp;q=0.5, */*\r\n"
    b"c: application/sdp\r\n"
    b"Content-Disposition: session;handling=optional\r\n"
    b"l: 10\r\n\r\nv=0\r\nab\r\n",
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
    b"To: <sip:bob@example.com>;tag=2\r\n"
    b"From: <sip:alice@example.com>;tag=1\r\n"
    b"Call-ID: abc\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Record-Route: <sip:p1.example.com;lr>\r\n"
    b"Content-Length: 0\r\n\r\n",
]
# Bytes that mean something to the grammar, so that mutations reach deep into the parsers.
SPECIAL = b'\r\n \t:;,<>"\\%@=?[]/.*+-0123456789SIPsipv'


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        if kind == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=4) | st.sampled_from([bytes([b]) for b in SPECIAL])
            )
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "replace" and at < len(data):
            data[at] = draw(st.sampled_from(list(SPECIAL)) | st.integers(0, 255))
        else:
            data[at:at] = data[max(0, at - 20) : at]
    return bytes(data)


def exercise(message: Request | Response) -> None:
    """Read every typed view and run every helper: only SipParseError may come out of the views."""
    for view in ("vias", "from_", "to", "call_id", "cseq", "max_forwards", "contacts", "routes",
                 "record_routes", "content_type", "expires", "require", "supported"):  # fmt: skip
        with contextlib.suppress(SipParseError):
            getattr(message, view)
    encoded = message.encode()
    assert parse_message(encoded).encode() == encoded
    if isinstance(message, Request):
        answer = check_request(
            message,
            supported_methods=("INVITE", "REGISTER", "OPTIONS", "ACK", "BYE", "CANCEL"),
            supported_extensions=("path",),
            accepted_content_types=("application/sdp",),
            relay=True,
        )
        assert answer is None or 100 <= answer.status_code <= 699
        if answer is not None:
            answer.encode()
        make_response(message, 200).encode()
    else:
        check_response(message)


def parse_or_reject(data: bytes, limits: ParseLimits | None = None) -> None:
    error: SipParseError | None = None
    try:
        message = parse_message(data) if limits is None else parse_message(data, limits)
    except SipParseError as exc:
        error = exc
    if error is None:
        exercise(message)
        return
    assert error.reason
    assert error.status_code in (400, 513)
    response = error_response(error)
    if response is not None:
        response.encode()


@FUZZ
@given(st.binary(max_size=1500))
def test_arbitrary_bytes_only_raise_sip_parse_error(data: bytes) -> None:
    parse_or_reject(data)


@FUZZ
@given(mutated())
def test_mutated_messages_only_raise_sip_parse_error(data: bytes) -> None:
    parse_or_reject(data)
    parse_or_reject(
        data, ParseLimits(max_message_bytes=600, max_header_bytes=300, max_headers=6, max_line_length=60)
    )


@FUZZ
@given(st.text(max_size=80))
def test_arbitrary_uri_text_only_raises_sip_parse_error(text: str) -> None:
    try:
        uri = parse_uri(text)
    except SipParseError:
        return
    assert parse_uri(str(uri)) == uri


# --- generated valid messages --------------------------------------------------------------------

TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN, min_size=1, max_size=10)
labels = st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,5}[a-z0-9])?", fullmatch=True)
toplabels = st.from_regex(r"[a-z]([a-z0-9\-]{0,5}[a-z0-9])?", fullmatch=True)
hostnames = st.builds(lambda ls, top: ".".join([*ls, top]), st.lists(labels, max_size=3), toplabels)
hosts = hostnames | st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(lambda a: f"[{a}]")
escapes = st.integers(0, 255).map(lambda b: f"%{b:02X}")
user_chars = st.sampled_from(list("abcXYZ019-_.!~*'()&=+$,;?/")) | escapes
users = st.lists(user_chars, min_size=1, max_size=10).map("".join)
passwords = st.lists(st.sampled_from(list("abc123-_.!~*'()&=+$,")) | escapes, max_size=6).map("".join)
param_chars = st.sampled_from(list("abcLR09[]/:&+$-_.!~*'()")) | escapes
param_texts = st.lists(param_chars, min_size=1, max_size=8).map("".join)
uri_params = st.lists(st.tuples(param_texts, st.none() | param_texts), max_size=3).map(UriParameters)
header_chars = st.sampled_from(list("abc09[]/?:+$-_.!~*'()")) | escapes
uri_headers = st.lists(
    st.tuples(
        st.lists(header_chars, min_size=1, max_size=6).map("".join),
        st.lists(header_chars, max_size=6).map("".join),
    ),
    max_size=2,
).map(tuple)


@st.composite
def sip_uris(draw: st.DrawFn, with_headers: bool = True) -> SipUri:
    user = draw(st.none() | users)
    return SipUri(
        draw(hosts),
        user=user,
        password=None if user is None else draw(st.none() | passwords),
        port=draw(st.none() | st.integers(0, 65535)),
        params=draw(uri_params),
        headers=draw(uri_headers) if with_headers else (),
        scheme=draw(st.sampled_from(["sip", "sips"])),
    )


absolute_uris = st.builds(
    AbsoluteUri,
    st.sampled_from(["tel", "mailto", "urn", "x-custom.scheme"]),
    st.text("abcdefghij0123456789+-.:@/;=", min_size=1, max_size=20).filter(lambda t: ";" not in t[:1]),
)
# q and expires have their own grammar in a Contact (RFC 3261 20.10): leave them to the unit tests.
param_names = tokens.filter(lambda t: t.lower() not in ("q", "expires"))
header_params = st.lists(st.tuples(param_names, st.none() | tokens), max_size=3).map(Parameters)
display_names = st.none() | st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=20
)
addresses = st.builds(Address, sip_uris() | absolute_uris, display_names, header_params)
vias = st.builds(
    Via,
    st.sampled_from(["UDP", "TCP", "TLS", "WS", "WSS", "SCTP"]),
    hosts,
    st.none() | st.integers(0, 65535),
    st.tuples(tokens, st.booleans()).map(
        lambda t: Parameters([("branch", "z9hG4bK" + t[0])] + ([("rport", None)] if t[1] else []))
    ),
)
call_ids = st.text(TOKEN + '()<>:\\"/[]?{}', min_size=1, max_size=20)
header_values = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=40).map(
    lambda v: v.strip(" \t")
)
extensions = st.lists(st.tuples(tokens.map(lambda t: "X-" + t), header_values), max_size=4)
reasons = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=20)


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    method = draw(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE"]) | tokens)
    via_list = draw(st.lists(vias, min_size=1, max_size=3))
    contacts = draw(st.lists(addresses, max_size=2))
    headers: list[tuple[str, str]] = []
    if draw(st.booleans()):
        headers.append(("Via", ", ".join(map(str, via_list))))
    else:
        headers += [("Via", str(via)) for via in via_list]
    headers += [
        ("From", str(draw(addresses))),
        ("To", str(draw(addresses))),
        ("Call-ID", draw(call_ids)),
        ("CSeq", str(CSeq(draw(st.integers(0, 2**32 - 1)), method))),
    ]
    if draw(st.booleans()):
        headers.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    if contacts:
        headers.append(("Contact", ", ".join(map(str, contacts))))
    headers += draw(extensions)
    body = draw(st.binary(max_size=100))
    if draw(st.booleans()):
        return Request(method, draw(sip_uris(with_headers=False) | absolute_uris), headers, body)
    return Response(draw(st.integers(100, 699)), draw(reasons), headers, body)


@ROUND_TRIP
@given(messages())
def test_generated_messages_round_trip(message: Request | Response) -> None:
    encoded = message.encode()
    parsed = parse_message(encoded)
    assert type(parsed) is type(message)
    if isinstance(message, Request):
        assert isinstance(parsed, Request)
        assert parsed.method == message.method
        assert str(parsed.uri) == str(message.uri)
        assert parsed.uri == message.uri
    else:
        assert isinstance(parsed, Response)
        assert (parsed.status_code, parsed.reason) == (message.status_code, message.reason)
    assert parsed.headers.items() == [*message.headers.items(), ("Content-Length", str(len(message.body)))]
    assert parsed.body == message.body
    assert parsed.vias == message.vias
    assert parsed.from_ == message.from_
    assert parsed.to == message.to
    assert parsed.cseq == message.cseq
    assert parsed.contacts == message.contacts
    assert parsed.encode() == encoded


@ROUND_TRIP
@given(sip_uris())
def test_generated_sip_uris_round_trip(uri: SipUri) -> None:
    again = parse_uri(str(uri))
    assert again == uri
    assert str(again) == str(uri)
    assert hash(again) == hash(uri)


@ROUND_TRIP
@given(st.lists(messages(), min_size=1, max_size=4), st.data())
def test_any_chunking_of_a_stream_gives_the_same_messages(
    batch: list[Request | Response], data: st.DataObject
) -> None:
    encoded = [message.encode() for message in batch]
    stream = b"\r\n".join(encoded)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    framer = StreamFramer()
    frames: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        for event in framer.feed(stream[start:end]):
            assert isinstance(event, MessageFrame)
            frames.append(event.data)
    assert frames == encoded


@FUZZ
@given(st.lists(st.binary(max_size=300) | mutated(), max_size=4))
def test_framer_never_raises(chunks: list[bytes]) -> None:
    framer = StreamFramer(ParseLimits(max_message_bytes=2000, max_header_bytes=700))
    for chunk in chunks:
        for event in framer.feed(chunk):
            if isinstance(event, MessageFrame):
                parse_or_reject(event.data)
            elif isinstance(event, FramingError):
                assert framer.closed
