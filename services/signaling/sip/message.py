"""SIP requests and responses (RFC 3261 7): parsing, encoding and building responses.

``parse_message`` takes one whole message (a datagram, a WebSocket message, or a frame cut from a
stream by ``framing.StreamFramer``) and returns a ``Request`` or a ``Response``, or raises
``SipParseError``; it raises nothing else. The head is split once; header values stay raw, and only
the headers every message needs (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length) are
parsed up front, which is what makes a message valid. The rest are parsed when asked for and cached.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Final, Literal

from services.signaling.sip.address import Address, parse_address, parse_addresses, parse_contacts
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.grammar import WSP, is_token
from services.signaling.sip.headers import (
    CSeq,
    Headers,
    parse_call_id,
    parse_content_length,
    parse_cseq,
    parse_expires,
    parse_head,
    parse_max_forwards,
    parse_media_type,
    parse_option_tags,
    salvage_headers,
    single_value,
    split_list,
)
from services.signaling.sip.limits import DEFAULT_LIMITS, ParseLimits
from services.signaling.sip.uri import AbsoluteUri, SipUri, parse_uri
from services.signaling.sip.via import Via, parse_via

SIP_2_0: Final = "SIP/2.0"

#: Reason phrases of RFC 3261 21 and of the extensions a gateway meets.
REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority",
    420: "Bad Extension", 421: "Extension Required", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 429: "Provide Referrer Identity", 430: "Flow Failed",
    433: "Anonymity Disallowed", 439: "First Hop Lacks Outbound Support",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
    607: "Unwanted", 608: "Rejected",
}  # fmt: skip

# Methods whose 101-299 answers establish a dialog, so the UAS copies Record-Route into them
# (RFC 3261 12.1.1, which RFC 6665 and RFC 3515 carry over to SUBSCRIBE and REFER).
_DIALOG_CREATING: Final = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB): no CTLs.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def new_tag() -> str:
    """A From/To tag with 64 random bits (RFC 3261 19.3 asks for at least 32)."""
    return secrets.token_hex(8)


def _vias(values: list[str]) -> tuple[Via, ...]:
    if not values:
        raise SipParseError("Missing Via header")
    try:
        return tuple(parse_via(part) for value in values for part in split_list(value))
    except SipParseError:
        raise SipParseError("Bad Via header") from None


def _address(values: list[str], name: str) -> Address:
    value = single_value(values, name)
    try:
        return parse_address(value)
    except SipParseError:
        raise SipParseError(f"Bad {name} header") from None


def _from(values: list[str]) -> Address:
    return _address(values, "From")


def _to(values: list[str]) -> Address:
    return _address(values, "To")


def _call_id(values: list[str]) -> str:
    return parse_call_id(single_value(values, "Call-ID"))


def _cseq(values: list[str]) -> CSeq:
    return parse_cseq(single_value(values, "CSeq"))


def _max_forwards(values: list[str]) -> int | None:
    return None if not values else parse_max_forwards(single_value(values, "Max-Forwards"))


def _content_length(values: list[str]) -> int | None:
    return None if not values else parse_content_length(single_value(values, "Content-Length"))


def _content_type(values: list[str]) -> str | None:
    if not values:
        return None
    try:
        return parse_media_type(single_value(values, "Content-Type"))[0]
    except SipParseError:
        raise SipParseError("Bad Content-Type header") from None


def _expires(values: list[str]) -> int | None:
    if not values:
        return None
    try:
        return parse_expires(single_value(values, "Expires"))
    except SipParseError:
        raise SipParseError("Bad Expires header") from None


def _contacts(values: list[str]) -> tuple[Address, ...] | Literal["*"]:
    try:
        return parse_contacts(values)
    except SipParseError:
        raise SipParseError("Bad Contact header") from None


def _routes(values: list[str]) -> tuple[Address, ...]:
    try:
        return parse_addresses(values)
    except SipParseError:
        raise SipParseError("Bad Route header") from None


def _record_routes(values: list[str]) -> tuple[Address, ...]:
    try:
        return parse_addresses(values)
    except SipParseError:
        raise SipParseError("Bad Record-Route header") from None


def _option_tags(values: list[str]) -> tuple[str, ...]:
    return parse_option_tags(values)


class Message:
    """What requests and responses share: version, headers, body and typed header views.

    The typed views parse their header on first use and raise SipParseError when it is malformed;
    for the headers ``parse_message`` checks (Via, From, To, Call-ID, CSeq, Max-Forwards) that has
    already happened. Change headers through ``headers``: the views follow.
    """

    __slots__ = ("body", "headers", "version")

    def __init__(
        self, headers: Headers | Iterable[tuple[str, str]] | None, body: bytes, version: str
    ) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.body = body
        self.version = version

    @property
    def vias(self) -> tuple[Via, ...]:
        """Every Via value, top first (RFC 3261 20.42)."""
        return self.headers.typed("via", _vias)

    @property
    def via(self) -> Via:
        """The top Via (RFC 3261 8.2.6.2, 17.2.3 transaction matching)."""
        return self.vias[0]

    def set_top_via(self, via: Via) -> None:
        """Replace the top Via (a server adding received/rport, RFC 3261 18.2.1, RFC 3581 4).

        The other Via values keep their order; the parsed view is updated, not re-parsed.
        """
        vias = self.vias
        lines = self.headers.get_all("Via")
        first = split_list(lines[0])
        first[0] = str(via)
        self.headers.set("Via", ", ".join(first))
        for line in lines[1:]:
            self.headers.append_trusted("Via", line)
        self.headers.prime("via", _vias, (via, *vias[1:]))

    @property
    def from_(self) -> Address:
        return self.headers.typed("from", _from)

    @property
    def to(self) -> Address:
        return self.headers.typed("to", _to)

    @property
    def call_id(self) -> str:
        return self.headers.typed("call-id", _call_id)

    @property
    def cseq(self) -> CSeq:
        return self.headers.typed("cseq", _cseq)

    @property
    def max_forwards(self) -> int | None:
        """None when absent (RFC 2543 peers, RFC 4475 3.4.1)."""
        return self.headers.typed("max-forwards", _max_forwards)

    @property
    def contacts(self) -> tuple[Address, ...] | Literal["*"]:
        """Contact values, ``"*"`` for the wildcard of a REGISTER (RFC 3261 10.2.2)."""
        return self.headers.typed("contact", _contacts)

    @property
    def routes(self) -> tuple[Address, ...]:
        return self.headers.typed("route", _routes)

    @property
    def record_routes(self) -> tuple[Address, ...]:
        return self.headers.typed("record-route", _record_routes)

    @property
    def content_type(self) -> str | None:
        """``type/subtype`` in lower case, without parameters."""
        return self.headers.typed("content-type", _content_type)

    @property
    def expires(self) -> int | None:
        return self.headers.typed("expires", _expires)

    @property
    def require(self) -> tuple[str, ...]:
        try:
            return self.headers.typed("require", _option_tags)
        except SipParseError:
            raise SipParseError("Bad Require header") from None

    @property
    def supported(self) -> tuple[str, ...]:
        try:
            return self.headers.typed("supported", _option_tags)
        except SipParseError:
            raise SipParseError("Bad Supported header") from None

    def start_line(self) -> str:
        raise NotImplementedError

    def encode(self) -> bytes:
        """The message as bytes, with a Content-Length that matches the body (RFC 3261 18.3, 20.14).

        Header lines keep their order and values; Content-Length stays where it was, or comes last.
        """
        headers = self.headers
        lines = headers.encode_lines(skip="content-length")
        length = f"Content-Length: {len(self.body)}"
        at = headers.position("content-length")
        if at < 0:
            lines.append(length)
        else:
            lines.insert(at, length)
        head = self.start_line() + "\r\n" + "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


class Request(Message):
    """A SIP request (RFC 3261 7.1)."""

    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: SipUri | AbsoluteUri | str,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_2_0,
    ) -> None:
        if not is_token(method):
            raise ValueError(f"invalid method {method!r}")
        super().__init__(headers, body, version)
        self.method = method
        self.uri = parse_uri(uri) if isinstance(uri, str) else uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response (RFC 3261 7.2)."""

    __slots__ = ("reason", "status_code")

    def __init__(
        self,
        status_code: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_2_0,
    ) -> None:
        if reason is not None and _CONTROL_RE.search(reason) is not None:
            # A reason phrase carries no CR or LF (RFC 3261 25.1 Reason-Phrase): no header injection.
            raise ValueError(f"invalid reason phrase {reason!r}")
        super().__init__(headers, body, version)
        self.status_code = status_code
        self.reason = REASON_PHRASES.get(status_code, "") if reason is None else reason

    def start_line(self) -> str:
        return f"{self.version} {self.status_code} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.reason}>"


