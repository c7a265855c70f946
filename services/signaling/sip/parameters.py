"""Ordered ``;name=value`` parameters of SIP URIs and header fields (RFC 3261 7.3.1, 19.1.1, 25.1).

Names compare case-insensitively (RFC 3261 7.3.1 for header parameters, 19.1.4 for URI parameters,
where ``%6C%72`` also names ``lr`` since escapes of unreserved characters are equivalent, 19.1.2).
Values are kept as received (escaped, or quoted), so a message re-encodes to what it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Self

from services.signaling.sip.cache import memoized
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.grammar import WSP, is_gen_value, is_token, unquote

# uri-parameter name and value: 1*paramchar; paramchar = param-unreserved / unreserved / escaped
_PARAMCHARS_RE = re.compile(r"(?:[A-Za-z0-9\[\]/:&+$\-_.!~*'()]|%[0-9A-Fa-f]{2})+")
_PLAIN_PARAMCHARS_RE = re.compile(r"[A-Za-z0-9\[\]/:&+$\-_.!~*'()]+")
# A header parameter as it nearly always is: token [ "=" token-or-host ], no quotes, no LWS.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_GEN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+")
# One header parameter: SEMI generic-param, where SEMI = SWS ";" SWS and EQUAL = SWS "=" SWS.
_HEADER_PARAM_RE = re.compile(
    r'[ \t]*;[ \t]*([^;=" \t]*)[ \t]*(?:=[ \t]*("(?:[^"\\]|\\[\s\S])*"|[^;" \t]*))?[ \t]*'
)
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# Parameters as nearly every message has them (``;branch=z9hG4bK...;rport``, ``;tag=...``): no LWS,
# no quotes, each name a token and each value a token or host. One match checks them all, and what
# it accepts the general path below accepts with the same result.
_PLAIN_HEADER_PARAMS_RE = re.compile(r"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~\[\]:]+)?)+")


def _unescape_name(name: str) -> str:
    if "%" not in name:
        return name
    return _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), name)


class Parameters:
    """Immutable, ordered parameters with case-insensitive names.

    A parameter without a value (``;lr``, ``;rport``) maps to None: test it with ``in``.
    """

    __slots__ = ("_items", "_keys", "_text")

    def __init__(self, items: Iterable[tuple[str, str | None]] = ()) -> None:
        self._items: tuple[tuple[str, str | None], ...] = tuple(items)
        self._keys: tuple[str, ...] | None = None
        self._text: str | None = None

    @staticmethod
    def _key(name: str) -> str:
        return name.lower()

    def _key_tuple(self) -> tuple[str, ...]:
        keys = self._keys
        if keys is None:
            key = self._key
            keys = self._keys = tuple([key(name) for name, _ in self._items])
        return keys

    def _position(self, name: str) -> int:
        # Every Via, From and To is asked for branch, rport or tag: C-level tuple scans, not a loop.
        keys = self._keys
        if keys is None:
            keys = self._key_tuple()
        wanted = self._key(name)
        return keys.index(wanted) if wanted in keys else -1

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._position(name) >= 0

    def __getitem__(self, name: str) -> str | None:
        i = self._position(name)
        if i < 0:
            raise KeyError(name)
        return self._items[i][1]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of ``name``; ``default`` when absent (and None for a parameter without value)."""
        i = self._position(name)
        return default if i < 0 else self._items[i][1]

    def get_unquoted(self, name: str) -> str | None:
        """The value of ``name`` with the quotes of a quoted-string removed (``+sip.instance``)."""
        value = self.get(name)
        return None if value is None else unquote(value)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def pairs(self) -> tuple[tuple[str, str | None], ...]:
        """(name, value) in received order, names as written."""
        return self._items

    def with_param(self, name: str, value: str | None = None) -> Self:
        """A copy where ``name`` is set to ``value`` (in place when present, appended otherwise)."""
        i = self._position(name)
        items = list(self._items)
        if i < 0:
            items.append((name, value))
        else:
            items[i] = (name, value)
        return type(self)(items)

    def without(self, name: str) -> Self:
        """A copy without any parameter called ``name``."""
        wanted = self._key(name)
        key = self._key
        return type(self)(item for item in self._items if key(item[0]) != wanted)

    def __str__(self) -> str:
        # Immutable, and serialized for every response that copies a header: remember the text.
        text = self._text
        if text is None:
            text = "".join(f";{name}" if value is None else f";{name}={value}" for name, value in self._items)
            self._text = text
        return text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Parameters):
            return NotImplemented
        return type(self) is type(other) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._items)!r})"


