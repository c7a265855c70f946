"""SIP header fields: the container, their names, list splitting and the scalar values.

``Headers`` keeps every field line in order with its value as received (RFC 3261 7.3) and looks
names up case-insensitively, compact forms included (7.3.3). Typed views (Via, From, CSeq ...) are
parsed only when asked for and cached per header name until that header changes; the message layer
builds its properties on ``Headers.typed``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Final, TypeVar, cast

from services.signaling.sip.errors import SipParseError
from services.signaling.sip.grammar import WSP, find_wsp, is_call_id, is_token, parse_uint
from services.signaling.sip.limits import ParseLimits
from services.signaling.sip.parameters import Parameters, parse_header_parameters

T = TypeVar("T")

#: Compact forms (RFC 3261 7.3.3 and the IANA "Header Fields" registry).
COMPACT_FORMS: Final[dict[str, str]] = {
    "a": "Accept-Contact",  # RFC 3841
    "b": "Referred-By",  # RFC 3892
    "c": "Content-Type",
    "d": "Request-Disposition",  # RFC 3841
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",  # RFC 3841
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",  # RFC 4474
    "o": "Event",  # RFC 6665
    "r": "Refer-To",  # RFC 3515
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",  # RFC 6665
    "v": "Via",
    "x": "Session-Expires",  # RFC 4028
    "y": "Identity",  # RFC 8224
}

# How a header is written when we write it: RFC 3261 20 spellings, then common extensions.
_CANONICAL_NAMES = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length", "Content-Type",
    "CSeq", "Date", "Error-Info", "Event", "Expires", "Flow-Timer", "From", "History-Info",
    "Identity", "Identity-Info", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires",
    "Min-SE", "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority",
    "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-Sub", "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported",
    "Target-Dialog", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate",
)  # fmt: skip

# Header fields whose value may hold commas that do not separate list elements: RFC 3261 7.3.1
# names the four authentication headers; the others are not lists at all.
_NOT_LISTS = frozenset({
    "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate",
    "authentication-info", "date", "retry-after", "subject", "user-agent", "server", "organization",
    "call-id", "cseq", "timestamp", "identity", "identity-info", "replaces", "refer-to",
    "referred-by", "content-type", "content-disposition", "subscription-state", "event", "rack",
    "rseq", "min-expires", "expires", "max-forwards", "content-length", "mime-version", "priority",
    "from", "to", "reply-to", "session-expires", "min-se", "flow-timer", "sip-etag", "sip-if-match",
    "target-dialog",
})  # fmt: skip


def _build_lookup() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for name in _CANONICAL_NAMES:
        entry = (name.lower(), name)
        table[name] = entry
        table[name.lower()] = entry
    for short, name in COMPACT_FORMS.items():
        entry = table[name]
        table[short] = entry
        table[short.upper()] = entry
    return table


# Exact spelling -> (key, canonical name); the key is the lower-case long name.
_LOOKUP: Final = _build_lookup()
# Marks a typed view not parsed yet (a parser may return None).
_MISSING: Final = object()


def header_key(name: str) -> tuple[str, str]:
    """(lookup key, name to write) for a header name as received, compact forms expanded."""
    entry = _LOOKUP.get(name)
    if entry is None:
        entry = _LOOKUP.get(name.lower())
        if entry is None:
            return name.lower(), name
    return entry


def canonical_name(name: str) -> str:
    """The spelling we write a header with: ``v`` and ``VIA`` give ``Via``; unknown names as given."""
    return header_key(name)[1]


# One piece of a list value: a quoted string (to its closing quote, or the end when unterminated),
# a <...> section, a run of anything else, or a separating comma. Together they cover every
# character, so findall loses nothing.
_LIST_TOKEN_RE = re.compile(r'"(?:[^"\\]+|\\[\s\S]|\\\Z)*(?:"|\Z)|<[^>]*(?:>|\Z)|[^,"<]+|,')


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value into its elements (RFC 3261 7.3.1).

    Commas inside quoted strings and inside ``<...>`` do not separate. Elements are stripped of
    LWS; empty ones are kept so that the typed parsers can reject them (RFC 4475 3.1.2.1).
    """
    if "," not in value:
        return [value]
    if '"' not in value and "<" not in value:
        return [part.strip(WSP) for part in value.split(",")]
    parts: list[str] = []
    current: list[str] = []
    for token in _LIST_TOKEN_RE.findall(value):
        if token == ",":
            parts.append("".join(current).strip(WSP))
            current = []
        else:
            current.append(token)
    parts.append("".join(current).strip(WSP))
    return parts


