"""The RFC 3261 8.2 request checks of a UAS, and the RFC 3261 8.1.3.3 response check of a UAC."""

from __future__ import annotations

import pytest

from services.signaling.sip import Request, Response, check_request, check_response, parse_message

METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "INFO", "NOTIFY", "REFER")
EXTENSIONS = ("outbound", "path", "replaces", "100rel", "timer")
CONTENT_TYPES = ("application/sdp", "text/plain")

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def request(
    method: str = "INVITE",
    uri: str = "sip:bob@pbx.example.com",
    *,
    extra: str = "",
    body: bytes = b"",
    cseq_method: str | None = None,
    version: str = "SIP/2.0",
    contact: str = "<sip:alice@192.0.2.1>",
    to: str = "<sip:bob@pbx.example.com>",
) -> Request:
    text = (
        f"{method} {uri} {version}\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa1\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: <sip:alice@pbx.example.com>;tag=f1\r\n"
        "Call-ID: c1@192.0.2.1\r\n"
        f"CSeq: 1 {cseq_method or method}\r\n"
        + (f"Contact: {contact}\r\n" if contact else "")
        + extra
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    message = parse_message(text.encode() + body)
    assert isinstance(message, Request)
    return message


def check(req: Request, *, relay: bool = False) -> Response | None:
    return check_request(
        req,
        supported_methods=METHODS,
        supported_extensions=EXTENSIONS,
        accepted_content_types=CONTENT_TYPES,
        relay=relay,
        to_tag="uas1",
    )


def code(req: Request, *, relay: bool = False) -> int | None:
    response = check(req, relay=relay)
    return None if response is None else response.status_code


def test_a_well_formed_invite_passes() -> None:
    assert check(request(extra="Content-Type: application/sdp\r\nSupported: replaces\r\n", body=SDP)) is None


def test_unsupported_version_gets_505() -> None:
    assert code(request(version="SIP/3.0")) == 505


def test_known_but_unsupported_method_gets_405_with_allow() -> None:
    response = check(request("SUBSCRIBE", contact="<sip:a@b>"))
    assert response is not None
    assert response.status_code == 405
    assert response.headers.get("Allow") == ", ".join(METHODS)
    assert response.headers.get("To") == "<sip:bob@pbx.example.com>;tag=uas1"


def test_unknown_method_gets_501() -> None:
    response = check(request("FROBNICATE"))
    assert response is not None
    assert response.status_code == 501
    assert "Allow" in response.headers


def test_cseq_method_must_match() -> None:
    response = check(request("OPTIONS", cseq_method="INVITE"))
    assert response is not None
    assert (response.status_code, response.reason) == (400, "CSeq method does not match")


def test_max_forwards_zero_only_matters_when_relaying() -> None:
    req = parse_message(request("OPTIONS").encode().replace(b"Max-Forwards: 70", b"Max-Forwards: 0"))
    assert isinstance(req, Request)
    assert code(req) is None
    assert code(req, relay=True) == 483


def test_unsupported_uri_scheme_gets_416() -> None:
    assert code(request("OPTIONS", "tel:+995555123456")) == 416
    assert code(request("OPTIONS", "sips:bob@pbx.example.com")) is None


def test_unknown_require_gets_420_with_unsupported() -> None:
    response = check(
        request("OPTIONS", extra="Require: 100rel, foo\r\nRequire: Bar\r\nProxy-Require: baz\r\n")
    )
    assert response is not None
    assert response.status_code == 420
    assert response.headers.get("Unsupported") == "foo, Bar"
    assert code(request("OPTIONS", extra="Require: TIMER\r\nProxy-Require: baz\r\n")) is None


def test_cancel_ignores_require() -> None:
    assert code(request("CANCEL", extra="Require: foo\r\n")) is None


def test_ack_is_never_answered() -> None:
    assert check(request("ACK", extra="Require: foo\r\n", version="SIP/3.0")) is None


def test_unreadable_body_gets_415_with_accept() -> None:
    response = check(request(extra="Content-Type: application/unknownformat\r\n", body=b"<audio/>"))
    assert response is not None
    assert response.status_code == 415
    assert response.headers.get("Accept") == "application/sdp, text/plain"


def test_encoded_body_gets_415_with_accept_encoding() -> None:
    extra = "Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n"
    response = check(request(extra=extra, body=SDP))
    assert response is not None
    assert response.status_code == 415
    assert response.headers.get("Accept-Encoding") == "identity"


def test_optional_body_may_be_ignored() -> None:
    extra = "Content-Type: application/unknownformat\r\nContent-Disposition: render;handling=optional\r\n"
    assert code(request("INFO", extra=extra, body=b"x")) is None
    extra = "Content-Type: application/unknownformat\r\nContent-Disposition: render;handling=required\r\n"
    assert code(request("INFO", extra=extra, body=b"x")) == 415
    extra = "Content-Type: application/unknownformat\r\nContent-Disposition: render;;\r\n"
    response = check(request("INFO", extra=extra, body=b"x"))
    assert response is not None
    assert (response.status_code, response.reason) == (400, "Bad Content-Disposition header")


def test_body_without_content_type_gets_400() -> None:
    response = check(request(body=SDP))
    assert response is not None
    assert (response.status_code, response.reason) == (400, "Missing Content-Type header")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("text/nobodyKnowsThis", 406),
        ("", 406),
        ("application/sdp;q=0, text/plain", 406),
        ("application/sdp", None),
        ("text/plain, Application/SDP;level=1", None),
        ("application/*", None),
        ("*/*;q=0.1", None),
    ],
)
def test_invite_accept_must_allow_sdp(accept: str, expected: int | None) -> None:
    extra = f"Accept: {accept}\r\nContent-Type: application/sdp\r\n"
    response = check(request(extra=extra, body=SDP))
    assert (None if response is None else response.status_code) == expected
    if response is not None:
        warning = response.headers.get("Warning")
        assert warning is not None
        assert warning.startswith("399 pbx.example.com ")


