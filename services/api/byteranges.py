"""HTTP Range requests of one resource (RFC 9110 section 14): which bytes a ``Range`` header asks
for, pure and without I/O so every form of the header is tested directly."""

from __future__ import annotations

import re
from dataclasses import dataclass

# At most 18 digits: larger positions are no file of ours, and the header is then ignored.
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d{0,18})\s*-\s*(\d{0,18})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive of a representation ``size`` bytes long."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class Unsatisfiable(Exception):
    """416: the range starts past the end (RFC 9110 15.5.17); ``Content-Range: bytes */size``."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the range starts past the end of the {size} bytes")
        self.size = size

    @property
    def content_range(self) -> str:
        return f"bytes */{self.size}"


def requested_range(header: str | None, size: int) -> ByteRange | None:
    """The one range ``header`` asks for, or None to send the whole representation.

    None when there is no header, when it is not a ``bytes`` range we understand, and when it asks
    for several ranges: RFC 9110 14.2 lets a server ignore Range, and a player asks for one range at
    a time. A range whose last byte is past the end is cut at the end (14.1.2); one that starts past
    the end, or a zero suffix, is :class:`Unsatisfiable`.
    """
    if header is None:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)  # ``bytes=-N``: the last N bytes
        if suffix == 0 or size == 0:
            raise Unsatisfiable(size)
        return ByteRange(max(size - suffix, 0), size - 1, size)
    start = int(first)
    end = int(last) if last != "" else None
    if end is not None and end < start:
        return None  # not a valid range-spec: ignored (14.1.1), the whole is sent
    if start >= size:
        raise Unsatisfiable(size)
    if end is None:
        end = size - 1
    return ByteRange(start, min(end, size - 1), size)


__all__ = ["ByteRange", "Unsatisfiable", "requested_range"]
