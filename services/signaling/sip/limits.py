"""Size limits applied while parsing and framing SIP messages.

RFC 3261 puts no bound on message size; a server that accepts anything can be made to buffer and
scan without end. A message over a limit is refused with 513 Message Too Large (RFC 3261 21.5.7);
on a stream the connection is closed as well, since its framing can no longer be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Upper bounds for one SIP message.

    ``max_message_bytes``: whole message, start line to last body byte (65535 is the largest UDP
    payload; a stream message is held to the same bound). ``max_header_bytes``: the start line and
    header section up to the empty line. ``max_headers``: number of header field lines.
    ``max_line_length``: characters in one header field after unfolding (RFC 3261 7.3.1).
    """

    max_message_bytes: int = 65535
    max_header_bytes: int = 16384
    max_headers: int = 256
    max_line_length: int = 8192

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_header_bytes", "max_headers", "max_line_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


DEFAULT_LIMITS = ParseLimits()
