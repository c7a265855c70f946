"""The request checks every UAS makes before the method's own processing (RFC 3261 8.2, RFC 4475 3.3).

``check_request`` is a pure function: it returns the error response to send, or None when the
request may go on to its method's processing (registrar, dialog, B2BUA). It covers, in the order of
RFC 3261 8.2: version (505), method (405/501), CSeq, Max-Forwards when relaying (483), URI scheme
(416), Require (420), the body (400/415), Accept for INVITE (406) and the syntax of the headers the
method relies on (400). Merged-request detection (8.2.2.2, 482) needs transaction state and is not
here; neither are authentication (401/407) and the registrar's own rules (423, 404).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import lru_cache
from typing import Final

from services.signaling.sip.errors import SipParseError
from services.signaling.sip.headers import parse_media_type, split_list
from services.signaling.sip.message import SIP_2_0, Request, Response, make_response
from services.signaling.sip.parameters import EMPTY_PARAMETERS, parse_header_parameters
from services.signaling.sip.uri import SipUri

#: Methods defined by RFC 3261 and its registered extensions (IANA "Methods and Response Codes").
#: A method outside this set is not recognized: 501 (RFC 3261 21.5.2); inside it but not supported
#: here: 405 (8.2.1).
KNOWN_METHODS: Final = frozenset({
    "ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS", "PRACK", "PUBLISH",
    "REFER", "REGISTER", "SUBSCRIBE", "UPDATE",
})  # fmt: skip
# Requests that can establish a dialog carry exactly one SIP or SIPS Contact (RFC 3261 8.1.1.8).
_DIALOG_CREATING: Final = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
_SDP: Final = "application/sdp"


@lru_cache(maxsize=64)
def _lowered_tuple(values: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    return frozenset(value.lower() for value in values)


def _lowered(values: Collection[str]) -> frozenset[str]:
    # The element passes the same constant tuples with every request: lower them once.
    if isinstance(values, tuple | frozenset):
        return _lowered_tuple(values)
    return frozenset(value.lower() for value in values)


def _listed(values: Collection[str]) -> str:
    items = values if isinstance(values, Sequence) else sorted(values)
    return ", ".join(items)


def check_request(
    request: Request,
    *,
    supported_methods: Collection[str],
    supported_extensions: Collection[str],
    accepted_content_types: Collection[str],
    supported_schemes: Collection[str] = ("sip", "sips"),
    relay: bool = False,
    to_tag: str | None = None,
) -> Response | None:
    """The response that rejects ``request``, or None when it passes the RFC 3261 8.2 checks.

    ``supported_methods``: methods this element processes (case-sensitive, RFC 3261 7.1).
    ``supported_extensions``: option tags it implements (compared case-insensitively, 7.3.1).
    ``accepted_content_types``: ``type/subtype`` bodies it understands.
    ``relay``: True when the request will be passed on as a new request on another leg (a
    B2BUA routing an INVITE to a carrier): then Max-Forwards 0 gets 483 like at a proxy (RFC 3261
    16.3 step 2). An endpoint answering for itself processes it as usual (RFC 4475 3.3.11).
    ``to_tag``: the tag to put in the response's To (random when None).
    ACK never gets a response: the ACK of a 2xx is a request without one (RFC 3261 17), that of
    an error is absorbed by the INVITE server transaction (17.2.1). It always passes.
    """
    if request.method == "ACK":
        return None
    try:
        return _check(
            request,
            supported_methods,
            _lowered(supported_extensions),
            _lowered(accepted_content_types),
            supported_schemes,
            relay,
            to_tag,
        )
    except SipParseError as exc:
        # A header the checks had to read is malformed (RFC 3261 21.4.1).
        return make_response(request, exc.status_code, exc.reason, to_tag=to_tag)


def _check(
    request: Request,
    methods: Collection[str],
    extensions: frozenset[str],
    content_types: frozenset[str],
    schemes: Collection[str],
    relay: bool,
    to_tag: str | None,
) -> Response | None:
    method = request.method
    if request.version != SIP_2_0:
        # RFC 3261 21.5.6; RFC 4475 3.1.2.16.
        return make_response(request, 505, to_tag=to_tag)
    if method not in methods:
        # 8.2.1: 405 with Allow for a method we know but do not do; 501 for one we do not know
        # (21.5.2; RFC 4475 3.1.2.18 also allows 400).
        code = 405 if method in KNOWN_METHODS else 501
        return make_response(request, code, to_tag=to_tag, headers=[("Allow", _listed(methods))])
    if request.cseq.method != method:
        # The CSeq method MUST match the request's (8.1.1.5; RFC 4475 3.1.2.17).
        return make_response(request, 400, "CSeq method does not match", to_tag=to_tag)
    if relay and request.max_forwards == 0:
        return make_response(request, 483, to_tag=to_tag)
    if request.uri.scheme not in schemes:
        # 8.2.2.1; RFC 4475 3.3.2 and 3.3.3.
        return make_response(request, 416, to_tag=to_tag)
    if method != "CANCEL":
        # Require is ignored in CANCEL (8.2.2.3); Proxy-Require is for proxies only.
        unsupported = [tag for tag in request.require if tag.lower() not in extensions]
        if unsupported:
            return make_response(
                request, 420, to_tag=to_tag, headers=[("Unsupported", ", ".join(unsupported))]
            )
    rejection = _check_body(request, content_types, to_tag)
    if rejection is not None:
        return rejection
    if method == "INVITE" and not _accepts_sdp(request):
        # Our answer to an INVITE is SDP (RFC 3264); an Accept without it leaves nothing we could
        # send (21.4.7; RFC 4475 3.3.15, which also allows 400).
        agent = request.uri.host if isinstance(request.uri, SipUri) else "-"
        warning = f'399 {agent} "Only application/sdp can answer an INVITE"'
        return make_response(request, 406, to_tag=to_tag, headers=[("Warning", warning)])
    if method == "REGISTER":
        return _check_register(request, to_tag)
    if method in _DIALOG_CREATING:
        contacts = request.contacts
        # Exactly one SIP or SIPS Contact (8.1.1.8); none at all is tolerated for RFC 2543 peers
        # (RFC 4475 3.4.1).
        if contacts == "*" or len(contacts) > 1 or (contacts and not isinstance(contacts[0].uri, SipUri)):
            return make_response(request, 400, "Bad Contact header", to_tag=to_tag)
    return None


def _check_body(request: Request, content_types: frozenset[str], to_tag: str | None) -> Response | None:
    # RFC 3261 8.2.3: a body we cannot read is refused with 415 and what we can read.
    if not request.body:
        return None
    media = request.content_type
    if media is None:
        # Content-Type MUST be present when the body is not empty (20.15).
        return make_response(request, 400, "Missing Content-Type header", to_tag=to_tag)
    encodings = [e.lower() for e in request.headers.values("Content-Encoding")]
    if any(encoding != "identity" for encoding in encodings):
        return make_response(request, 415, to_tag=to_tag, headers=[("Accept-Encoding", "identity")])
    if media in content_types:
        return None
    disposition = request.headers.get("Content-Disposition")
    if disposition is not None:
        # Content-Disposition = disp-type *( SEMI disp-param ) (20.11)
        semi = disposition.find(";")
        try:
            params = parse_header_parameters(disposition[semi:]) if semi >= 0 else EMPTY_PARAMETERS
        except SipParseError:
            raise SipParseError("Bad Content-Disposition header") from None
        handling = params.get("handling")
        if handling is not None and handling.lower() == "optional":
            # A body marked optional may be ignored instead of refused (20.11).
            return None
    return make_response(request, 415, to_tag=to_tag, headers=[("Accept", _listed(sorted(content_types)))])


def _accepts_sdp(request: Request) -> bool:
    # No Accept means application/sdp (RFC 3261 20.1); an empty one accepts nothing.
    values = request.headers.get_all("Accept")
    if not values:
        return True
    for value in values:
        for part in split_list(value):
            if not part:
                continue
            try:
                media, params = parse_media_type(part)
            except SipParseError:
                raise SipParseError("Bad Accept header") from None
            q = params.get("q")
            if q is not None and not q.strip("0."):
                continue
            if media in (_SDP, "application/*", "*/*"):
                return True
    return False


def _check_register(request: Request, to_tag: str | None) -> Response | None:
    # The address-of-record in To is a SIP or SIPS URI (RFC 3261 10.2; RFC 4475 3.3.4).
    if not isinstance(request.to.uri, SipUri):
        return make_response(request, 400, "To is not a SIP or SIPS URI", to_tag=to_tag)
    contacts = request.contacts
    expires = request.expires
    if contacts == "*" and expires != 0:
        # The wildcard removes every binding and only makes sense with Expires: 0 (10.3 step 6).
        return make_response(request, 400, "Wildcard Contact needs Expires: 0", to_tag=to_tag)
    # request.contacts has checked each Contact's q and expires (20.10).
    return None
