"""The one exception the SIP message layer raises for bad input.

A UAS answers a request it cannot parse with 400 (RFC 3261 21.4.1) whose reason phrase names the
fault, or 513 when the message is larger than it accepts (RFC 3261 21.5.7); a response that cannot
be parsed is dropped, since nothing answers a response (RFC 4475 3.1.2.5 and 3.1.2.19).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.signaling.sip.headers import Headers


class SipParseError(Exception):
    """Bytes or a header value that do not follow the SIP grammar (RFC 3261 section 25).

    ``reason`` is a short phrase naming the fault ("Bad Via header", "Missing Call-ID header"); it is
    what a UAS puts in the status line of its answer. ``status_code`` is that answer: 400, or 513 when
    a size limit was hit. ``partial_headers`` holds the raw Via, From, To, Call-ID and CSeq values
    that could still be read from the message (the ones RFC 3261 8.2.6.2 copies into a response), or
    None; ``is_request`` says whether the start line looked like a request (True), a response (False)
    or neither (None). Together they let the transport answer a broken request and drop the rest.
    """

    def __init__(
        self,
        reason: str,
        *,
        status_code: int = 400,
        partial_headers: Headers | None = None,
        is_request: bool | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code
        self.partial_headers = partial_headers
        self.is_request = is_request

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status_code={self.status_code})"
