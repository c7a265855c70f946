"""name-addr / addr-spec header values: From (RFC 3261 20.20), To (20.39), Contact (20.10), Route
(20.34), Record-Route (20.30) and Reply-To (20.31), with the grammar of 25.1.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from services.signaling.sip.cache import memoized
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.grammar import WSP, is_token_words, match_quoted, parse_uint, quote
from services.signaling.sip.headers import parse_expires, split_list
from services.signaling.sip.parameters import EMPTY_PARAMETERS, Parameters, parse_header_parameters
from services.signaling.sip.uri import AbsoluteUri, SipUri, parse_uri

#: The value of ``Contact: *`` (RFC 3261 10.2.2: remove all bindings).
STAR: Final = "*"

# The usual shape, read in one match: an optional quoted display name without quoted-pairs, then
# <URI>. Anything else takes the general path.
_PLAIN_NAME_ADDR_RE = re.compile(r'(?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"[ \t]*)?<([^<>"\s]+)>')


class Address:
    """A URI with an optional display name and header parameters (``tag``, ``expires``, ``q``...).

    Immutable. ``display_name`` is the text of the display name (quotes and quoted-pairs resolved),
    or None when there was none.
    """

    __slots__ = ("_display_name", "_params", "_uri")

    def __init__(
        self,
        uri: SipUri | AbsoluteUri,
        display_name: str | None = None,
        params: Parameters = EMPTY_PARAMETERS,
    ) -> None:
        self._uri = uri
        self._display_name = display_name
        self._params = params

    @property
    def uri(self) -> SipUri | AbsoluteUri:
        return self._uri

    @property
    def display_name(self) -> str | None:
        return self._display_name

    @property
    def params(self) -> Parameters:
        return self._params

    @property
    def tag(self) -> str | None:
        """The From/To tag (RFC 3261 19.3), or None."""
        return self._params.get("tag")

    @property
    def expires(self) -> int | None:
        """A Contact's ``expires`` parameter in seconds (RFC 3261 20.10), or None."""
        value = self._params.get("expires")
        return None if value is None else parse_expires(value)

    def with_tag(self, tag: str) -> Address:
        return Address(self._uri, self._display_name, self._params.with_param("tag", tag))

    def with_params(self, params: Parameters) -> Address:
        return Address(self._uri, self._display_name, params)

    def __str__(self) -> str:
        # Always name-addr: angle brackets are never wrong, and required as soon as the URI has a
        # comma, question mark or semicolon (RFC 3261 20.10).
        name = "" if self._display_name is None else quote(self._display_name) + " "
        return f"{name}<{self._uri}>{self._params}"

    def __repr__(self) -> str:
        return f"Address({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return (
            self._uri == other._uri
            and self._display_name == other._display_name
            and self._params == other._params
        )

    def __hash__(self) -> int:
        return hash((self._uri, self._display_name))


@memoized
def parse_address(value: str) -> Address:
    """Parse ``( name-addr / addr-spec ) *( SEMI generic-param )`` (RFC 3261 25.1).

    ``value`` is one element, already free of surrounding LWS. Raises SipParseError("Bad address").
    """
    try:
        return _parse_address(value)
    except SipParseError:
        raise SipParseError("Bad address") from None


def _parse_address(value: str) -> Address:
    m = _PLAIN_NAME_ADDR_RE.match(value)
    if m is not None:
        display_text, uri_text = m.group(1, 2)
        rest = value[m.end() :]
        return Address(
            parse_uri(uri_text),
            display_text,
            parse_header_parameters(rest) if rest else EMPTY_PARAMETERS,
        )
    if not value:
        raise SipParseError("Bad address")
    display: str | None = None
    if value[0] == '"':
        found = match_quoted(value, 0)
        if found is None:
            raise SipParseError("Bad address")
        display, i = found
        while i < len(value) and value[i] in WSP:
            i += 1
        if value[i : i + 1] != "<":
            raise SipParseError("Bad address")
        return _name_addr(value, i, display)
    lt = value.find("<")
    if lt >= 0:
        prefix = value[:lt]
        # A "<" after a ";" or a quote belongs to a parameter of an addr-spec, not to a name-addr.
        if ";" not in prefix and '"' not in prefix:
            prefix = prefix.rstrip(WSP)
            if prefix:
                # display-name = *(token LWS): "Bell, Alexander" has to be quoted (RFC 4475 3.1.2.15)
                if not is_token_words(prefix):
                    raise SipParseError("Bad address")
                display = prefix
            return _name_addr(value, lt, display)
    # addr-spec: any ";" starts a header parameter, and a URI holding ",", "?" or ";" must have been
    # put in angle brackets (RFC 3261 20.10; RFC 4475 3.1.2.13).
    semi = value.find(";")
    uri_text = (value if semi < 0 else value[:semi]).rstrip(WSP)
    if "?" in uri_text or "," in uri_text:
        raise SipParseError("Bad address")
    uri = parse_uri(uri_text)
    params = EMPTY_PARAMETERS if semi < 0 else parse_header_parameters(value[semi:])
    return Address(uri, None, params)


def _name_addr(value: str, lt: int, display: str | None) -> Address:
    gt = value.find(">", lt + 1)
    if gt < 0:
        raise SipParseError("Bad address")
    # No LWS inside the brackets: "< sip:a@b >" is malformed (RFC 4475 3.1.2.14); parse_uri refuses it.
    uri = parse_uri(value[lt + 1 : gt])
    rest = value[gt + 1 :]
    params = parse_header_parameters(rest) if rest else EMPTY_PARAMETERS
    return Address(uri, display, params)


def parse_addresses(values: list[str]) -> tuple[Address, ...]:
    """Every element of a list of name-addr values (Route, Record-Route, Path...)."""
    return tuple(parse_address(part) for value in values for part in split_list(value))


def parse_contacts(values: list[str]) -> tuple[Address, ...] | Literal["*"]:
    """Contact values (RFC 3261 20.10): ``*`` alone, or addresses whose ``q`` is a qvalue and whose
    ``expires`` is delta-seconds. No Contact header gives an empty tuple."""
    parts = [part for value in values for part in split_list(value)]
    if parts == [STAR]:
        return STAR
    contacts: list[Address] = []
    for part in parts:
        address = parse_address(part)
        for name, value in address.params.pairs:
            key = name.lower()
            if key == "q":
                if value is None or not _is_qvalue(value):
                    raise SipParseError("Bad address")
            elif key == "expires" and (value is None or not (value.isascii() and value.isdigit())):
                raise SipParseError("Bad address")
        contacts.append(address)
    return tuple(contacts)


def _is_qvalue(text: str) -> bool:
    # qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )   (RFC 3261 25.1)
    whole, dot, frac = text.partition(".")
    if whole not in ("0", "1") or len(frac) > 3 or (dot and frac and parse_uint(frac, 999) is None):
        return False
    return whole == "0" or not frac.strip("0")
