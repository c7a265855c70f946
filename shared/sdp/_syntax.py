"""Lexical rules of RFC 8866 section 9 (and RFC 8839 section 5.1) shared by the SDP modules.

Numbers are matched as ASCII digits before int() (which would take ``+1``, ``1_0`` and Arabic digits and
has a digit limit), so hostile input only ever meets :class:`~shared.sdp.errors.SdpError`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from shared.sdp.errors import SdpError

# RFC 8866 section 9: token-char = %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
TOKEN_CLASS = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]"
TOKEN = re.compile(f"{TOKEN_CLASS}+")
PROTO = re.compile(f"{TOKEN_CLASS}+(?:/{TOKEN_CLASS}+)*")
# RFC 8839 section 5.1: ice-char = ALPHA / DIGIT / "+" / "/"
ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
# Bounded so that int() never meets Python's digit limit on hostile input.
DIGITS = re.compile(r"[0-9]{1,40}")
DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?")
# RFC 8866 section 5.10: typed-time = 1*DIGIT [fixed-len-time-unit]
TYPED_TIME = re.compile(r"(-?)([0-9]{1,20})([dhms]?)")
# RFC 8866 section 9: FQDN; we also want a letter so that "999.1.1.1" is a bad IPv4 address.
FQDN = re.compile(r"(?=[A-Za-z0-9.-]*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.?")
# RFC 8866 section 9: text/byte-string exclude NUL, CR and LF.
FORBIDDEN = re.compile(r"[\x00\r\n]")
# RFC 8839 section 5.1: extension-att-value = *VCHAR
VCHARS = re.compile(r"[\x21-\x7e]+")
OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = re.compile(rf"{OCTET}(?:\.{OCTET}){{3}}")
HEX_PAIRS = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*")

TIME_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_PORT = 65535
MAX_U32 = 2**32 - 1


def parse_int(text: str, what: str, reason: str, low: int = 0, high: int | None = None) -> int:
    """A decimal made of ASCII digits only: int() alone would take '+1', '1_0' and Arabic digits."""
    if DIGITS.fullmatch(text) is None:
        raise SdpError(reason, f"{what} {text!r} is not a number")
    number = int(text)
    if number < low or (high is not None and number > high):
        bound = f"{low}-{high}" if high is not None else f"at least {low}"
        raise SdpError(reason, f"{what} {number} is not {bound}")
    return number


def check_token(text: str, what: str, reason: str) -> str:
    if TOKEN.fullmatch(text) is None:
        raise SdpError(reason, f"{what} {text!r} is not a token")
    return text


def split_fields(value: str) -> list[str]:
    """Split on spaces; runs of spaces are a harmless deviation some peers make."""
    return [part for part in value.split(" ") if part]


def check_text(text: str, reason: str) -> str:
    if FORBIDDEN.search(text) is not None:
        raise SdpError(reason, "NUL, CR or LF inside a line")
    return text


def ip_version(address: str) -> int | None:
    """4 or 6 for an IP literal, None otherwise; a regex first because ipaddress is slow on IPv4."""
    if IPV4.fullmatch(address) is not None:
        return 4
    if ":" in address:
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return None
        return 6
    return None


def check_host(address: str, addr_type: str | None, reason: str) -> str:
    """An IPv4/IPv6 literal or an FQDN (RFC 8866 section 9 unicast-address; RFC 8839 mDNS names)."""
    version = ip_version(address)
    if version is None:
        if FQDN.fullmatch(address) is None:
            raise SdpError(reason, f"{address!r} is not an address")
        return address
    if addr_type is not None and addr_type != f"IP{version}":
        raise SdpError(reason, f"{address!r} is not an {addr_type} address")
    return address
