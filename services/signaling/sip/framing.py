"""Cutting SIP messages out of a byte stream: TCP and TLS (RFC 3261 18.3).

On a stream, Content-Length is the only thing that says where a message ends, so it is mandatory
(18.3); a message without it, with a bad one, or over a size limit leaves the rest of the stream
unreadable and the connection has to be closed. CRLFs before a start line are skipped (7.5); a
double CRLF is a keep-alive ping the transport answers with a single CRLF pong (RFC 5626 3.5.1).
WebSocket needs none of this: each WebSocket message carries exactly one SIP message (RFC 7118).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.signaling.sip.errors import SipParseError
from services.signaling.sip.grammar import WSP
from services.signaling.sip.headers import header_key, parse_content_length, split_head
from services.signaling.sip.limits import DEFAULT_LIMITS, ParseLimits
from services.signaling.sip.message import fill_partial_headers

_PING = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class MessageFrame:
    """The bytes of one whole message, for ``parse_message``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class KeepAlivePing:
    """A CRLF CRLF ping: send a CRLF pong back on the same connection (RFC 5626 3.5.1)."""


@dataclass(frozen=True, slots=True)
class FramingError:
    """The stream cannot be framed any more: close the connection.

    Before closing, ``message.error_response(error)`` may give a 400 or 513 worth sending (RFC 4475
    3.1.2.3 and 3.3.9 over TCP). The framer yields nothing after this.
    """

    error: SipParseError


StreamEvent = MessageFrame | KeepAlivePing | FramingError

_KEEP_ALIVE_PING = KeepAlivePing()


def _content_length(head: bytes) -> int:
    # Header names and Content-Length digits are ASCII; latin-1 maps every byte and cannot fail.
    lines = split_head(head.decode("latin-1"))
    found: int | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and header_key(name.rstrip(WSP))[0] == "content-length":
            if found is not None:
                raise SipParseError("Multiple Content-Length headers")
            found = parse_content_length(value.strip(WSP))
    if found is None:
        raise SipParseError("Missing Content-Length header")
    return found


class StreamFramer:
    """Feed it the bytes of one connection as they arrive; it returns whole messages.

    Sans-I/O: no socket, no timer. One framer per connection.
    """

    def __init__(self, limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buffer = bytearray()
        # Bytes of the buffer already searched for the end of the header section.
        self._scanned = 0
        # Total size of the message whose header section has been read, while its body arrives.
        self._expected: int | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once a FramingError was returned."""
        return self._closed

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Add received bytes; returns the messages, pings and at most one error they complete."""
        if self._closed:
            return []
        buf = self._buffer
        buf += data
        events: list[StreamEvent] = []
        limits = self._limits
        while buf:
            expected = self._expected
            if expected is None:
                if buf[0] == 0x0D:
                    if buf.startswith(_PING):
                        events.append(_KEEP_ALIVE_PING)
                        del buf[:4]
                        continue
                    if len(buf) < 4 and _PING.startswith(buf):
                        # "\r\n" may be a lone CRLF or the first half of a ping: wait and see.
                        break
                    if buf.startswith(b"\r\n"):
                        del buf[:2]
                        continue
                end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
                if end < 0:
                    if len(buf) > limits.max_header_bytes:
                        events.append(self._fail(SipParseError("Header section too large", status_code=513)))
                        break
                    self._scanned = len(buf)
                    break
                if end > limits.max_header_bytes:
                    events.append(self._fail(SipParseError("Header section too large", status_code=513)))
                    break
                try:
                    expected = end + 4 + _content_length(bytes(buf[:end]))
                except SipParseError as exc:
                    events.append(self._fail(exc))
                    break
                if expected > limits.max_message_bytes:
                    events.append(self._fail(SipParseError("Message too large", status_code=513)))
                    break
                self._expected = expected
            if len(buf) < expected:
                break
            events.append(MessageFrame(bytes(buf[:expected])))
            del buf[:expected]
            self._expected = None
            self._scanned = 0
        return events

    def _fail(self, error: SipParseError) -> FramingError:
        fill_partial_headers(error, bytes(self._buffer), self._limits)
        self._closed = True
        self._buffer.clear()
        return FramingError(error)