class Headers:
    """The header fields of one message: ordered, multi-valued, case-insensitive.

    Each entry is one field line as received (after unfolding), so a message re-encodes with its
    headers in their original order (RFC 3261 7.3.1 requires that for same-name fields). Names are
    looked up by their long form whatever spelling or compact form was used.
    """

    __slots__ = ("_cache", "_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        # Values per key as tuples, not lists: a message lives as long as its transaction (32 s for
        # Timer J), and tuples of strings drop out of the cyclic collector's work where lists stay.
        self._index: dict[str, tuple[str, ...]] = {}
        self._cache: dict[tuple[str, object], object] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _adopt(cls, items: list[tuple[str, str, str]], index: dict[str, tuple[str, ...]]) -> Headers:
        headers = cls.__new__(cls)
        headers._items = items
        headers._index = index
        headers._cache = {}
        return headers

    @staticmethod
    def _check(name: str, value: str) -> None:
        # Every spelling in the lookup table is a token: only other names need the grammar check.
        if name not in _LOOKUP and not is_token(name):
            raise ValueError(f"invalid header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} value contains CR or LF")

    def _changed(self, key: str) -> None:
        if self._cache:
            for cache_key in [k for k in self._cache if k[0] == key]:
                del self._cache[cache_key]

    def add(self, name: str, value: str) -> None:
        """Append a field line (after any others of the same name)."""
        self._check(name, value)
        key, written = header_key(name)
        self._items.append((key, written, value))
        self._index[key] = (*self._index.get(key, ()), value)
        self._changed(key)

    def set(self, name: str, value: str) -> None:
        """Make ``value`` the only field of ``name``, where the first one was (or at the end)."""
        self._check(name, value)
        key, written = header_key(name)
        items: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] != key:
                items.append(item)
            elif not placed:
                items.append((key, written, value))
                placed = True
        if not placed:
            items.append((key, written, value))
        self._items = items
        self._index[key] = (value,)
        self._changed(key)

    def remove(self, name: str) -> int:
        """Remove every field of ``name``; returns how many there were."""
        key = header_key(name)[0]
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        self._index.pop(key, None)
        self._changed(key)
        return before - len(self._items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` as received."""
        values = self._index.get(header_key(name)[0])
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every field value of ``name``, one per field line, in order."""
        return list(self._index.get(header_key(name)[0], ()))

    def values(self, name: str) -> list[str]:
        """The elements of a list header across all its lines (``Allow``, ``Supported``, ``Via``...).

        Headers that are not comma lists (the authentication headers, Date, ...) are not split.
        Empty elements are dropped.
        """
        key = header_key(name)[0]
        raw = self._index.get(key, ())
        if key in _NOT_LISTS:
            return [value for value in raw if value]
        return [part for value in raw for part in split_list(value) if part]

    def typed(self, name: str, parser: Callable[[list[str]], T]) -> T:
        """``parser`` applied to the values of ``name``, cached until that header changes.

        The parser receives the raw values (possibly none) and raises SipParseError when they are
        not valid; the error is not cached.
        """
        # Called a dozen times per message, mostly with a cached result: no try/except, no call
        # to header_key for the names in the table.
        entry = _LOOKUP.get(name)
        key = entry[0] if entry is not None else header_key(name)[0]
        cache_key = (key, parser)
        cache = self._cache
        result = cache.get(cache_key, _MISSING)
        if result is not _MISSING:
            return cast(T, result)
        result = parser(list(self._index.get(key, ())))
        cache[cache_key] = result
        return result

    def prime(self, name: str, parser: Callable[[list[str]], T], value: T) -> None:
        """Record ``value`` as what ``parser`` gives for ``name`` now (the caller just built both)."""
        self._cache[(header_key(name)[0], parser)] = value

    def append_trusted(self, name: str, value: str) -> None:
        """``add`` without the checks, for values copied from a parsed message (already valid)."""
        key, written = header_key(name)
        self._items.append((key, written, value))
        self._index[key] = (*self._index.get(key, ()), value)
        if self._cache:
            self._changed(key)

    def count(self, name: str) -> int:
        return len(self._index.get(header_key(name)[0], ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._index.get(header_key(name)[0]))

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """(name, value) per field line; names in the spelling we write."""
        return ((written, value) for _, written, value in self._items)

    def items(self) -> list[tuple[str, str]]:
        return [(written, value) for _, written, value in self._items]

    def copy(self) -> Headers:
        return Headers._adopt(list(self._items), dict(self._index))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def encode_lines(self, skip: str = "") -> list[str]:
        """``Name: value`` per field line, leaving out the header whose key is ``skip``."""
        return [f"{written}: {value}" for key, written, value in self._items if key != skip]

    def position(self, name: str) -> int:
        """Index of the first field line of ``name``, or -1."""
        key = header_key(name)[0]
        for i, item in enumerate(self._items):
            if item[0] == key:
                return i
        return -1


def split_head(head: str) -> list[str]:
    """Lines of a decoded header section (start line first), folded lines joined.

    RFC 3261 7.3.1: a line starting with SP or HTAB continues the previous header field, and the
    line break with the whitespace around it counts as one SP. The start line cannot be continued.
    A CR or LF that is not part of a CRLF is an error (RFC 3261 7: lines end with CRLF).
    """
    lines = head.split("\r\n")
    breaks = len(lines) - 1
    if head.count("\n") != breaks or head.count("\r") != breaks:
        raise SipParseError("Bad line ending")
    if "\r\n " not in head and "\r\n\t" not in head:
        return lines
    out: list[str] = [lines[0]]
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if len(out) == 1:
                raise SipParseError("Bad header line")
            out[-1] = out[-1].rstrip(WSP) + " " + line.lstrip(WSP)
        else:
            out.append(line)
    return out


def parse_head(head: str, limits: ParseLimits) -> tuple[str, Headers]:
    """The start line and the headers of a decoded header section (without its final CRLF CRLF).

    RFC 3261 7.3.1: field-name HCOLON field-value, HCOLON = *( SP / HTAB ) ":" SWS; a line that
    starts with SP or HTAB continues the field before it (the line break and the whitespace around
    it count as one SP) and cannot continue the start line. A CR or LF outside a CRLF is an error.
    """
    lines = head.split("\r\n")
    count = len(lines)
    if head.count("\n") != count - 1 or head.count("\r") != count - 1:
        raise SipParseError("Bad line ending")
    if count - 1 > limits.max_headers:
        raise SipParseError("Too many headers", status_code=513)
    check_length = len(head) > limits.max_line_length
    max_line = limits.max_line_length
    lookup = _LOOKUP
    items: list[tuple[str, str, str]] = []
    index: dict[str, tuple[str, ...]] = {}
    for i in range(1, count):
        line = lines[i]
        name, colon, value = line.partition(":")
        entry = lookup.get(name) if colon else None
        if entry is None:
            if line[:1] in (" ", "\t"):
                if not items:
                    raise SipParseError("Bad header line")
                key, written, previous = items[-1]
                part = line.strip(WSP)
                if not part:
                    continue
                value = f"{previous} {part}" if previous else part
                items[-1] = (key, written, value)
                index[key] = (*index[key][:-1], value)
                if check_length and len(written) + len(value) + 2 > max_line:
                    raise SipParseError("Header line too long", status_code=513)
                continue
            if not colon:
                raise SipParseError("Bad header line")
            name = name.rstrip(WSP)
            entry = lookup.get(name) or lookup.get(name.lower())
            if entry is None:
                if not is_token(name):
                    raise SipParseError("Bad header name")
                entry = (name.lower(), name)
        if check_length and len(line) > max_line:
            raise SipParseError("Header line too long", status_code=513)
        key = entry[0]
        value = value.strip(WSP)
        items.append((key, entry[1], value))
        values = index.get(key)
        index[key] = (value,) if values is None else (*values, value)
    return lines[0], Headers._adopt(items, index)


#: The headers RFC 3261 8.2.6.2 copies from a request into its response.
RESPONSE_COPY_KEYS: Final = ("via", "from", "to", "call-id", "cseq")


def salvage_headers(lines: list[str], max_headers: int) -> Headers:
    """Best-effort Via, From, To, Call-ID and CSeq field lines of a message that failed to parse.

    Never raises: lines that do not look like ``name: value`` are skipped. The values are raw and
    may themselves be malformed; they are only for echoing back in a 400.
    """
    items: list[tuple[str, str, str]] = []
    index: dict[str, tuple[str, ...]] = {}
    for line in lines[1 : max_headers + 1]:
        name, colon, value = line.partition(":")
        if not colon or "\r" in value or "\n" in value:
            continue
        key, written = header_key(name.strip(WSP))
        if key not in RESPONSE_COPY_KEYS:
            continue
        value = value.strip(WSP)
        items.append((key, written, value))
        index[key] = (*index.get(key, ()), value)
    return Headers._adopt(items, index)


def single_value(values: list[str], name: str) -> str:
    """The one value of a header that must appear exactly once (RFC 4475 3.3.8)."""
    if not values:
        raise SipParseError(f"Missing {name} header")
    if len(values) > 1:
        raise SipParseError(f"Multiple {name} headers")
    return values[0]


class CSeq:
    """A CSeq value (RFC 3261 20.16): sequence number and method. Immutable."""

    __slots__ = ("_method", "_seq")

    def __init__(self, seq: int, method: str) -> None:
        self._seq = seq
        self._method = method

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def method(self) -> str:
        return self._method

    def __str__(self) -> str:
        return f"{self._seq} {self._method}"

    def __repr__(self) -> str:
        return f"CSeq({self._seq}, {self._method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self._seq == other._seq and self._method == other._method

    def __hash__(self) -> int:
        return hash((self._seq, self._method))


#: Largest CSeq number (RFC 3261 8.1.1.5: a 32-bit unsigned integer) and delta-seconds value.
MAX_UINT32: Final = 2**32 - 1
# The usual CSeq, read in one match: up to ten digits, one SP, a token method.
_PLAIN_CSEQ_RE = re.compile(r"([0-9]{1,10}) ([A-Za-z0-9\-.!%*_+`'~]+)")


def parse_cseq(value: str) -> CSeq:
    """CSeq = 1*DIGIT LWS Method (RFC 3261 20.16), the number below 2**32 (8.1.1.5)."""
    m = _PLAIN_CSEQ_RE.fullmatch(value)
    if m is not None:
        seq = int(m.group(1))
        if seq <= MAX_UINT32:
            return CSeq(seq, m.group(2))
    gap = find_wsp(value)
    if gap < 0:
        raise SipParseError("Bad CSeq header")
    method = value[gap:].lstrip(WSP)
    number = parse_uint(value[:gap], MAX_UINT32)
    if number is None or not is_token(method):
        raise SipParseError("Bad CSeq header")
    return CSeq(number, method)


def parse_max_forwards(value: str) -> int:
    """Max-Forwards = 1*DIGIT, 0 to 255 (RFC 3261 20.22)."""
    hops = parse_uint(value, 255)
    if hops is None:
        raise SipParseError("Bad Max-Forwards header")
    return hops


def parse_content_length(value: str) -> int:
    """Content-Length = 1*DIGIT (RFC 3261 20.14); a negative value is an error (RFC 4475 3.1.2.3)."""
    length = parse_uint(value, MAX_UINT32)
    if length is None:
        raise SipParseError("Bad Content-Length header")
    return length


def parse_expires(value: str) -> int:
    """delta-seconds of Expires (RFC 3261 20.19) or a Contact ``expires`` parameter (20.10).

    A number above 2**32-1 is out of range; like RFC 4475 3.1.2.4 allows, it is read as the largest
    value rather than refused: a registrar lowers it to its own maximum in any case.
    """
    if not (value.isascii() and value.isdigit()):
        raise SipParseError("Bad Expires value")
    seconds = parse_uint(value, MAX_UINT32)
    return MAX_UINT32 if seconds is None else seconds


def parse_call_id(value: str) -> str:
    """Call-ID = word [ "@" word ] (RFC 3261 20.8)."""
    if not is_call_id(value):
        raise SipParseError("Bad Call-ID header")
    return value


def parse_media_type(value: str) -> tuple[str, Parameters]:
    """``type/subtype`` in lower case and the parameters of a Content-Type or Accept element
    (RFC 3261 20.15, 20.1; media types compare case-insensitively)."""
    semi = value.find(";")
    media = (value if semi < 0 else value[:semi]).strip(WSP)
    main, slash, sub = media.partition("/")
    main = main.strip(WSP)
    sub = sub.strip(WSP)
    if not slash or not is_token(main) or not is_token(sub):
        raise SipParseError("Bad media type")
    params = parse_header_parameters(value[semi:]) if semi >= 0 else Parameters()
    return f"{main}/{sub}".lower(), params


def parse_option_tags(values: list[str]) -> tuple[str, ...]:
    """The option tags of Require, Proxy-Require, Supported or Unsupported (RFC 3261 20.32)."""
    tags: list[str] = []
    for value in values:
        for part in split_list(value):
            if not part:
                continue
            if not is_token(part):
                raise SipParseError("Bad option tag")
            tags.append(part)
    return tuple(tags)
