"""What a SIP MESSAGE may carry, checked and decoded before anything is routed (RFC 3428).

Pure: the request in, the text or the refusal out. Bodies are plain text (RFC 3428 mandates
``text/plain`` support) or CPIM (RFC 3862, what some carriers wrap SMS in) whose part is plain text.
Text is UTF-8 end to end: anything else is refused with a reason naming the byte at fault, and a
NUL is refused too (no store downstream keeps one, PostgreSQL's text among them).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.signaling.sip.message import Request

TEXT_PLAIN = "text/plain"
CPIM = "message/cpim"
#: What a MESSAGE's body may be: the stack answers other types 415 with this Accept (RFC 3261 8.2.3).
ACCEPTED_TYPES = (TEXT_PLAIN, CPIM)
#: Charsets read as UTF-8: US-ASCII is its subset, and RFC 3428 text/plain defaults to it.
_UTF8_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})
_ACCEPT = "text/plain;charset=UTF-8, message/cpim"


@dataclass(frozen=True, slots=True)
class Text:
    """A message's text, and the body it came in (relayed byte for byte)."""

    text: str
    content_type: str
    body: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.body)


@dataclass(frozen=True, slots=True)
class BodyRefused:
    """Answer the MESSAGE ``status`` ``reason`` (with ``headers``); nothing is sent on."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


def read_body(request: Request, max_bytes: int) -> Text | BodyRefused:
    """The text of ``request``'s body, or why it is refused."""
    body = request.body
    size = len(body)
    if size > max_bytes:
        # RFC 3428 7: a UAS may refuse a body too large with 413.
        return BodyRefused(413, f"Message body too large: {size} bytes, at most {max_bytes}")
    if not body:
        return BodyRefused(400, "Empty message body")
    media = request.content_type or TEXT_PLAIN
    charset = _charset(request.headers.get("Content-Type") or "")
    if charset is not None and charset not in _UTF8_CHARSETS:
        return BodyRefused(415, f"Unsupported charset {charset[:40]}", (("Accept", _ACCEPT),))
    decoded = _utf8(body)
    if isinstance(decoded, BodyRefused):
        return decoded
    if media == CPIM:
        inner = _cpim_text(decoded)
        if isinstance(inner, BodyRefused):
            return inner
        return Text(inner, CPIM, body)
    if media != TEXT_PLAIN:
        return BodyRefused(415, "Unsupported Media Type", (("Accept", _ACCEPT),))
    return Text(decoded, TEXT_PLAIN, body)


def check_text(body: bytes, max_bytes: int) -> Text | BodyRefused:
    """Text that did not come in a SIP request (the api's): the same limits as a body's."""
    if len(body) > max_bytes:
        return BodyRefused(413, f"Message too large: {len(body)} bytes, at most {max_bytes}")
    if not body:
        return BodyRefused(400, "Empty message")
    decoded = _utf8(body)
    if isinstance(decoded, BodyRefused):
        return decoded
    return Text(decoded, TEXT_PLAIN, body)


def _utf8(body: bytes) -> str | BodyRefused:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BodyRefused(400, f"Invalid UTF-8 in the body at byte {exc.start}: {exc.reason}")
    nul = text.find("\x00")
    if nul >= 0:
        return BodyRefused(400, f"NUL character in the body at byte {len(text[:nul].encode())}")
    return text


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _cpim_text(body: str) -> str | BodyRefused:
    """The text of a CPIM message (RFC 3862 3): message headers, a blank line, the MIME headers of
    the content, a blank line, the content. Only a text/plain content is read."""
    normalized = body.replace("\r\n", "\n")
    _, found, rest = normalized.partition("\n\n")
    if not found:
        return BodyRefused(400, "Bad message/cpim body: no blank line after the message headers")
    mime, found, content = rest.partition("\n\n")
    if not found:
        return BodyRefused(400, "Bad message/cpim body: no blank line after the content headers")
    inner_type = ""
    charset: str | None = None
    for line in mime.split("\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            inner_type = value.split(";")[0].strip().lower()
            charset = _charset(value)
    if inner_type != TEXT_PLAIN:
        return BodyRefused(
            415,
            f"message/cpim content must be text/plain, not {inner_type[:40] or 'none'}",
            (("Accept", _ACCEPT),),
        )
    if charset is not None and charset not in _UTF8_CHARSETS:
        return BodyRefused(415, f"Unsupported charset {charset[:40]}", (("Accept", _ACCEPT),))
    return content


__all__ = ["ACCEPTED_TYPES", "CPIM", "TEXT_PLAIN", "BodyRefused", "Text", "check_text", "read_body"]