class UriParameters(Parameters):
    """SIP URI parameters: names may be %-escaped (RFC 3261 19.1.2) and compare unescaped."""

    __slots__ = ()

    @staticmethod
    def _key(name: str) -> str:
        return _unescape_name(name).lower()


EMPTY_PARAMETERS = Parameters()
EMPTY_URI_PARAMETERS = UriParameters()


def parse_uri_parameters(text: str) -> UriParameters:
    """``name[=value]`` items separated by ``;`` (the text after a SIP URI's first ``;``).

    RFC 3261 25.1: uri-parameter = pname [ "=" pvalue ], both 1*paramchar, so ``;;`` and ``;x=``
    are errors.
    """
    items: list[tuple[str, str | None]] = []
    plain = _PLAIN_PARAMCHARS_RE.fullmatch
    escaped = _PARAMCHARS_RE.fullmatch
    for chunk in text.split(";"):
        name, eq, value = chunk.partition("=")
        if plain(name) is None and escaped(name) is None:
            raise SipParseError("Bad URI parameter")
        if eq:
            if plain(value) is None and escaped(value) is None:
                raise SipParseError("Bad URI parameter")
            items.append((name, value))
        else:
            items.append((name, None))
    return UriParameters(items)


def _quotes_hold_no_separator(text: str) -> bool:
    # When no quoted string holds a ";" (or a quoted-pair that could hide a quote), splitting at ";"
    # cannot cut one: true of nearly every real value, +sip.instance="<urn:uuid:...>" included.
    pieces = text.split('"')
    if len(pieces) % 2 == 0:
        return False
    return not any(";" in inner or "\\" in inner for inner in pieces[1::2])


@memoized
def parse_header_parameters(text: str) -> Parameters:
    """Header parameters: ``text`` is empty or starts (after LWS) with ``;``.

    RFC 3261 25.1: *( SEMI generic-param ), generic-param = token [ EQUAL gen-value ]; whitespace
    around ``;`` and ``=`` is allowed (RFC 4475 3.1.1.1) but an empty parameter is not (3.1.2.1).
    """
    if _PLAIN_HEADER_PARAMS_RE.fullmatch(text) is not None:
        return Parameters([_plain_pair(chunk) for chunk in text[1:].split(";")])
    return _parse_header_parameters(text)


def _plain_pair(chunk: str) -> tuple[str, str | None]:
    name, eq, value = chunk.partition("=")
    return (name, value) if eq else (name, None)


def _parse_header_parameters(text: str) -> Parameters:
    """The general path of :func:`parse_header_parameters`: LWS, quoted strings, and every error."""
    items: list[tuple[str, str | None]] = []
    if '"' not in text or _quotes_hold_no_separator(text):
        stripped = text.strip(WSP)
        if not stripped:
            return EMPTY_PARAMETERS
        if stripped[0] != ";":
            raise SipParseError("Bad header parameter")
        token = _TOKEN_RE.fullmatch
        gen_value = _GEN_VALUE_RE.fullmatch
        for chunk in stripped[1:].split(";"):
            name, eq, value = chunk.partition("=")
            if token(name) is None:
                name = name.strip(WSP)
                if token(name) is None:
                    raise SipParseError("Bad header parameter")
            if eq:
                if gen_value(value) is None:
                    value = value.strip(WSP)
                    if not value or not is_gen_value(value):
                        raise SipParseError("Bad header parameter")
                items.append((name, value))
            else:
                items.append((name, None))
        return Parameters(items)
    pos = 0
    end = len(text)
    match = _HEADER_PARAM_RE.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            if not text[pos:].strip(" \t"):
                break
            raise SipParseError("Bad header parameter")
        name, value = m.group(1, 2)
        if not is_token(name) or (value is not None and not (value and is_gen_value(value))):
            raise SipParseError("Bad header parameter")
        items.append((name, value))
        pos = m.end()
    return Parameters(items) if items else EMPTY_PARAMETERS