def _version(text: str) -> str:
    # SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT, case-insensitive on receipt (RFC 3261 7.1).
    if text == SIP_2_0:
        return text
    upper = text.upper()
    major, dot, minor = upper[4:].partition(".")
    if not (
        upper.startswith("SIP/")
        and dot
        and major.isascii()
        and major.isdigit()
        and minor.isascii()
        and minor.isdigit()
    ):
        raise SipParseError("Bad SIP version")
    return upper


def parse_message(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one whole SIP message. Raises SipParseError, and nothing else, when it is malformed.

    Datagram rules apply (RFC 3261 18.3): bytes past Content-Length are discarded (RFC 4475
    3.1.1.8), a Content-Length beyond the data is an error (3.1.2.2), and with no Content-Length the
    body is the rest of the data (3.4.1). CRLFs before the start line are skipped (RFC 3261 7.5).
    On error, ``partial_headers`` and ``is_request`` of the exception are filled in as far as the
    bytes allow, so that ``error_response`` can answer a request.
    """
    start = _leading_crlfs(data)
    try:
        return _parse(data, start, limits)
    except SipParseError as exc:
        fill_partial_headers(exc, data[start:], limits)
        raise


def _leading_crlfs(data: bytes) -> int:
    # CRLFs before the start line are ignored (RFC 3261 7.5). Counted with C-level bytes methods,
    # so a datagram full of them costs microseconds.
    if data[:2] != b"\r\n":
        return 0
    pairs = (len(data) - len(data.lstrip(b"\r\n"))) // 2
    if data.startswith(b"\r\n" * pairs):
        return pairs * 2
    # A stray CR or LF among them: find where the pairs stop by bisection.
    low, high = 1, pairs - 1
    while low < high:
        middle = (low + high + 1) // 2
        if data.startswith(b"\r\n" * middle):
            low = middle
        else:
            high = middle - 1
    return low * 2


def _parse(data: bytes, start: int, limits: ParseLimits) -> Request | Response:
    size = len(data)
    if size > limits.max_message_bytes:
        raise SipParseError("Message too large", status_code=513)
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise SipParseError("Missing end of headers")
    if end - start > limits.max_header_bytes:
        raise SipParseError("Header section too large", status_code=513)
    head = data[start:end].decode("utf-8", "surrogateescape")
    eol = head.find("\r\n")
    first = head if eol < 0 else head[:eol]
    # The start line first, so that the reason names the first fault in the message.
    message = _status_line(first) if first[:4].upper() == "SIP/" else _request_line(first)
    headers = message.headers = parse_head(head, limits)[1]
    body_start = end + 4
    length = headers.typed("content-length", _content_length)
    if length is None:
        message.body = data[body_start:]
    elif length > size - body_start:
        raise SipParseError("Content-Length larger than body")
    else:
        message.body = data[body_start : body_start + length]
    # The headers every later layer relies on: checked here, once, and cached (RFC 3261 8.1.1).
    message.vias  # noqa: B018
    message.from_  # noqa: B018
    message.to  # noqa: B018
    message.call_id  # noqa: B018
    message.cseq  # noqa: B018
    message.max_forwards  # noqa: B018
    return message


def _request_line(line: str) -> Request:
    # Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP between elements, none
    # after (RFC 3261 7.1; RFC 4475 3.1.2.8 to 3.1.2.10 reject or tolerate, we reject).
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError("Bad request line")
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError("Bad method")
    version = _version(version)
    try:
        uri = parse_uri(uri_text)
    except SipParseError:
        raise SipParseError("Bad Request-URI") from None
    if isinstance(uri, SipUri) and uri.headers:
        # Headers are not allowed in a Request-URI (RFC 3261 19.1.1 table 1, RFC 4475 3.1.2.11).
        raise SipParseError("Headers in Request-URI")
    request = Request.__new__(Request)
    request.method = method
    request.uri = uri
    request.version = version
    return request


def _status_line(line: str) -> Response:
    # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase; Status-Code is 3DIGIT and a
    # response code beyond 699 is dropped (RFC 4475 3.1.2.19). An empty reason is fine (3.1.1.13).
    version, _, rest = line.partition(" ")
    version = _version(version)
    code, _, reason = rest.partition(" ")
    if not (len(code) == 3 and code.isascii() and code.isdigit() and "100" <= code <= "699"):
        raise SipParseError("Bad status code")
    if _CONTROL_RE.search(reason) is not None:
        raise SipParseError("Bad reason phrase")
    response = Response.__new__(Response)
    response.status_code = int(code)
    response.reason = reason
    response.version = version
    return response


def fill_partial_headers(exc: SipParseError, data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> None:
    """Set ``is_request`` and ``partial_headers`` of ``exc`` from the raw message ``data``.

    Best effort and never raises: it runs while the error is on its way out of the parser.
    """
    head = data[: limits.max_message_bytes]
    end = head.find(b"\r\n\r\n")
    if end >= 0:
        head = head[:end]
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    first = lines[0]
    if first[:4].upper() == "SIP/":
        exc.is_request = False
    else:
        method, space, _ = first.partition(" ")
        exc.is_request = True if space and is_token(method) else None
    unfolded: list[str] = []
    for line in lines[: limits.max_headers + 1]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] = unfolded[-1].rstrip(WSP) + " " + line.lstrip(WSP)
        else:
            unfolded.append(line)
    if exc.partial_headers is None:
        exc.partial_headers = salvage_headers(unfolded, limits.max_headers)


def supported_tags(message: Message) -> tuple[str, ...]:
    """The option tags of ``Supported``, lower-cased; none when the header is malformed (a peer
    whose Supported cannot be read is taken to support nothing, RFC 3261 20.37)."""
    try:
        return tuple(tag.lower() for tag in message.supported)
    except SipParseError:
        return ()


def make_response(
    request: Request,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request`` as a UAS builds it (RFC 3261 8.2.6).

    Via (all, in order), From, Call-ID and CSeq are copied; To too, with a tag added when it had
    none, except in a 100 (8.2.6.2). A 100 copies Timestamp (8.2.6.1); a 101-299 answer to a
    dialog-creating request copies Record-Route (12.1.1). ``headers`` are appended.
    """
    if not 100 <= status_code <= 699:
        raise ValueError(f"status code {status_code} out of range")
    src = request.headers
    out = Headers()
    for value in src.get_all("Via"):
        out.append_trusted("Via", value)
    from_ = src.get("From")
    if from_ is not None:
        out.append_trusted("From", from_)
    to = src.get("To")
    # The response's To, known without parsing it again: the request's, plus the tag we add.
    to_view: Address | None = None
    if to is not None and status_code != 100:
        to_view = request.to
        if to_view.tag is None:
            tag = to_tag or new_tag()
            to = f"{to};tag={tag}"
            # A tag is a token (RFC 3261 25.1); anything else is left to the parser to judge.
            to_view = to_view.with_tag(tag) if is_token(tag) else None
    if to is not None:
        out.append_trusted("To", to)
    for name in ("Call-ID", "CSeq"):
        copied = src.get(name)
        if copied is not None:
            out.append_trusted(name, copied)
    if status_code == 100:
        for value in src.get_all("Timestamp"):
            out.append_trusted("Timestamp", value)
    elif status_code < 300 and request.method in _DIALOG_CREATING:
        for value in src.get_all("Record-Route"):
            out.append_trusted("Record-Route", value)
    for name, value in headers:
        out.add(name, value)
    if to_view is not None and out.count("To") == 1:
        out.prime("to", _to, to_view)
    return Response(status_code, reason, out, body)


def error_response(error: SipParseError, *, to_tag: str | None = None) -> Response | None:
    """The 400 (or 513) answering a request that failed to parse, or None when it cannot be answered.

    It can be answered when the bytes were a request and a Via could be read to send the response
    along (RFC 3261 18.2.2); From, To, Call-ID and CSeq are copied as far as they were found (RFC 4475
    3.3.1 still wants a 400 without them). Responses that fail to parse are never answered.
    """
    partial = error.partial_headers
    if error.is_request is not True or partial is None:
        return None
    vias = partial.get_all("Via")
    if not vias:
        return None
    out = Headers()
    for value in vias:
        out.add("Via", value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        raw = partial.get(name)
        if raw is None:
            continue
        if name == "To":
            try:
                if parse_address(raw).tag is None:
                    raw = f"{raw};tag={to_tag or new_tag()}"
            except SipParseError:
                pass
        out.add(name, raw)
    return Response(error.status_code, error.reason, out)