def test_dialog_creating_requests_need_one_sip_contact() -> None:
    assert code(request(contact="")) is None
    assert code(request(contact="<sip:a@b>, <sip:c@d>")) == 400
    assert code(request(contact="<mailto:a@b>")) == 400
    assert code(request(contact="*")) == 400
    response = check(request(contact="sip:user@example.com?Route=%3Csip:sip.example.com%3E"))
    assert response is not None
    assert (response.status_code, response.reason) == (400, "Bad Contact header")


def test_register_checks() -> None:
    assert code(request("REGISTER", "sip:pbx.example.com", extra="Expires: 600\r\n")) is None
    assert code(request("REGISTER", "sip:pbx.example.com", to="isbn:2983792873")) == 400
    assert code(request("REGISTER", "sip:pbx.example.com", contact="*", extra="Expires: 0\r\n")) is None
    assert code(request("REGISTER", "sip:pbx.example.com", contact="*", extra="Expires: 60\r\n")) == 400
    assert code(request("REGISTER", "sip:pbx.example.com", contact="*")) == 400
    assert code(request("REGISTER", "sip:pbx.example.com", contact="<sip:a@b>;expires=x")) == 400
    assert code(request("REGISTER", "sip:pbx.example.com", extra="Expires: soon\r\n")) == 400
    # A REGISTER may bind any URI scheme (RFC 3261 10.2.1) and any number of them.
    assert code(request("REGISTER", "sip:pbx.example.com", contact="<mailto:a@b>, <sip:c@d>")) is None


def test_malformed_headers_the_checks_read_get_400_naming_them() -> None:
    response = check(request("OPTIONS", extra="Require: a b\r\n"))
    assert response is not None
    assert (response.status_code, response.reason) == (400, "Bad Require header")
    response = check(request(extra="Content-Type: sdp\r\n", body=SDP))
    assert response is not None
    assert (response.status_code, response.reason) == (400, "Bad Content-Type header")


def response_with_vias(*vias: str, version: str = "SIP/2.0") -> Response:
    text = (
        f"{version} 200 OK\r\n"
        + "".join(f"Via: {via}\r\n" for via in vias)
        + "To: <sip:bob@b.example>;tag=t\r\nFrom: <sip:alice@a.example>;tag=f\r\n"
        "Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Response)
    return message


def test_uac_drops_responses_with_more_than_one_via() -> None:
    assert check_response(response_with_vias("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa")) is None
    two = response_with_vias(
        "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa", "SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKb"
    )
    assert check_response(two) == "More than one Via in a response"
    assert (
        check_response(response_with_vias("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa", version="SIP/3.0"))
        is not None
    )
