"""Building blocks of the SIP grammar (RFC 3261 section 25.1) shared by the header and URI parsers.

Tokens, quoted strings, hosts and ports. Expressions are compiled once at import; parsers call
``fullmatch``/``match`` on short strings and use str methods for everything else.
"""

from __future__ import annotations

import ipaddress
import re

from services.signaling.sip.cache import memoized
from services.signaling.sip.errors import SipParseError

#: Whitespace inside one logical header line once folding is undone (RFC 3261 7.3.1, 25.1 LWS).
WSP = " \t"

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# display-name = *(token LWS) / quoted-string; RFC 4475 3.1.1.6 allows no LWS before "<".
_TOKEN_WORDS_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")
# quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE, qdtext = LWS / %x21 / %x23-5B / %x5D-7E /
# UTF8-NONASCII, quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F). Non-ASCII is accepted as is: the
# head is decoded with surrogateescape so bytes that are not UTF-8 survive a round trip.
_QUOTED_RE = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"')
_QUOTED_PAIR_RE = re.compile(r"\\([\x00-\x7f])")
# gen-value = token / host / quoted-string (the quoted form is checked with _QUOTED_RE).
_GEN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+")
# callid = word [ "@" word ] (RFC 3261 20.8, 25.1)
_CALL_ID_RE = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?"
)
# hostname = *( domainlabel "." ) toplabel [ "." ]; labels are delimited by dots, so the match is
# linear in the length of the text.
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
_IPV6_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]+")
# Characters a quoted string cannot hold as they are (RFC 3261 25.1 qdtext) and need a quoted-pair.
_NEEDS_QUOTED_PAIR_RE = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def is_token(text: str) -> bool:
    """True when ``text`` is an RFC 3261 token (methods, header names, parameter names, tags)."""
    return _TOKEN_RE.fullmatch(text) is not None


def is_token_words(text: str) -> bool:
    """True for an unquoted display name: tokens separated by whitespace (RFC 3261 25.1)."""
    return _TOKEN_WORDS_RE.fullmatch(text) is not None


def is_gen_value(text: str) -> bool:
    """True for a parameter value: token, host or quoted-string (RFC 3261 25.1 gen-value)."""
    if text[:1] == '"':
        return _QUOTED_RE.fullmatch(text) is not None
    return _GEN_VALUE_RE.fullmatch(text) is not None


def is_call_id(text: str) -> bool:
    """True for a Call-ID value (RFC 3261 20.8: word [ "@" word ])."""
    return _CALL_ID_RE.fullmatch(text) is not None


def match_quoted(text: str, pos: int) -> tuple[str, int] | None:
    """Read a quoted-string starting at ``text[pos]``: its unescaped content and the end index."""
    m = _QUOTED_RE.match(text, pos)
    if m is None:
        return None
    content = m.group(1)
    if "\\" in content:
        content = _QUOTED_PAIR_RE.sub(r"\1", content)
    return content, m.end()


def unquote(text: str) -> str:
    """The content of a quoted-string (quotes removed, quoted-pairs resolved); other text as is."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        found = match_quoted(text, 0)
        if found is not None and found[1] == len(text):
            return found[0]
    return text


def quote(text: str) -> str:
    """``text`` as a quoted-string. CR and LF cannot be carried by one (RFC 3261 25.1) and become SP,
    which also keeps a display name from smuggling a header line into a message."""
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    return '"' + _NEEDS_QUOTED_PAIR_RE.sub(lambda m: "\\" + m.group(0), text) + '"'


def is_ipv4(text: str) -> bool:
    """True for a dotted-quad IPv4 address (RFC 3261 25.1 IPv4address, each part at most 255)."""
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not (0 < len(part) <= 3 and part.isascii() and part.isdigit() and int(part) <= 255):
            return False
    return True


def is_ipv6(text: str) -> bool:
    """True for an IPv6 address without brackets (RFC 3261 25.1 IPv6address, no zone index)."""
    if _IPV6_CHARS_RE.fullmatch(text) is None:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@memoized
def is_host(text: str) -> bool:
    """True for hostname / IPv4address / IPv6reference (RFC 3261 25.1 host)."""
    if _HOSTNAME_RE.fullmatch(text) is not None:
        return True
    if text[:1] == "[":
        return text[-1] == "]" and is_ipv6(text[1:-1])
    # A toplabel starts with a letter, which is what tells "192.0.2.1" from a hostname.
    return is_ipv4(text)


def parse_port(text: str) -> int:
    """A port number (RFC 3261 25.1 port = 1*DIGIT), held to the 16 bits TCP and UDP carry."""
    if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()):
        raise SipParseError("Bad port")
    port = int(text)
    if port > 65535:
        raise SipParseError("Bad port")
    return port


def parse_uint(text: str, maximum: int) -> int | None:
    """A 1*DIGIT value no greater than ``maximum``, or None when it is not one.

    Length is checked before ``int()``, which would otherwise spend time (and past 4300 digits raise
    ValueError) on the overlarge values of RFC 4475 3.1.2.4.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > 20 or len(digits) > len(str(maximum)):
        return None
    value = int(digits)
    return value if value <= maximum else None


def find_wsp(text: str, start: int = 0) -> int:
    """Index of the first SP or HTAB at or after ``start``, or -1."""
    sp = text.find(" ", start)
    tab = text.find("\t", start)
    if sp < 0:
        return tab
    if tab < 0:
        return sp
    return min(sp, tab)
