"""SIP and SIPS URIs (RFC 3261 19.1) and the other URIs a SIP message may carry.

``parse_uri`` returns a ``SipUri`` for the ``sip:`` and ``sips:`` schemes and an opaque ``AbsoluteUri``
for any other well-formed scheme (RFC 3261 25.1 absoluteURI, from RFC 2396), so that a request for
``tel:`` or ``mailto:`` can still be parsed and answered 416 Unsupported URI Scheme (8.2.2.1).

Components are kept as received, %-escapes included (19.1.2), and re-serialize to the same text;
``==`` applies the comparison rules of 19.1.4.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote as _percent_decode

from services.signaling.sip.cache import memoized
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.grammar import is_host, parse_port
from services.signaling.sip.parameters import EMPTY_URI_PARAMETERS, UriParameters, parse_uri_parameters

SIP_SCHEMES: Final = frozenset({"sip", "sips"})

# user = 1*( unreserved / escaped / user-unreserved ), user-unreserved = "&" / "=" / "+" / "$" / "," /
# ";" / "?" / "/". telephone-subscriber (RFC 2806) characters fall within the same set.
_USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
# The same without escapes: one character class, which is what nearly every user part is.
_PLAIN_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]+")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*")
# hname = 1*( hnv-unreserved / unreserved / escaped ), hvalue = *( same ); hnv-unreserved = "[" / "]" /
# "/" / "?" / ":" / "+" / "$"
_HNAME_RE = re.compile(r"(?:[A-Za-z0-9\[\]/?:+$\-_.!~*'()]|%[0-9A-Fa-f]{2})+")
_HVALUE_RE = re.compile(r"(?:[A-Za-z0-9\[\]/?:+$\-_.!~*'()]|%[0-9A-Fa-f]{2})*")
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ); opaque-part = uric-no-slash *uric (RFC 2396)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_URIC_RE = re.compile(r"(?:[A-Za-z0-9;/?:@&=+$,\-_.!~*'()]|%[0-9A-Fa-f]{2})+")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# Where the host of a SIP URI ends: at ":" (port), ";" (parameters), "?" (headers) or the end.
_HOSTPORT_RE = re.compile(r"\[[^\]]*\]|[^:;?\[]+")
# RFC 3261 25.1 reserved: an escaped reserved character is not the same as the character (19.1.4).
_RESERVED = frozenset(";/?:@&=+$,")
# Parameters that make two URIs differ when only one of them has it (RFC 3261 19.1.4).
_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr", "transport")
# Characters a user part may carry unescaped (RFC 3261 25.1 unreserved / user-unreserved).
_USER_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/")


def unescape(text: str) -> str:
    """Resolve %-escapes (RFC 3261 19.1.2). Octets that are not UTF-8 become surrogate escapes."""
    if "%" not in text:
        return text
    return _percent_decode(text, errors="surrogateescape")


def escape_user(text: str) -> str:
    """``text`` as a SIP URI user part, %-escaping what the grammar does not allow (19.1.2)."""
    out: list[str] = []
    for ch in text:
        if ch in _USER_SAFE:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def _normalize_escapes(text: str) -> str:
    """Canonical form for comparison: unreserved characters unescaped, other escapes upper-cased."""
    if "%" not in text:
        return text

    def fix(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return "%" + m.group(1).upper() if ch in _RESERVED else ch

    return _ESCAPE_RE.sub(fix, text)


class SipUri:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 19.1.1).

    Immutable. ``user``, ``password``, parameter values and ``headers`` are kept escaped as received;
    ``unescape`` gives their text. ``port`` is None when absent (not 5060: 19.1.4 tells the two apart).
    """

    __slots__ = ("_headers", "_host", "_params", "_password", "_port", "_scheme", "_text", "_user")

    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        password: str | None = None,
        port: int | None = None,
        params: UriParameters = EMPTY_URI_PARAMETERS,
        headers: tuple[tuple[str, str], ...] = (),
        scheme: str = "sip",
    ) -> None:
        self._scheme = scheme
        self._user = user
        self._password = password
        self._host = host
        self._port = port
        self._params = params
        self._headers = headers
        self._text: str | None = None

    @property
    def scheme(self) -> str:
        """``sip`` or ``sips``, lower case."""
        return self._scheme

    @property
    def user(self) -> str | None:
        return self._user

    @property
    def password(self) -> str | None:
        return self._password

    @property
    def host(self) -> str:
        """Hostname, IPv4 address or bracketed IPv6 reference, as written."""
        return self._host

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def params(self) -> UriParameters:
        return self._params

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The ``?name=value&...`` part, escaped, in order."""
        return self._headers

    @property
    def transport(self) -> str | None:
        """The transport parameter, lower case (RFC 3261 19.1.1)."""
        value = self._params.get("transport")
        return None if value is None else unescape(value).lower()

    @property
    def address_of_record(self) -> str:
        """The canonical AOR a registrar indexes bindings by (RFC 3261 10.3 step 5): no parameters
        or headers, user unescaped, host in lower case."""
        user = "" if self._user is None else unescape(self._user) + "@"
        port = "" if self._port is None else f":{self._port}"
        return f"{self._scheme}:{user}{self._host.lower()}{port}"

    def replace(
        self,
        *,
        host: str | None = None,
        user: str | None = None,
        port: int | None = None,
        params: UriParameters | None = None,
        headers: tuple[tuple[str, str], ...] | None = None,
        scheme: str | None = None,
    ) -> SipUri:
        """A copy with the given components changed (None keeps the current one)."""
        return SipUri(
            self._host if host is None else host,
            user=self._user if user is None else user,
            password=self._password,
            port=self._port if port is None else port,
            params=self._params if params is None else params,
            headers=self._headers if headers is None else headers,
            scheme=self._scheme if scheme is None else scheme,
        )

    def __str__(self) -> str:
        # Immutable: serialize once (every response and dialog lookup needs the text).
        if self._text is not None:
            return self._text
        parts = [self._scheme, ":"]
        if self._user is not None:
            parts.append(self._user)
            if self._password is not None:
                parts += (":", self._password)
            parts.append("@")
        parts.append(self._host)
        if self._port is not None:
            parts.append(f":{self._port}")
        if self._params:
            parts.append(str(self._params))
        if self._headers:
            parts.append("?" + "&".join(f"{name}={value}" for name, value in self._headers))
        self._text = "".join(parts)
        return self._text

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        """URI equivalence of RFC 3261 19.1.4."""
        if not isinstance(other, SipUri):
            return NotImplemented
        if (
            self._scheme != other._scheme
            or self._port != other._port
            or self._host.lower() != other._host.lower()
            or (self._user is None) != (other._user is None)
            or (self._password is None) != (other._password is None)
        ):
            return False
        # userinfo compares case-sensitively, everything else case-insensitively (19.1.4).
        if _normalize_escapes(self._user or "") != _normalize_escapes(other._user or ""):
            return False
        if _normalize_escapes(self._password or "") != _normalize_escapes(other._password or ""):
            return False
        if not _params_match(self._params, other._params):
            return False
        return _header_set(self._headers) == _header_set(other._headers)

    def __hash__(self) -> int:
        # Only what every equal pair shares: parameters present in one URI alone may be ignored.
        user = None if self._user is None else _normalize_escapes(self._user)
        return hash((self._scheme, user, self._host.lower(), self._port))


def _params_match(a: UriParameters, b: UriParameters) -> bool:
    a_keys = {UriParameters._key(name): value for name, value in a.pairs}
    b_keys = {UriParameters._key(name): value for name, value in b.pairs}
    for key in a_keys.keys() | b_keys.keys():
        if key in a_keys and key in b_keys:
            va, vb = a_keys[key], b_keys[key]
            if (va is None) != (vb is None):
                return False
            if _normalize_escapes(va or "").lower() != _normalize_escapes(vb or "").lower():
                return False
        elif key in _SIGNIFICANT_PARAMS:
            return False
    return True


def _header_set(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return sorted((_normalize_escapes(n).lower(), _normalize_escapes(v).lower()) for n, v in headers)


class AbsoluteUri:
    """A URI of a scheme other than sip/sips, kept opaque (RFC 3261 25.1 absoluteURI).

    Enough to route nothing, and enough to answer 416 (RFC 3261 8.2.2.1) or to carry ``tel:`` and
    ``mailto:`` values through To, From and Contact.
    """

    __slots__ = ("_rest", "_scheme")

    def __init__(self, scheme: str, rest: str) -> None:
        self._scheme = scheme
        self._rest = rest

    @property
    def scheme(self) -> str:
        """The scheme in lower case (schemes are case-insensitive, RFC 2396 3.1)."""
        return self._scheme

    @property
    def rest(self) -> str:
        """Everything after ``scheme:``, as received."""
        return self._rest

    def __str__(self) -> str:
        return f"{self._scheme}:{self._rest}"

    def __repr__(self) -> str:
        return f"AbsoluteUri({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AbsoluteUri):
            return NotImplemented
        return self._scheme == other._scheme and self._rest == other._rest

    def __hash__(self) -> int:
        return hash((self._scheme, self._rest))


Uri = SipUri | AbsoluteUri


@memoized
def parse_uri(text: str) -> SipUri | AbsoluteUri:
    """Parse a Request-URI or the URI of a name-addr/addr-spec. Raises SipParseError("Bad URI")."""
    colon = text.find(":")
    if colon <= 0:
        raise SipParseError("Bad URI")
    scheme = text[:colon].lower()
    if scheme == "sip" or scheme == "sips":
        try:
            return _parse_sip_uri(scheme, text[colon + 1 :])
        except SipParseError:
            raise SipParseError("Bad URI") from None
    rest = text[colon + 1 :]
    # hier-part and opaque-part are both non-empty runs of uric characters (RFC 2396 3).
    if _SCHEME_RE.fullmatch(scheme) is None or _URIC_RE.fullmatch(rest) is None:
        raise SipParseError("Bad URI")
    return AbsoluteUri(scheme, rest)


def _parse_sip_uri(scheme: str, rest: str) -> SipUri:
    # SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]   (RFC 3261 25.1)
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        # "@" cannot appear unescaped in a parameter or header, so the first one ends the userinfo.
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        colon = userinfo.find(":")
        if colon >= 0:
            user = userinfo[:colon]
            password = userinfo[colon + 1 :]
            if _PASSWORD_RE.fullmatch(password) is None:
                raise SipParseError("Bad URI")
        else:
            user = userinfo
        if _PLAIN_USER_RE.fullmatch(user) is None and _USER_RE.fullmatch(user) is None:
            raise SipParseError("Bad URI")
    m = _HOSTPORT_RE.match(rest)
    if m is None:
        raise SipParseError("Bad URI")
    host = m.group()
    if not is_host(host):
        raise SipParseError("Bad URI")
    rest = rest[m.end() :]
    port: int | None = None
    if rest[:1] == ":":
        stop = len(rest)
        for sep in ";?":
            i = rest.find(sep, 1, stop)
            if i >= 0:
                stop = i
        port = parse_port(rest[1:stop])
        rest = rest[stop:]
    params = EMPTY_URI_PARAMETERS
    if rest[:1] == ";":
        q = rest.find("?")
        if q < 0:
            params = parse_uri_parameters(rest[1:])
            rest = ""
        else:
            params = parse_uri_parameters(rest[1:q])
            rest = rest[q:]
    headers: tuple[tuple[str, str], ...] = ()
    if rest[:1] == "?":
        headers = _parse_uri_headers(rest[1:])
    elif rest:
        raise SipParseError("Bad URI")
    return SipUri(
        host, user=user, password=password, port=port, params=params, headers=headers, scheme=scheme
    )


def _parse_uri_headers(text: str) -> tuple[tuple[str, str], ...]:
    # headers = "?" header *( "&" header ), header = hname "=" hvalue   (RFC 3261 25.1)
    out: list[tuple[str, str]] = []
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not eq or _HNAME_RE.fullmatch(name) is None or _HVALUE_RE.fullmatch(value) is None:
            raise SipParseError("Bad URI")
        out.append((name, value))
    return tuple(out)
