"""Session Description Protocol for offer/answer on both legs (RFC 8866, RFC 3264), sans-I/O.

One model serves the browser leg (Chromium's ``UDP/TLS/RTP/SAVPF`` offers with ICE, DTLS and BUNDLE)
and the carrier leg (``RTP/AVP`` G.711 from Asterisk, sipp and SBCs). Everything here is pure: text in,
frozen dataclasses out, text back; nothing reads a clock, a socket or a random source except
:func:`random_session_id`, which callers may replace with their own.

Parsing (:meth:`SessionDescription.parse`) is strict where offer/answer needs it and tolerant where real
peers deviate harmlessly:

- every fault is an :class:`SdpError` naming the line and the fault (``line 7: bad rtpmap
  'a=rtpmap:xx' (...)``) so signaling can answer 488 or 400 with a reason; nothing else is raised;
- unknown type letters are errors (RFC 8866 section 5: a parser must not act on a description it does
  not understand); unknown *attributes* are kept verbatim (RFC 8866 section 5.13);
- LF-only line endings, trailing blanks and blank lines are accepted; the ``i= u= e= p= c= b= t= z= k=
  a=`` lines of a level may come in any order, and serialization writes the order of RFC 8866 section 5.

Attributes are stored as written, in order (:class:`Attribute`), and interpreted on construction: the
ones this module knows (rtpmap, fmtp, candidate, fingerprint, setup, ...) are validated then and their
typed value is kept, so ``a=rtpmap:xx`` fails at its line, typed access never fails later, and a parsed
description serializes back byte for byte (modulo CRLF and trailing blanks).

Offer/answer (RFC 3264): :attr:`MediaDescription.codecs` (static payload types included),
:func:`negotiate_codecs`, :meth:`Direction.answer`, :meth:`SessionDescription.is_on_hold`,
:func:`answer_media`, :func:`answer_session` and :func:`revise` for the origin version of re-offers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import ClassVar, Final, Literal, TypeAlias

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Bandwidth",
    "Candidate",
    "Codec",
    "Connection",
    "Crypto",
    "Direction",
    "ExtMap",
    "Fingerprint",
    "Fmtp",
    "Group",
    "IceCredentials",
    "MediaDescription",
    "Msid",
    "NoCommonCodec",
    "Origin",
    "Repeat",
    "Rtcp",
    "RtcpFb",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Setup",
    "Ssrc",
    "TimeDescription",
    "ZoneAdjustment",
    "answer_media",
    "answer_session",
    "build_media",
    "build_session",
    "negotiate_codecs",
    "random_session_id",
    "rejected_media",
    "revise",
    "transport_attributes",
]


# --- errors ----------------------------------------------------------------------------------------

#: Long lines are cut in messages: a reason goes into a SIP Warning or reason phrase.
_MAX_QUOTED = 100


class SdpError(ValueError):
    """A session description that cannot be used, with the line and the fault.

    ``str(error)`` reads ``line 7: bad rtpmap 'a=rtpmap:xx' (want <payload type> <encoding>/<clock
    rate>[/<channels>])``; the parts are kept apart (:attr:`reason`, :attr:`detail`, :attr:`line`,
    :attr:`text`) for a 488 ``Warning: 399`` (RFC 3261 section 20.43) or a 400 reason phrase.
    """

    def __init__(
        self, reason: str, detail: str | None = None, *, line: int | None = None, text: str | None = None
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.line = line
        self.text = text
        message = reason
        if text is not None:
            quoted = text if len(text) <= _MAX_QUOTED else text[:_MAX_QUOTED] + "..."
            message += f" {quoted!r}"
        if detail:
            message += f" ({detail})"
        if line is not None:
            message = f"line {line}: {message}"
        super().__init__(message)

    def at(self, line: int, text: str) -> SdpError:
        """The same fault, located at a line of the description."""
        return SdpError(self.reason, self.detail, line=line, text=text)


class NoCommonCodec(SdpError):
    """No offered codec is one we accept (RFC 3264 section 6: reject the stream or answer 488)."""

    def __init__(self, offered: Sequence[Codec], accepted: Sequence[str]) -> None:
        self.offered = tuple(offered)
        self.accepted = tuple(accepted)
        names = ", ".join(str(codec) for codec in self.offered) or "none"
        super().__init__("no common codec", f"offered {names}; we accept {', '.join(accepted) or 'none'}")


# --- lexical rules ---------------------------------------------------------------------------------

# RFC 8866 section 9: token-char = %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
_TOKEN_CLASS = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]"
_TOKEN = re.compile(f"{_TOKEN_CLASS}+")
_PROTO = re.compile(f"{_TOKEN_CLASS}+(?:/{_TOKEN_CLASS}+)*")
# RFC 8839 section 5.1: ice-char = ALPHA / DIGIT / "+" / "/"
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
# Bounded so that int() never meets Python's digit limit on hostile input.
_DIGITS = re.compile(r"[0-9]{1,40}")
_DECIMAL = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?")
# RFC 8866 section 5.10: typed-time = 1*DIGIT [fixed-len-time-unit]
_TYPED_TIME = re.compile(r"(-?)([0-9]{1,20})([dhms]?)")
# RFC 8866 section 9: FQDN; we also want a letter so that "999.1.1.1" is a bad IPv4 address.
_FQDN = re.compile(r"(?=[A-Za-z0-9.-]*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.?")
# RFC 8866 section 9: text/byte-string exclude NUL, CR and LF.
_FORBIDDEN = re.compile(r"[\x00\r\n]")
# RFC 8839 section 5.1: extension-att-value = *VCHAR
_VCHARS = re.compile(r"[\x21-\x7e]+")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_HEX_PAIRS = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*")

_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_PORT = 65535
_MAX_U32 = 2**32 - 1


def _int(text: str, what: str, reason: str, low: int = 0, high: int | None = None) -> int:
    """A decimal made of ASCII digits only: int() alone would take '+1', '1_0' and Arabic digits."""
    if _DIGITS.fullmatch(text) is None:
        raise SdpError(reason, f"{what} {text!r} is not a number")
    number = int(text)
    if number < low or (high is not None and number > high):
        bound = f"{low}-{high}" if high is not None else f"at least {low}"
        raise SdpError(reason, f"{what} {number} is not {bound}")
    return number


def _token(text: str, what: str, reason: str) -> str:
    if _TOKEN.fullmatch(text) is None:
        raise SdpError(reason, f"{what} {text!r} is not a token")
    return text


def _fields(value: str) -> list[str]:
    """Split on spaces; runs of spaces are a harmless deviation some peers make."""
    return [part for part in value.split(" ") if part]


def _check_text(text: str, reason: str) -> str:
    if _FORBIDDEN.search(text) is not None:
        raise SdpError(reason, "NUL, CR or LF inside a line")
    return text


def _ip_version(address: str) -> int | None:
    """4 or 6 for an IP literal, None otherwise; a regex first because ipaddress is slow on IPv4."""
    if _IPV4.fullmatch(address) is not None:
        return 4
    if ":" in address:
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return None
        return 6
    return None


def _check_host(address: str, addr_type: str | None, reason: str) -> str:
    """An IPv4/IPv6 literal or an FQDN (RFC 8866 section 9 unicast-address; RFC 8839 mDNS names)."""
    version = _ip_version(address)
    if version is None:
        if _FQDN.fullmatch(address) is None:
            raise SdpError(reason, f"{address!r} is not an address")
        return address
    if addr_type is not None and addr_type != f"IP{version}":
        raise SdpError(reason, f"{address!r} is not an {addr_type} address")
    return address


# --- attribute values --------------------------------------------------------------------------------


class Direction(StrEnum):
    """Media direction attributes (RFC 8866 section 6.7; RFC 3264 sections 5.1 and 6.1).

    Written from the point of view of the description's author: ``sendonly`` in an offer means the
    offerer only sends.
    """

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, *, send: bool, receive: bool) -> Direction:
        if send:
            return cls.SENDRECV if receive else cls.SENDONLY
        return cls.RECVONLY if receive else cls.INACTIVE

    def answer(self, wish: Direction | None = None) -> Direction:
        """The direction to answer this offered direction with (RFC 3264 section 6.1).

        We may send only what the offerer receives and receive only what it sends: ``sendonly`` gets
        ``recvonly``, ``recvonly`` gets ``sendonly``, ``inactive`` gets ``inactive``, and ``sendrecv``
        gets ``wish`` (sendrecv by default); ``wish`` narrows every case (``inactive`` to hold our side).
        """
        wish = wish or Direction.SENDRECV
        return Direction.of(send=self.receives and wish.sends, receive=self.sends and wish.receives)


class Setup(StrEnum):
    """``a=setup`` roles for the DTLS connection (RFC 4145 section 4, RFC 8842 section 5)."""

    ACTPASS = "actpass"
    ACTIVE = "active"
    PASSIVE = "passive"
    HOLDCONN = "holdconn"

    def answer(self, prefer: Setup | None = None) -> Setup:
        """Our role answering this offered role (RFC 8842 section 5.3; RFC 5763 section 5).

        An ``actpass`` offer lets us choose (``prefer``, active or passive: answers must not say
        actpass; passive by default); ``active`` makes us passive and vice versa; ``holdconn`` stays
        ``holdconn``.
        """
        prefer = prefer or Setup.PASSIVE
        if prefer not in (Setup.ACTIVE, Setup.PASSIVE):
            raise ValueError("an answer's setup is active or passive (RFC 8842 section 5.3)")
        if self is Setup.ACTPASS:
            return prefer
        if self is Setup.ACTIVE:
            return Setup.PASSIVE
        if self is Setup.PASSIVE:
            return Setup.ACTIVE
        return Setup.HOLDCONN


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`` (RFC 8866 section 6.6)."""

    payload_type: int
    encoding_name: str
    clock_rate: int
    channels: int | None = None

    _REASON: ClassVar[str] = "bad rtpmap"

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise SdpError(self._REASON, f"payload type {self.payload_type} is not 0-127")
        if _TOKEN.fullmatch(self.encoding_name) is None:
            raise SdpError(self._REASON, f"encoding name {self.encoding_name!r} is not a token")
        if self.clock_rate < 1:
            raise SdpError(self._REASON, "clock rate must be positive")
        if self.channels is not None and self.channels < 1:
            raise SdpError(self._REASON, "channels must be positive")

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        parts = value.split(" ")
        if len(parts) != 2:
            raise SdpError(cls._REASON, "want <payload type> <encoding>/<clock rate>[/<channels>]")
        encoding = parts[1].split("/")
        if len(encoding) not in (2, 3):
            raise SdpError(cls._REASON, "want <encoding>/<clock rate>[/<channels>]")
        return cls(
            _int(parts[0], "payload type", cls._REASON, 0, 127),
            encoding[0],
            _int(encoding[1], "clock rate", cls._REASON, 1),
            _int(encoding[2], "channels", cls._REASON, 1) if len(encoding) == 3 else None,
        )

    def __str__(self) -> str:
        channels = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding_name}/{self.clock_rate}{channels}"

    def to_attribute(self) -> Attribute:
        return Attribute("rtpmap", str(self))


@dataclass(frozen=True, slots=True)
class Fmtp:
    """``a=fmtp:<format> <format specific parameters>`` (RFC 8866 section 6.15).

    ``parameters`` is kept as written: most codecs use ``key=value;...`` (:meth:`parameter_map`), but
    telephone-event lists events (``0-16``, RFC 4733 section 2.4.1).
    """

    format: str
    parameters: str

    _REASON: ClassVar[str] = "bad fmtp"

    def __post_init__(self) -> None:
        _token(self.format, "format", self._REASON)
        if not self.parameters or self.parameters != self.parameters.strip(" \t"):
            raise SdpError(self._REASON, "parameters missing or padded with blanks")
        _check_text(self.parameters, self._REASON)

    @classmethod
    def parse(cls, value: str) -> Fmtp:
        fmt, _, parameters = value.partition(" ")
        return cls(fmt, parameters.strip(" "))

    def parameter_map(self) -> dict[str, str | None]:
        """``key=value`` pairs split on ``;`` (keys lower-cased: RFC 4855 section 3 media type names)."""
        result: dict[str, str | None] = {}
        for item in self.parameters.split(";"):
            key, sep, val = item.strip().partition("=")
            if key:
                result[key.lower()] = val.strip() if sep else None
        return result

    def __str__(self) -> str:
        return f"{self.format} {self.parameters}"

    def to_attribute(self) -> Attribute:
        return Attribute("fmtp", str(self))


@dataclass(frozen=True, slots=True)
class RtcpFb:
    """``a=rtcp-fb:<payload type|*> <type> [<parameters>]`` (RFC 4585 section 4.2)."""

    format: str
    type: str
    parameters: str | None = None

    _REASON: ClassVar[str] = "bad rtcp-fb"

    def __post_init__(self) -> None:
        if self.format != "*":
            _int(self.format, "payload type", self._REASON, 0, 127)
        _token(self.type, "feedback type", self._REASON)
        if self.parameters is not None:
            _check_text(self.parameters, self._REASON)
            if not self.parameters.strip(" "):
                raise SdpError(self._REASON, "empty parameters")

    @classmethod
    def parse(cls, value: str) -> RtcpFb:
        parts = value.split(" ", 2)
        if len(parts) < 2:
            raise SdpError(cls._REASON, "want <payload type|*> <type> [<parameters>]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        tail = f" {self.parameters}" if self.parameters is not None else ""
        return f"{self.format} {self.type}{tail}"

    def to_attribute(self) -> Attribute:
        return Attribute("rtcp-fb", str(self))


@dataclass(frozen=True, slots=True)
class Candidate:
    """An ICE candidate, ``a=candidate:...`` (RFC 8839 section 5.1).

    ``address`` may be an mDNS name (``<uuid>.local``) as Chromium hides host addresses; extensions
    (``generation``, ``ufrag``, ``network-id``, ``network-cost``, ``tcptype`` of RFC 6544) are kept in
    order as name/value pairs.
    """

    foundation: str
    component: int
    transport: str
    priority: int
    address: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    extensions: tuple[tuple[str, str], ...] = ()

    _REASON: ClassVar[str] = "bad candidate"

    def __post_init__(self) -> None:
        reason = self._REASON
        if _ICE_CHARS.fullmatch(self.foundation) is None or len(self.foundation) > 32:
            raise SdpError(reason, "foundation is 1-32 ice-chars")
        if not 1 <= self.component <= 256:
            raise SdpError(reason, f"component {self.component} is not 1-256")
        _token(self.transport, "transport", reason)
        if not 0 <= self.priority <= _MAX_U32:
            raise SdpError(reason, "priority is a 32-bit number")
        _check_host(self.address, None, reason)
        if not 0 <= self.port <= _MAX_PORT:
            raise SdpError(reason, f"port {self.port} is not 0-{_MAX_PORT}")
        _token(self.type, "candidate type", reason)
        if self.related_address is not None:
            _check_host(self.related_address, None, reason)
        if self.related_port is not None and not 0 <= self.related_port <= _MAX_PORT:
            raise SdpError(reason, f"rport {self.related_port} is not 0-{_MAX_PORT}")
        for name, value in self.extensions:
            _token(name, "extension name", reason)
            if name in ("raddr", "rport"):
                raise SdpError(reason, f"a second {name}")
            if _VCHARS.fullmatch(value) is None:
                raise SdpError(reason, f"extension {name} value {value!r} is not printable ASCII")

    @classmethod
    def parse(cls, value: str) -> Candidate:
        reason = cls._REASON
        parts = _fields(value)
        if len(parts) < 8 or parts[6] != "typ":
            raise SdpError(
                reason, "want <foundation> <component> <transport> <priority> <address> <port> typ <type>"
            )
        rest = parts[8:]
        if len(rest) % 2:
            raise SdpError(reason, f"extension {rest[-1]!r} has no value")
        related_address: str | None = None
        related_port: int | None = None
        extensions: list[tuple[str, str]] = []
        # RFC 8839 section 5.1 puts raddr and rport right after the type; found anywhere, they are
        # still the related address, and a second one is an error (it cannot be an extension).
        for name, item in zip(rest[::2], rest[1::2], strict=True):
            if name == "raddr" and related_address is None:
                related_address = item
            elif name == "rport" and related_port is None:
                related_port = _int(item, "rport", reason, 0, _MAX_PORT)
            else:
                extensions.append((name, item))
        return cls(
            foundation=parts[0],
            component=_int(parts[1], "component", reason, 1, 256),
            transport=parts[2],
            priority=_int(parts[3], "priority", reason, 0, _MAX_U32),
            address=parts[4],
            port=_int(parts[5], "port", reason, 0, _MAX_PORT),
            type=parts[7],
            related_address=related_address,
            related_port=related_port,
            extensions=tuple(extensions),
        )

    def extension(self, name: str) -> str | None:
        for key, value in self.extensions:
            if key == name:
                return value
        return None

    def __str__(self) -> str:
        text = (
            f"{self.foundation} {self.component} {self.transport} {self.priority}"
            f" {self.address} {self.port} typ {self.type}"
        )
        if self.related_address is not None:
            text += f" raddr {self.related_address}"
        if self.related_port is not None:
            text += f" rport {self.related_port}"
        for name, value in self.extensions:
            text += f" {name} {value}"
        return text

    def to_attribute(self) -> Attribute:
        return Attribute("candidate", str(self))


#: Digest sizes of the hash functions of RFC 8122 section 5 (and hashlib names where there is one).
_HASHES: Final[dict[str, tuple[int, str | None]]] = {
    "md2": (16, None),
    "md5": (16, "md5"),
    "sha-1": (20, "sha1"),
    "sha-224": (28, "sha224"),
    "sha-256": (32, "sha256"),
    "sha-384": (48, "sha384"),
    "sha-512": (64, "sha512"),
}


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """``a=fingerprint:<hash function> <AA:BB:...>`` of a DTLS certificate (RFC 8122 section 5, RFC 5763).

    Normalized on construction: the hash function lower-case (it is case-insensitive), the digest in
    upper-case colon hex (``UHEX``); lower-case hex from a peer is accepted.
    """

    algorithm: str
    value: str

    _REASON: ClassVar[str] = "bad fingerprint"

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm", _token(self.algorithm, "hash function", self._REASON).lower())
        if _HEX_PAIRS.fullmatch(self.value) is None:
            raise SdpError(self._REASON, "want colon-separated hex pairs")
        object.__setattr__(self, "value", self.value.upper())
        known = _HASHES.get(self.algorithm)
        if known is not None and len(self.digest) != known[0]:
            raise SdpError(self._REASON, f"{self.algorithm} is {known[0]} bytes, not {len(self.digest)}")

    @classmethod
    def parse(cls, value: str) -> Fingerprint:
        parts = value.split(" ")
        if len(parts) != 2:
            raise SdpError(cls._REASON, "want <hash function> <hex pairs>")
        return cls(parts[0], parts[1])

    @classmethod
    def of_certificate(cls, der: bytes, algorithm: str = "sha-256") -> Fingerprint:
        """The fingerprint of a DER certificate (RFC 8122 section 5: over the DER form)."""
        name = _HASHES.get(algorithm.lower(), (0, None))[1]
        if name is None:
            raise ValueError(f"unsupported hash function {algorithm!r}")
        return cls(algorithm, hashlib.new(name, der).digest().hex(":"))

    @property
    def digest(self) -> bytes:
        return bytes.fromhex(self.value.replace(":", ""))

    def matches(self, der: bytes) -> bool:
        """Whether a peer's DER certificate has this fingerprint (RFC 8122 section 5; RFC 5763 section 5)."""
        try:
            return Fingerprint.of_certificate(der, self.algorithm) == self
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"{self.algorithm} {self.value}"

    def to_attribute(self) -> Attribute:
        return Attribute("fingerprint", str(self))


@dataclass(frozen=True, slots=True)
class Connection:
    """Connection data, ``c=<nettype> <addrtype> <connection-address>`` (RFC 8866 section 5.7).

    Only ``IN`` with ``IP4``/``IP6`` is accepted: nothing else can carry RTP for us. ``ttl`` (IPv4) and
    ``address_count`` belong to multicast addresses only.
    """

    net_type: str
    addr_type: str
    address: str
    ttl: int | None = None
    address_count: int | None = None

    _REASON: ClassVar[str] = "bad connection"

    def __post_init__(self) -> None:
        reason = self._REASON
        if self.net_type != "IN":
            raise SdpError(reason, f"network type {self.net_type!r} is not IN")
        if self.addr_type not in ("IP4", "IP6"):
            raise SdpError(reason, f"address type {self.addr_type!r} is not IP4 or IP6")
        _check_host(self.address, self.addr_type, reason)
        multicast = self.is_multicast
        if self.ttl is not None and not (multicast and self.addr_type == "IP4" and 0 <= self.ttl <= 255):
            raise SdpError(reason, "a TTL belongs to an IPv4 multicast address and is 0-255")
        if multicast and self.addr_type == "IP4" and self.ttl is None:
            raise SdpError(reason, "an IPv4 multicast address needs a TTL")
        if self.address_count is not None and not (multicast and self.address_count >= 1):
            raise SdpError(reason, "a number of addresses belongs to a multicast address")

    @property
    def is_multicast(self) -> bool:
        version = _ip_version(self.address)
        if version == 4:
            return 224 <= int(self.address.partition(".")[0]) <= 239
        return version == 6 and ipaddress.IPv6Address(self.address).is_multicast

    @classmethod
    def parse(cls, value: str) -> Connection:
        reason = cls._REASON
        parts = _fields(value)
        if len(parts) != 3:
            raise SdpError(reason, "want <nettype> <addrtype> <address>")
        net_type, addr_type, address = parts
        pieces = address.split("/")
        if len(pieces) > 3:
            raise SdpError(reason, "too many '/' in the address")
        numbers = [_int(piece, "multicast suffix", reason, 0) for piece in pieces[1:]]
        ttl: int | None = None
        count: int | None = None
        if addr_type == "IP4" and numbers:
            ttl = numbers[0]
            count = numbers[1] if len(numbers) == 2 else None
        elif numbers:
            # RFC 8866 section 5.7: IPv6 multicast has no TTL, only the number of addresses.
            if len(numbers) == 2:
                raise SdpError(reason, "an IPv6 address has no TTL")
            count = numbers[0]
        return cls(net_type, addr_type, pieces[0], ttl, count)

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """``IN IP4 <address>`` or ``IN IP6 <address>`` for a unicast literal."""
        return cls("IN", f"IP{ipaddress.ip_address(address).version}", address)

    def __str__(self) -> str:
        text = f"{self.net_type} {self.addr_type} {self.address}"
        if self.ttl is not None:
            text += f"/{self.ttl}"
        if self.address_count is not None:
            text += f"/{self.address_count}"
        return text


@dataclass(frozen=True, slots=True)
class Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 section 2.1)."""

    port: int
    connection: Connection | None = None

    _REASON: ClassVar[str] = "bad rtcp"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= _MAX_PORT:
            raise SdpError(self._REASON, f"port {self.port} is not 0-{_MAX_PORT}")

    @classmethod
    def parse(cls, value: str) -> Rtcp:
        port, _, address = value.partition(" ")
        try:
            connection = Connection.parse(address) if address else None
        except SdpError as error:
            raise SdpError(cls._REASON, error.detail) from None
        return cls(_int(port, "port", cls._REASON, 0, _MAX_PORT), connection)

    def __str__(self) -> str:
        return f"{self.port} {self.connection}" if self.connection is not None else str(self.port)

    def to_attribute(self) -> Attribute:
        return Attribute("rtcp", str(self))


@dataclass(frozen=True, slots=True)
class Group:
    """``a=group:<semantics> <mid> ...`` (RFC 5888 section 5); ``BUNDLE`` per RFC 8843 section 7."""

    semantics: str
    mids: tuple[str, ...] = ()

    _REASON: ClassVar[str] = "bad group"

    def __post_init__(self) -> None:
        _token(self.semantics, "semantics", self._REASON)
        for mid in self.mids:
            _token(mid, "identification tag", self._REASON)

    @classmethod
    def parse(cls, value: str) -> Group:
        parts = _fields(value)
        if not parts:
            raise SdpError(cls._REASON, "missing semantics")
        return cls(parts[0], tuple(parts[1:]))

    def __str__(self) -> str:
        return " ".join((self.semantics, *self.mids))

    def to_attribute(self) -> Attribute:
        return Attribute("group", str(self))


@dataclass(frozen=True, slots=True)
class Msid:
    """``a=msid:<stream id> [<track id>]`` (RFC 8830 section 2)."""

    stream_id: str
    track_id: str | None = None

    _REASON: ClassVar[str] = "bad msid"

    def __post_init__(self) -> None:
        _token(self.stream_id, "stream id", self._REASON)
        if self.track_id is not None:
            _token(self.track_id, "track id", self._REASON)

    @classmethod
    def parse(cls, value: str) -> Msid:
        parts = value.split(" ")
        if len(parts) > 2:
            raise SdpError(cls._REASON, "want <stream id> [<track id>]")
        return cls(parts[0], parts[1] if len(parts) == 2 else None)

    def __str__(self) -> str:
        return self.stream_id if self.track_id is None else f"{self.stream_id} {self.track_id}"

    def to_attribute(self) -> Attribute:
        return Attribute("msid", str(self))


@dataclass(frozen=True, slots=True)
class Ssrc:
    """``a=ssrc:<ssrc> <attribute>[:<value>]`` (RFC 5576 section 4.1), e.g. ``cname`` or ``msid``."""

    ssrc: int
    attribute: str
    value: str | None = None

    _REASON: ClassVar[str] = "bad ssrc"

    def __post_init__(self) -> None:
        if not 0 <= self.ssrc <= _MAX_U32:
            raise SdpError(self._REASON, "ssrc is a 32-bit number")
        _token(self.attribute, "source attribute", self._REASON)
        if self.value is not None:
            _check_text(self.value, self._REASON)

    @classmethod
    def parse(cls, value: str) -> Ssrc:
        ssrc, sep, rest = value.partition(" ")
        if not sep:
            raise SdpError(cls._REASON, "want <ssrc> <attribute>[:<value>]")
        name, colon, attribute_value = rest.partition(":")
        return cls(_int(ssrc, "ssrc", cls._REASON, 0, _MAX_U32), name, attribute_value if colon else None)

    def __str__(self) -> str:
        tail = f":{self.value}" if self.value is not None else ""
        return f"{self.ssrc} {self.attribute}{tail}"

    def to_attribute(self) -> Attribute:
        return Attribute("ssrc", str(self))


@dataclass(frozen=True, slots=True)
class ExtMap:
    """``a=extmap:<id>[/<direction>] <uri> [<attributes>]`` (RFC 8285 section 8)."""

    id: int
    uri: str
    direction: Direction | None = None
    attributes: str | None = None

    _REASON: ClassVar[str] = "bad extmap"

    def __post_init__(self) -> None:
        # RFC 8285 section 8: 1-14 one-byte, 1-255 two-byte, 4096-4351 answerer-chosen; 1*5DIGIT.
        if not 1 <= self.id <= 65535:
            raise SdpError(self._REASON, f"id {self.id} is not 1-65535")
        if _VCHARS.fullmatch(self.uri) is None:
            raise SdpError(self._REASON, "the URI is not printable ASCII")
        if self.attributes is not None:
            _check_text(self.attributes, self._REASON)

    @classmethod
    def parse(cls, value: str) -> ExtMap:
        parts = value.split(" ", 2)
        if len(parts) < 2:
            raise SdpError(cls._REASON, "want <id>[/<direction>] <uri> [<attributes>]")
        ident, slash, direction = parts[0].partition("/")
        if slash and direction not in _DIRECTIONS:
            raise SdpError(cls._REASON, f"direction {direction!r} is not a direction")
        return cls(
            _int(ident, "id", cls._REASON, 1, 65535),
            parts[1],
            Direction(direction) if slash else None,
            parts[2] if len(parts) == 3 else None,
        )

    def __str__(self) -> str:
        head = f"{self.id}/{self.direction}" if self.direction is not None else str(self.id)
        tail = f" {self.attributes}" if self.attributes is not None else ""
        return f"{head} {self.uri}{tail}"

    def to_attribute(self) -> Attribute:
        return Attribute("extmap", str(self))


@dataclass(frozen=True, slots=True)
class Crypto:
    """SDES keys for ``RTP/SAVP`` carriers, ``a=crypto:<tag> <suite> <key params> [<session params>]``
    (RFC 4568 section 9.1)."""

    tag: int
    suite: str
    key_params: str
    session_params: tuple[str, ...] = ()

    _REASON: ClassVar[str] = "bad crypto"

    def __post_init__(self) -> None:
        if not 0 <= self.tag <= 999_999_999:
            raise SdpError(self._REASON, "tag is 1-9 digits")
        _token(self.suite, "crypto suite", self._REASON)
        for part in (self.key_params, *self.session_params):
            if _VCHARS.fullmatch(part) is None:
                raise SdpError(self._REASON, f"{part!r} is not printable ASCII")
        if ":" not in self.key_params:
            raise SdpError(self._REASON, "key params are <method>:<info>")

    @classmethod
    def parse(cls, value: str) -> Crypto:
        parts = _fields(value)
        if len(parts) < 3:
            raise SdpError(cls._REASON, "want <tag> <suite> <key params> [<session params>]")
        return cls(_int(parts[0], "tag", cls._REASON, 0, 999_999_999), parts[1], parts[2], tuple(parts[3:]))

    def __str__(self) -> str:
        return " ".join((str(self.tag), self.suite, self.key_params, *self.session_params))

    def to_attribute(self) -> Attribute:
        return Attribute("crypto", str(self))


def _ptime(name: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        # RFC 8866 section 6.4: non-zero-int-or-real (milliseconds).
        if _DECIMAL.fullmatch(value) is None or float(value) <= 0:
            raise SdpError(f"bad {name}", "want a positive number of milliseconds")
        return float(value)

    return parse


def _ice_chars(name: str, shortest: int) -> Callable[[str], None]:
    def parse(value: str) -> None:
        # RFC 8839 section 5.4: ufrag 4-256 and pwd 22-256 ice-chars.
        if _ICE_CHARS.fullmatch(value) is None or not shortest <= len(value) <= 256:
            raise SdpError(f"bad {name}", f"want {shortest}-256 of A-Z a-z 0-9 + /")

    return parse


def _tokens(name: str) -> Callable[[str], None]:
    def parse(value: str) -> None:
        parts = _fields(value)
        if not parts:
            raise SdpError(f"bad {name}", "missing value")
        for part in parts:
            _token(part, "value", f"bad {name}")

    return parse


def _mid(value: str) -> None:
    # RFC 5888 section 4: identification-tag = token
    _token(value, "identification tag", "bad mid")


def _setup(value: str) -> Setup:
    try:
        return Setup(value)
    except ValueError:
        raise SdpError("bad setup", "want actpass, active, passive or holdconn") from None


_Typed: TypeAlias = (
    RtpMap
    | Fmtp
    | RtcpFb
    | Candidate
    | Fingerprint
    | Rtcp
    | Group
    | Msid
    | Ssrc
    | ExtMap
    | Crypto
    | Direction
    | Setup
    | float
    | None
)

#: Attributes that take a value, with the parser that validates it and gives the typed value.
_VALUED: Final[dict[str, Callable[[str], _Typed]]] = {
    "rtpmap": RtpMap.parse,
    "fmtp": Fmtp.parse,
    "rtcp-fb": RtcpFb.parse,
    "candidate": Candidate.parse,
    "fingerprint": Fingerprint.parse,
    "setup": _setup,
    "rtcp": Rtcp.parse,
    "group": Group.parse,
    "msid": Msid.parse,
    "ssrc": Ssrc.parse,
    "extmap": ExtMap.parse,
    "crypto": Crypto.parse,
    "ptime": _ptime("ptime"),
    "maxptime": _ptime("maxptime"),
    "ice-ufrag": _ice_chars("ice-ufrag", 4),
    "ice-pwd": _ice_chars("ice-pwd", 22),
    "ice-options": _tokens("ice-options"),
    "mid": _mid,
}
#: Property attributes (RFC 8866 section 5.13 ``a=<flag>``) that must not carry a value.
_FLAGS: Final = frozenset({"rtcp-mux", "rtcp-rsize", "ice-lite", "end-of-candidates"})
_DIRECTIONS: Final = frozenset(direction.value for direction in Direction)


@dataclass(frozen=True, slots=True)
class Attribute:
    """One ``a=<name>[:<value>]`` line as written (RFC 8866 section 5.13).

    ``value`` is ``None`` for property attributes (``a=rtcp-mux``) and the exact text after the first
    colon otherwise (``a=msid-semantic: WMS`` keeps its leading blank). Known attributes are
    validated on construction, so ``Attribute("rtpmap", "xx")`` raises :class:`SdpError`, and their typed
    value is kept in :attr:`typed` for the accessors of :class:`MediaDescription` and
    :class:`SessionDescription`.
    """

    name: str
    value: str | None = None
    typed: _Typed = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if _TOKEN.fullmatch(self.name) is None:
            raise SdpError("bad attribute name", text=f"a={self}")
        value = self.value
        if value is not None and _FORBIDDEN.search(value) is not None:
            raise SdpError("bad attribute", "NUL, CR or LF inside a line", text=f"a={self}")
        parse = _VALUED.get(self.name)
        if parse is not None:
            if value is None:
                raise SdpError(f"bad {self.name}", "missing value", text=f"a={self}")
            try:
                object.__setattr__(self, "typed", parse(value))
            except SdpError as error:
                raise SdpError(error.reason, error.detail, text=f"a={self}") from None
        elif self.name in _DIRECTIONS or self.name in _FLAGS:
            if value is not None:
                raise SdpError(f"bad {self.name}", "takes no value", text=f"a={self}")
            if self.name in _DIRECTIONS:
                object.__setattr__(self, "typed", Direction(self.name))

    @classmethod
    def parse(cls, text: str) -> Attribute:
        """An attribute from the text after ``a=``."""
        name, colon, value = text.partition(":")
        return cls(name, value if colon else None)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


# --- codecs --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload format of a media section, as offer/answer sees it (RFC 3264 section 5.1).

    ``channels`` defaults to 1 for audio (RFC 8866 section 6.6); ``parameters`` is the fmtp text and
    ``feedback`` the rtcp-fb values that apply (RFC 4585 section 4.2, ``*`` included).
    """

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    parameters: str | None = None
    feedback: tuple[str, ...] = ()

    def same_format(self, other: Codec) -> bool:
        """Same encoding (names are case-insensitive, RFC 4855 section 3), clock rate and channels."""
        return (
            self.name.lower() == other.name.lower()
            and self.clock_rate == other.clock_rate
            and self.channels == other.channels
        )

    def rtpmap(self) -> RtpMap:
        # Channels are written only when not 1, as peers do; opus is always /2 (RFC 7587 section 7).
        return RtpMap(
            self.payload_type, self.name, self.clock_rate, self.channels if self.channels != 1 else None
        )

    def __str__(self) -> str:
        channels = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.name}/{self.clock_rate}{channels}"


#: RFC 3551 section 6 table 4 and 5: payload types that need no rtpmap.
STATIC_PAYLOAD_TYPES: Final[dict[int, tuple[str, int, int]]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    # RFC 3551 section 4.5.2: G.722 samples at 16 kHz but its RTP clock is 8000 for historical reasons.
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
    25: ("CelB", 90000, 1),
    26: ("JPEG", 90000, 1),
    28: ("nv", 90000, 1),
    31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1),
    33: ("MP2T", 90000, 1),
    34: ("H263", 90000, 1),
}


# --- lines of the description --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (RFC 8866 section 5.2).

    The version must grow by one each time the description changes (RFC 3264 section 8): see
    :func:`revise`.
    """

    username: str
    session_id: int
    session_version: int
    net_type: str
    addr_type: str
    address: str

    _REASON: ClassVar[str] = "bad origin"

    def __post_init__(self) -> None:
        reason = self._REASON
        if not self.username or _fields(self.username) != [self.username]:
            raise SdpError(reason, "username is one word ('-' when there is none)")
        _check_text(self.username, reason)
        if self.session_id < 0 or self.session_version < 0:
            raise SdpError(reason, "session id and version are non-negative numbers")
        if self.net_type != "IN" or self.addr_type not in ("IP4", "IP6"):
            raise SdpError(reason, "want IN IP4 or IN IP6")
        _check_host(self.address, self.addr_type, reason)

    @classmethod
    def parse(cls, value: str) -> Origin:
        reason = cls._REASON
        parts = _fields(value)
        if len(parts) != 6:
            raise SdpError(reason, "want <username> <sess-id> <sess-version> <nettype> <addrtype> <address>")
        return cls(
            parts[0],
            _int(parts[1], "session id", reason),
            _int(parts[2], "session version", reason),
            parts[3],
            parts[4],
            parts[5],
        )

    @classmethod
    def for_address(
        cls, address: str, session_id: int, session_version: int = 1, username: str = "-"
    ) -> Origin:
        connection = Connection.for_address(address)
        return cls(username, session_id, session_version, "IN", connection.addr_type, address)

    def next_version(self) -> Origin:
        return replace(self, session_version=self.session_version + 1)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version}"
            f" {self.net_type} {self.addr_type} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (RFC 8866 section 5.8): ``AS``/``CT`` in kbit/s, ``TIAS`` (RFC 3890)
    in bit/s."""

    type: str
    value: int

    _REASON: ClassVar[str] = "bad bandwidth"

    def __post_init__(self) -> None:
        _token(self.type, "bandwidth type", self._REASON)
        if self.value < 0:
            raise SdpError(self._REASON, "bandwidth is a non-negative number")

    @classmethod
    def parse(cls, value: str) -> Bandwidth:
        kind, colon, amount = value.partition(":")
        if not colon:
            raise SdpError(cls._REASON, "want <bwtype>:<bandwidth>")
        return cls(kind, _int(amount, "bandwidth", cls._REASON))

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


def _typed_time(text: str, what: str, reason: str, signed: bool = False) -> str:
    match = _TYPED_TIME.fullmatch(text)
    if match is None or (match[1] and not signed):
        raise SdpError(reason, f"{what} {text!r} is not <digits>[d|h|m|s]")
    return text


def _seconds(typed_time: str) -> int:
    match = _TYPED_TIME.fullmatch(typed_time)
    if match is None:
        raise ValueError(f"not a typed time: {typed_time!r}")
    seconds = int(match[2]) * _UNITS[match[3]]
    return -seconds if match[1] else seconds


@dataclass(frozen=True, slots=True)
class Repeat:
    """``r=<repeat interval> <active duration> <offsets...>`` (RFC 8866 section 5.10), typed times kept
    as written (``7d``, ``3600``); :meth:`seconds` converts."""

    interval: str
    duration: str
    offsets: tuple[str, ...]

    _REASON: ClassVar[str] = "bad repeat"

    def __post_init__(self) -> None:
        _typed_time(self.interval, "interval", self._REASON)
        _typed_time(self.duration, "duration", self._REASON)
        if not self.offsets:
            raise SdpError(self._REASON, "at least one offset")
        for offset in self.offsets:
            _typed_time(offset, "offset", self._REASON)

    @classmethod
    def parse(cls, value: str) -> Repeat:
        parts = _fields(value)
        if len(parts) < 3:
            raise SdpError(cls._REASON, "want <interval> <duration> <offset>...")
        return cls(parts[0], parts[1], tuple(parts[2:]))

    @staticmethod
    def seconds(typed_time: str) -> int:
        return _seconds(typed_time)

    def __str__(self) -> str:
        return " ".join((self.interval, self.duration, *self.offsets))


@dataclass(frozen=True, slots=True)
class ZoneAdjustment:
    """One ``<adjustment time> <offset>`` pair of a ``z=`` line (RFC 8866 section 5.11)."""

    time: int
    offset: str

    def __post_init__(self) -> None:
        if self.time < 0:
            raise SdpError("bad zone adjustment", "time is a non-negative number")
        _typed_time(self.offset, "offset", "bad zone adjustment", signed=True)

    @staticmethod
    def parse_line(value: str) -> tuple[ZoneAdjustment, ...]:
        parts = _fields(value)
        if not parts or len(parts) % 2:
            raise SdpError("bad zone adjustment", "want <time> <offset> pairs")
        return tuple(
            ZoneAdjustment(_int(time, "time", "bad zone adjustment"), offset)
            for time, offset in zip(parts[::2], parts[1::2], strict=True)
        )


@dataclass(frozen=True, slots=True)
class TimeDescription:
    """``t=<start> <stop>`` with its ``r=`` lines and ``z=`` line (RFC 8866 sections 5.9-5.11 and 9).

    ``t=0 0`` (a permanent session) is what offer/answer uses (RFC 3264 section 5).
    """

    start: int = 0
    stop: int = 0
    repeats: tuple[Repeat, ...] = ()
    zone_adjustments: tuple[ZoneAdjustment, ...] = ()

    _REASON: ClassVar[str] = "bad timing"

    def __post_init__(self) -> None:
        if self.start < 0 or self.stop < 0:
            raise SdpError(self._REASON, "times are non-negative numbers")

    @classmethod
    def parse(cls, value: str) -> TimeDescription:
        parts = _fields(value)
        if len(parts) != 2:
            raise SdpError(cls._REASON, "want <start time> <stop time>")
        return cls(_int(parts[0], "start", cls._REASON), _int(parts[1], "stop", cls._REASON))

    def lines(self) -> list[str]:
        out = [f"t={self.start} {self.stop}"]
        out.extend(f"r={repeat}" for repeat in self.repeats)
        if self.zone_adjustments:
            out.append("z=" + " ".join(f"{zone.time} {zone.offset}" for zone in self.zone_adjustments))
        return out


@dataclass(frozen=True, slots=True)
class IceCredentials:
    """``a=ice-ufrag`` and ``a=ice-pwd`` (RFC 8839 section 5.4)."""

    ufrag: str
    pwd: str

    def __post_init__(self) -> None:
        _ice_chars("ice-ufrag", 4)(self.ufrag)
        _ice_chars("ice-pwd", 22)(self.pwd)

    def attributes(self) -> tuple[Attribute, Attribute]:
        return Attribute("ice-ufrag", self.ufrag), Attribute("ice-pwd", self.pwd)


def _first_typed(attributes: Iterable[Attribute], name: str) -> _Typed:
    for attribute in attributes:
        if attribute.name == name:
            return attribute.typed
    return None


def _first_value(attributes: Iterable[Attribute], name: str) -> str | None:
    for attribute in attributes:
        if attribute.name == name:
            return attribute.value
    return None


def _direction(attributes: Iterable[Attribute]) -> Direction | None:
    for attribute in attributes:
        if isinstance(attribute.typed, Direction):
            return attribute.typed
    return None


def _check_directions(attributes: Iterable[Attribute], reason: str) -> None:
    # RFC 3264 section 5.1 gives a stream one direction; the same one repeated is harmless.
    if len({attribute.typed for attribute in attributes if isinstance(attribute.typed, Direction)}) > 1:
        raise SdpError(reason, "conflicting direction attributes")


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """``m=<media> <port>[/<count>] <proto> <fmt>...`` with its ``i= c= b= k= a=`` lines
    (RFC 8866 section 5.14).

    A port of 0 is a rejected or disabled stream (RFC 3264 sections 6 and 8.2). For RTP profiles
    (``RTP/AVP``, ``RTP/SAVP``, ``UDP/TLS/RTP/SAVPF``, ...) formats are payload types 0-127.
    Typed accessors read the attributes of this section only; :class:`SessionDescription` has the
    ones that fall back to the session level.
    """

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    information: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    _REASON: ClassVar[str] = "bad media"

    def __post_init__(self) -> None:
        reason = self._REASON
        _token(self.kind, "media", reason)
        if not 0 <= self.port <= _MAX_PORT:
            raise SdpError(reason, f"port {self.port} is not 0-{_MAX_PORT}")
        if self.port_count is not None and self.port_count < 1:
            raise SdpError(reason, "number of ports must be positive")
        if _PROTO.fullmatch(self.proto) is None:
            raise SdpError(reason, f"proto {self.proto!r} is not <token>[/<token>...]")
        # RFC 8866 section 5.14 wants one format at least; RFC 3264 section 6 keeps one in a rejection.
        # Some peers send none on a port-0 line, which is harmless.
        if not self.formats and self.port != 0:
            raise SdpError(reason, "no formats")
        rtp = self.is_rtp
        for fmt in self.formats:
            if rtp:
                _int(fmt, "payload type", reason, 0, 127)
            else:
                _token(fmt, "format", reason)
        for text in (self.information, self.key):
            if text is not None:
                _check_text(text, reason)
        _check_directions(self.attributes, reason)

    @classmethod
    def parse(cls, value: str) -> MediaDescription:
        reason = cls._REASON
        parts = _fields(value)
        if len(parts) < 3:
            raise SdpError(reason, "want <media> <port> <proto> <fmt>...")
        port, slash, count = parts[1].partition("/")
        return cls(
            parts[0],
            _int(port, "port", reason, 0, _MAX_PORT),
            parts[2],
            tuple(parts[3:]),
            _int(count, "number of ports", reason, 1) if slash else None,
        )

    @property
    def is_rtp(self) -> bool:
        return "RTP" in self.proto.split("/")

    @property
    def payload_types(self) -> tuple[int, ...]:
        return tuple(int(fmt) for fmt in self.formats) if self.is_rtp else ()

    @property
    def is_rejected(self) -> bool:
        return self.port == 0

    # -- raw attribute access

    def attribute(self, name: str) -> Attribute | None:
        """The first attribute with this name."""
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        return None

    def attribute_values(self, name: str) -> tuple[str | None, ...]:
        return tuple(attribute.value for attribute in self.attributes if attribute.name == name)

    def has_attribute(self, name: str) -> bool:
        return any(attribute.name == name for attribute in self.attributes)

    # -- typed access

    @property
    def rtpmaps(self) -> tuple[RtpMap, ...]:
        return tuple(typed for a in self.attributes if isinstance(typed := a.typed, RtpMap))

    @property
    def fmtps(self) -> tuple[Fmtp, ...]:
        return tuple(typed for a in self.attributes if isinstance(typed := a.typed, Fmtp))

    @property
    def rtcp_feedback(self) -> tuple[RtcpFb, ...]:
        return tuple(typed for a in self.attributes if isinstance(typed := a.typed, RtcpFb))

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return tuple(typed for a in self.attributes if isinstance(typed := a.typed, Candidate))

    @property
    def fingerprints(self) -> tuple[Fingerprint, ...]:
        return tuple(typed for a in self.attributes if isinstance(typed := a.typed, Fingerprint))

    @property
    def extmaps(self) -> tuple[ExtMap, ...]:
        return tuple(typed for a in self.attributes if isinstance(typed := a.typed, ExtMap))

    @property
    def ssrcs(self) -> tuple[Ssrc, ...]:
        return tuple(typed for a in self.attributes if isinstance(typed := a.typed, Ssrc))

    @property
    def msids(self) -> tuple[Msid, ...]:
        return tuple(typed for a in self.attributes if isinstance(typed := a.typed, Msid))

    @property
    def cryptos(self) -> tuple[Crypto, ...]:
        return tuple(typed for a in self.attributes if isinstance(typed := a.typed, Crypto))

    @property
    def mid(self) -> str | None:
        """``a=mid`` (RFC 5888 section 4), the tag BUNDLE groups refer to."""
        return _first_value(self.attributes, "mid")

    @property
    def direction(self) -> Direction | None:
        """This section's own direction attribute; see :meth:`SessionDescription.direction_of`."""
        return _direction(self.attributes)

    @property
    def setup(self) -> Setup | None:
        typed = _first_typed(self.attributes, "setup")
        return typed if isinstance(typed, Setup) else None

    @property
    def rtcp(self) -> Rtcp | None:
        typed = _first_typed(self.attributes, "rtcp")
        return typed if isinstance(typed, Rtcp) else None

    @property
    def rtcp_mux(self) -> bool:
        """RTP and RTCP on one port (RFC 5761 section 5.1.1; always on with WebRTC, RFC 8834)."""
        return self.has_attribute("rtcp-mux")

    @property
    def rtcp_rsize(self) -> bool:
        """Reduced-size RTCP (RFC 5506 section 5)."""
        return self.has_attribute("rtcp-rsize")

    @property
    def end_of_candidates(self) -> bool:
        """No more trickled candidates will come (RFC 8840 section 8.2)."""
        return self.has_attribute("end-of-candidates")

    @property
    def ptime(self) -> float | None:
        """Packet time in milliseconds (RFC 8866 section 6.4)."""
        typed = _first_typed(self.attributes, "ptime")
        return typed if isinstance(typed, float) else None

    @property
    def maxptime(self) -> float | None:
        """Largest packet time in milliseconds (RFC 8866 section 6.5)."""
        typed = _first_typed(self.attributes, "maxptime")
        return typed if isinstance(typed, float) else None

    @property
    def ice_ufrag(self) -> str | None:
        return _first_value(self.attributes, "ice-ufrag")

    @property
    def ice_pwd(self) -> str | None:
        return _first_value(self.attributes, "ice-pwd")

    @property
    def ice_options(self) -> tuple[str, ...]:
        """``a=ice-options`` tags such as ``trickle`` (RFC 8839 section 5.6)."""
        value = _first_value(self.attributes, "ice-options")
        return tuple(_fields(value)) if value else ()

    @property
    def codecs(self) -> tuple[Codec, ...]:
        """The payload formats in ``m=`` order (the offerer's preference, RFC 3264 section 5.1).

        A payload type without ``a=rtpmap`` takes its RFC 3551 static meaning (0 PCMU, 8 PCMA,
        9 G722, 18 G729, ...); a dynamic one without rtpmap is unusable and left out.
        """
        if not self.is_rtp:
            return ()
        rtpmaps = {rtpmap.payload_type: rtpmap for rtpmap in self.rtpmaps}
        fmtps: dict[str, str] = {}
        for fmtp in self.fmtps:
            fmtps.setdefault(fmtp.format, fmtp.parameters)
        feedback: dict[str, list[str]] = {}
        for rtcp_fb in self.rtcp_feedback:
            text = rtcp_fb.type if rtcp_fb.parameters is None else f"{rtcp_fb.type} {rtcp_fb.parameters}"
            feedback.setdefault(rtcp_fb.format, []).append(text)
        codecs: list[Codec] = []
        for fmt in self.formats:
            payload_type = int(fmt)
            rtpmap = rtpmaps.get(payload_type)
            if rtpmap is not None:
                name, clock_rate, channels = rtpmap.encoding_name, rtpmap.clock_rate, rtpmap.channels or 1
            elif payload_type in STATIC_PAYLOAD_TYPES:
                name, clock_rate, channels = STATIC_PAYLOAD_TYPES[payload_type]
            else:
                continue
            codecs.append(
                Codec(
                    payload_type,
                    name,
                    clock_rate,
                    channels,
                    fmtps.get(fmt),
                    tuple(feedback.get("*", []) + feedback.get(fmt, [])),
                )
            )
        return tuple(codecs)

    def lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [" ".join((f"m={self.kind}", port, self.proto, *self.formats))]
        if self.information is not None:
            out.append(f"i={self.information}")
        out.extend(f"c={connection}" for connection in self.connections)
        out.extend(f"b={bandwidth}" for bandwidth in self.bandwidths)
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(f"a={attribute}" for attribute in self.attributes)
        return out


# --- the session ------------------------------------------------------------------------------------------

_SESSION_LETTERS: Final = frozenset("iuepcbtrzka")
_MEDIA_LETTERS: Final = frozenset("icbka")
_KNOWN_LETTERS: Final = frozenset("vosiuepcbtrzkam")


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole description: session-level lines, then the media sections (RFC 8866 section 5).

    ``name`` is the ``s=`` text; the empty name is written ``s= `` as RFC 8866 section 5.3 asks.
    """

    origin: Origin
    name: str = "-"
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    times: tuple[TimeDescription, ...] = (TimeDescription(),)
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    def __post_init__(self) -> None:
        for text in (self.name, self.information, self.uri, self.key, *self.emails, *self.phones):
            if text is not None:
                _check_text(text, "bad session description")
        if not self.times:
            raise SdpError("bad session description", "at least one t= line (RFC 8866 section 5.9)")
        _check_directions(self.attributes, "bad session description")
        if self.connection is None:
            for index, media in enumerate(self.media):
                if not media.connections and not media.is_rejected:
                    raise SdpError(
                        "missing connection", f"media {index + 1} has no c= line and the session has none"
                    )

    # -- parsing and serialization

    @classmethod
    def parse(cls, data: str | bytes) -> SessionDescription:
        """Parse a description; every fault is an :class:`SdpError` naming its line."""
        if isinstance(data, bytes):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                line = data.count(b"\n", 0, error.start) + 1
                raise SdpError("not UTF-8", "RFC 8866 section 5: UTF-8 text", line=line) from None
        else:
            text = data
        return _Parser().parse(text)

    def serialize(self) -> str:
        """The description with CRLF line ends in RFC 8866 section 5 order."""
        out = ["v=0", f"o={self.origin}", f"s={self.name or ' '}"]
        if self.information is not None:
            out.append(f"i={self.information}")
        if self.uri is not None:
            out.append(f"u={self.uri}")
        out.extend(f"e={email}" for email in self.emails)
        out.extend(f"p={phone}" for phone in self.phones)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={bandwidth}" for bandwidth in self.bandwidths)
        for time in self.times:
            out.extend(time.lines())
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(f"a={attribute}" for attribute in self.attributes)
        for media in self.media:
            out.extend(media.lines())
        out.append("")
        return "\r\n".join(out)

    def __str__(self) -> str:
        return self.serialize()

    def encode(self) -> bytes:
        return self.serialize().encode("utf-8")

    # -- session-level access

    def attribute(self, name: str) -> Attribute | None:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        return None

    @property
    def groups(self) -> tuple[Group, ...]:
        return tuple(typed for a in self.attributes if isinstance(typed := a.typed, Group))

    @property
    def bundle_groups(self) -> tuple[Group, ...]:
        """``a=group:BUNDLE`` groups (RFC 8843 section 7)."""
        return tuple(group for group in self.groups if group.semantics == "BUNDLE")

    @property
    def ice_lite(self) -> bool:
        """The author is an ICE-lite agent (RFC 8839 section 5.3, session level only)."""
        return any(attribute.name == "ice-lite" for attribute in self.attributes)

    def media_by_mid(self, mid: str) -> MediaDescription | None:
        for media in self.media:
            if media.mid == mid:
                return media
        return None

    # -- media-level access with the session-level fallback

    def direction_of(self, media: MediaDescription) -> Direction:
        """Media level overrides session level; the default is sendrecv (RFC 8866 section 6.7)."""
        return media.direction or _direction(self.attributes) or Direction.SENDRECV

    def connection_of(self, media: MediaDescription) -> Connection | None:
        """The media-level c= line, else the session's (RFC 8866 section 5.7)."""
        return media.connections[0] if media.connections else self.connection

    def ice_credentials_of(self, media: MediaDescription) -> IceCredentials | None:
        """ufrag and pwd, media level overriding session level (RFC 8839 section 5.4)."""
        ufrag = media.ice_ufrag or _first_value(self.attributes, "ice-ufrag")
        pwd = media.ice_pwd or _first_value(self.attributes, "ice-pwd")
        if ufrag is None or pwd is None:
            return None
        return IceCredentials(ufrag, pwd)

    def ice_options_of(self, media: MediaDescription) -> tuple[str, ...]:
        value = _first_value(self.attributes, "ice-options")
        return media.ice_options or (tuple(_fields(value)) if value else ())

    def fingerprints_of(self, media: MediaDescription) -> tuple[Fingerprint, ...]:
        """Media-level fingerprints, else the session's (RFC 8122 section 5)."""
        return media.fingerprints or tuple(
            typed for a in self.attributes if isinstance(typed := a.typed, Fingerprint)
        )

    def setup_of(self, media: MediaDescription) -> Setup | None:
        """Media level overrides session level (RFC 4145 section 4)."""
        typed = _first_typed(self.attributes, "setup")
        return media.setup or (typed if isinstance(typed, Setup) else None)

    def is_on_hold(self, media: MediaDescription) -> bool:
        """Whether the author holds this stream (RFC 3264 section 8.4).

        ``sendonly`` or ``inactive``, or the RFC 2543 style ``c=IN IP4 0.0.0.0``, which RFC 3264
        section 8.4 says means "send neither RTP nor RTCP". With ICE, 0.0.0.0 is only the placeholder
        of a section with no candidate yet (Trickle ICE, RFC 8840; JSEP, RFC 8829 section 5.2.1; Chromium
        writes it in every trickle offer), so it does not mean hold there.
        """
        if self.direction_of(media) in (Direction.SENDONLY, Direction.INACTIVE):
            return True
        return self.is_unreachable(media)

    def is_unreachable(self, media: MediaDescription) -> bool:
        """``c=IN IP4 0.0.0.0`` without ICE: send this stream neither RTP nor RTCP (RFC 3264 section 8.4)."""
        connection = self.connection_of(media)
        return (
            connection is not None
            and connection.address == "0.0.0.0"
            and self.ice_credentials_of(media) is None
        )


class _Parser:
    """One pass over the lines of a description, keeping the number of the line at fault."""

    __slots__ = ("line", "text")

    def __init__(self) -> None:
        self.line = 0
        self.text = ""

    def fail(self, reason: str, detail: str | None = None) -> SdpError:
        return SdpError(reason, detail, line=self.line, text=self.text)

    def add_attribute(self, attributes: list[Attribute], value: str) -> None:
        attribute = Attribute.parse(value)
        direction = attribute.typed
        if isinstance(direction, Direction):
            # Checked here too, to name the line (see _check_directions).
            earlier = _direction(attributes)
            if earlier is not None and earlier is not direction:
                raise self.fail("conflicting direction", f"already {earlier}")
        attributes.append(attribute)

    def parse(self, data: str) -> SessionDescription:
        head: dict[str, str] = {}
        origin: Origin | None = None
        information: str | None = None
        uri: str | None = None
        emails: list[str] = []
        phones: list[str] = []
        connection: Connection | None = None
        bandwidths: list[Bandwidth] = []
        times: list[TimeDescription] = []
        key: str | None = None
        attributes: list[Attribute] = []
        media: list[_MediaBuilder] = []
        last_line = 0
        try:
            for number, raw in enumerate(data.split("\n"), 1):
                # Tolerated: LF-only endings and trailing blanks (a harmless deviation of real peers).
                line = raw[:-1] if raw.endswith("\r") else raw
                line = line.rstrip(" \t")
                if not line:
                    continue
                self.line, self.text, last_line = number, line, number
                if len(line) < 2 or line[1] != "=":
                    raise self.fail("not a <type>=<value> line")
                letter, value = line[0], line[2:]
                if _FORBIDDEN.search(value) is not None:
                    raise self.fail("bad character", "NUL or CR inside a line")
                if letter not in _KNOWN_LETTERS:
                    # RFC 8866 section 5: a description with a type letter we do not understand is refused.
                    raise self.fail(f"unknown line type '{letter}='")
                # v=, o=, s= open every description in this order (RFC 8866 section 5).
                if len(head) < 3:
                    expected = "vos"[len(head)]
                    if letter != expected:
                        raise self.fail(f"expected '{expected}=' line")
                    if letter == "v" and value != "0":
                        raise self.fail("bad version", "only v=0 exists, RFC 8866 section 5.1")
                    if letter == "o":
                        origin = Origin.parse(value)
                    head[letter] = value
                    continue
                if letter == "m":
                    if not times:
                        raise self.fail("missing 't=' line before media", "RFC 8866 section 5.9")
                    media.append(_MediaBuilder(self, MediaDescription.parse(value)))
                    continue
                if media:
                    media[-1].add(letter, value)
                    continue
                if letter not in _SESSION_LETTERS:
                    raise self.fail(f"unexpected '{letter}=' line")
                if letter == "a":
                    self.add_attribute(attributes, value)
                elif letter == "c":
                    if connection is not None:
                        raise self.fail("second session-level 'c=' line")
                    connection = Connection.parse(value)
                elif letter == "b":
                    bandwidths.append(Bandwidth.parse(value))
                elif letter == "t":
                    times.append(TimeDescription.parse(value))
                elif letter == "r":
                    if not times:
                        raise self.fail("'r=' line before any 't=' line")
                    time = times[-1]
                    times[-1] = replace(time, repeats=(*time.repeats, Repeat.parse(value)))
                elif letter == "z":
                    if not times or times[-1].zone_adjustments:
                        raise self.fail("'z=' line without its own 't=' line")
                    times[-1] = replace(times[-1], zone_adjustments=ZoneAdjustment.parse_line(value))
                elif letter == "e":
                    emails.append(value)
                elif letter == "p":
                    phones.append(value)
                elif letter == "i":
                    if information is not None:
                        raise self.fail("second 'i=' line")
                    information = value
                elif letter == "u":
                    if uri is not None:
                        raise self.fail("second 'u=' line")
                    uri = value
                else:  # "k", obsolete (RFC 8866 section 5.12) but kept so it can be seen and refused
                    if key is not None:
                        raise self.fail("second 'k=' line")
                    key = value
            self.line, self.text = last_line, ""
            if origin is None or len(head) < 3:
                raise SdpError(f"missing '{'vos'[len(head)]}=' line", line=max(last_line, 1))
            if not times:
                raise SdpError("missing 't=' line", line=last_line)
            built = tuple(builder.build() for builder in media)
            if connection is None:
                for builder, description in zip(media, built, strict=True):
                    if not description.connections and not description.is_rejected:
                        raise SdpError(
                            "missing connection",
                            "no c= line in the media section nor at session level",
                            line=builder.line,
                            text=builder.text,
                        )
            return SessionDescription(
                origin=origin,
                name=head["s"],
                information=information,
                uri=uri,
                emails=tuple(emails),
                phones=tuple(phones),
                connection=connection,
                bandwidths=tuple(bandwidths),
                times=tuple(times),
                key=key,
                attributes=tuple(attributes),
                media=built,
            )
        except SdpError as error:
            if error.line is not None:
                raise
            raise error.at(self.line, self.text) from None


class _MediaBuilder:
    """The lines of one media section while they are read."""

    __slots__ = (
        "attributes",
        "bandwidths",
        "connections",
        "information",
        "key",
        "line",
        "media",
        "parser",
        "text",
    )

    def __init__(self, parser: _Parser, media: MediaDescription) -> None:
        self.parser = parser
        self.line = parser.line
        self.text = parser.text
        self.media = media
        self.information: str | None = None
        self.key: str | None = None
        self.connections: list[Connection] = []
        self.bandwidths: list[Bandwidth] = []
        self.attributes: list[Attribute] = []

    def add(self, letter: str, value: str) -> None:
        if letter == "a":
            self.parser.add_attribute(self.attributes, value)
        elif letter == "c":
            self.connections.append(Connection.parse(value))
        elif letter == "b":
            self.bandwidths.append(Bandwidth.parse(value))
        elif letter == "i" and self.information is None:
            self.information = value
        elif letter == "k" and self.key is None:
            self.key = value
        elif letter in _MEDIA_LETTERS:
            raise self.parser.fail(f"second '{letter}=' line in a media section")
        else:
            raise self.parser.fail(f"unexpected '{letter}=' line in a media section")

    def build(self) -> MediaDescription:
        return replace(
            self.media,
            information=self.information,
            key=self.key,
            connections=tuple(self.connections),
            bandwidths=tuple(self.bandwidths),
            attributes=tuple(self.attributes),
        )


# --- offer/answer ---------------------------------------------------------------------------------------

#: Formats whose clock must match the audio they go with: telephone-event (RFC 4733 section 2.1)
#: and comfort noise (RFC 3389 section 5). They never make a codec common on their own.
_RATE_BOUND: Final = frozenset({"telephone-event", "cn"})


@dataclass(frozen=True, slots=True)
class _Preference:
    name: str
    clock_rate: int | None
    channels: int | None

    @classmethod
    def parse(cls, text: str) -> _Preference:
        parts = text.split("/")
        if (
            not 1 <= len(parts) <= 3
            or _TOKEN.fullmatch(parts[0]) is None
            or any(_DIGITS.fullmatch(part) is None for part in parts[1:])
        ):
            raise ValueError(f"a codec preference is <name>[/<clock rate>[/<channels>]], not {text!r}")
        numbers = [int(part) for part in parts[1:]]
        return cls(
            parts[0].lower(),
            numbers[0] if numbers else None,
            numbers[1] if len(numbers) == 2 else None,
        )

    def accepts(self, codec: Codec) -> bool:
        return (
            codec.name.lower() == self.name
            and (self.clock_rate is None or codec.clock_rate == self.clock_rate)
            and (self.channels is None or codec.channels == self.channels)
        )


def negotiate_codecs(
    offer_media: MediaDescription,
    our_preferences: Sequence[str],
    *,
    order: Literal["ours", "theirs"] = "ours",
    limit: int | None = None,
) -> tuple[Codec, ...]:
    """The offered codecs we can answer with, best first (RFC 3264 section 6.1).

    ``our_preferences`` are ``name[/clock rate[/channels]]`` (``"PCMU"``, ``"opus/48000/2"``,
    ``"telephone-event"``), names case-insensitive. ``order="ours"`` ranks by our list, ``"theirs"``
    keeps the offer's order (the offerer's preference, RFC 3264 section 5.1). ``limit`` keeps that many
    codecs (1 gives the single-codec answers carriers handle best); telephone-event and CN do not count.

    Payload types are the offer's (RFC 3264 section 6.1 recommends answering with them). The fmtp of
    the offer is kept; rtcp-fb is dropped because we implement none of it (RFC 4585 section 4.2 lets
    the answerer remove feedback). telephone-event is kept, when we list it, at each clock rate that a
    kept codec uses (RFC 4733 section 2.1: the event clock is the audio clock), so opus gets
    telephone-event/48000 and PCMU gets telephone-event/8000; CN likewise.

    Raises :class:`NoCommonCodec` when no codec other than telephone-event and CN matches.
    """
    if limit is not None and limit < 1:
        raise ValueError("limit keeps at least one codec")
    preferences = [_Preference.parse(text) for text in our_preferences]
    offered = offer_media.codecs
    ranked: list[tuple[int, int, Codec]] = []
    for index, codec in enumerate(offered):
        if codec.name.lower() in _RATE_BOUND:
            continue
        rank = next((i for i, preference in enumerate(preferences) if preference.accepts(codec)), None)
        if rank is not None:
            ranked.append((rank if order == "ours" else 0, index, codec))
    if not ranked:
        raise NoCommonCodec(offered, our_preferences)
    ranked.sort(key=lambda item: (item[0], item[1]))
    chosen = [codec for _, _, codec in ranked][: limit if limit is not None else None]
    rates = {codec.clock_rate for codec in chosen}
    seen: set[tuple[str, int]] = set()
    for codec in offered:
        ident = (codec.name.lower(), codec.clock_rate)
        if (
            ident[0] in _RATE_BOUND
            and codec.clock_rate in rates
            and ident not in seen
            and any(preference.accepts(codec) for preference in preferences)
        ):
            seen.add(ident)
            chosen.append(codec)
    return tuple(replace(codec, feedback=()) for codec in chosen)


def transport_attributes(
    *,
    ice: IceCredentials | None = None,
    ice_options: Sequence[str] = (),
    candidates: Sequence[Candidate] = (),
    end_of_candidates: bool = False,
    fingerprint: Fingerprint | None = None,
    setup: Setup | None = None,
) -> tuple[Attribute, ...]:
    """ICE (RFC 8839 section 5) and DTLS (RFC 8842 section 5, RFC 8122 section 5) attributes of a section.

    An ICE-lite gateway answers with its credentials, its host candidate(s), ``end_of_candidates``
    and ``setup`` passive or active; ``a=ice-lite`` itself goes at session level (:func:`answer_session`).
    """
    out: list[Attribute] = []
    if ice is not None:
        out.extend(ice.attributes())
    if ice_options:
        out.append(Attribute("ice-options", " ".join(ice_options)))
    if fingerprint is not None:
        out.append(fingerprint.to_attribute())
    if setup is not None:
        out.append(Attribute("setup", setup.value))
    out.extend(candidate.to_attribute() for candidate in candidates)
    if end_of_candidates:
        out.append(Attribute("end-of-candidates"))
    return tuple(out)


def build_media(
    kind: str,
    port: int,
    codecs: Sequence[Codec],
    *,
    proto: str = "RTP/AVP",
    connection: Connection | None = None,
    direction: Direction | None = Direction.SENDRECV,
    mid: str | None = None,
    rtcp_mux: bool = False,
    ptime: int | None = None,
    attributes: Sequence[Attribute] = (),
) -> MediaDescription:
    """A media section for an offer or an answer.

    Attributes come in the order browsers write them: mid, ``attributes`` (e.g. from
    :func:`transport_attributes`), direction, rtcp-mux, then rtpmap (always, static types too: RFC 8866
    section 6.6 allows it and some peers need it), rtcp-fb and fmtp per codec, then ptime.
    """
    out: list[Attribute] = []
    if mid is not None:
        out.append(Attribute("mid", mid))
    out.extend(attributes)
    if direction is not None:
        out.append(Attribute(direction.value))
    if rtcp_mux:
        out.append(Attribute("rtcp-mux"))
    for codec in codecs:
        out.append(codec.rtpmap().to_attribute())
        for text in codec.feedback:
            fb_type, _, parameters = text.partition(" ")
            out.append(RtcpFb(str(codec.payload_type), fb_type, parameters or None).to_attribute())
        if codec.parameters is not None:
            out.append(Fmtp(str(codec.payload_type), codec.parameters).to_attribute())
    if ptime is not None:
        out.append(Attribute("ptime", str(ptime)))
    return MediaDescription(
        kind=kind,
        port=port,
        proto=proto,
        formats=tuple(str(codec.payload_type) for codec in codecs),
        connections=(connection,) if connection is not None else (),
        attributes=tuple(out),
    )


def answer_media(
    offer: SessionDescription,
    offered: MediaDescription,
    codecs: Sequence[Codec],
    *,
    port: int,
    wish: Direction = Direction.SENDRECV,
    connection: Connection | None = None,
    ptime: int | None = None,
    attributes: Sequence[Attribute] = (),
) -> MediaDescription:
    """Our answer to one offered section (RFC 3264 section 6.1).

    Same media, transport and mid as offered; ``codecs`` usually from :func:`negotiate_codecs`;
    the direction from :meth:`Direction.answer` with ``wish``. An offer on RFC 2543 style hold
    (``c=0.0.0.0`` without ICE) receives nothing, so we answer as if it did not receive: a
    ``sendrecv`` hold gets ``recvonly`` (RFC 3264 section 8.4). rtcp-mux is accepted when offered
    (RFC 5761 section 5.1.1).
    """
    offered_direction = offer.direction_of(offered)
    if offer.is_unreachable(offered):
        offered_direction = Direction.of(send=offered_direction.sends, receive=False)
    return build_media(
        offered.kind,
        port,
        codecs,
        proto=offered.proto,
        connection=connection,
        direction=offered_direction.answer(wish),
        mid=offered.mid,
        rtcp_mux=offered.rtcp_mux,
        ptime=ptime,
        attributes=attributes,
    )


def rejected_media(offered: MediaDescription) -> MediaDescription:
    """A refusal of one offered section: port 0, the offered formats (RFC 3264 section 6), its mid."""
    mid = offered.mid
    return MediaDescription(
        kind=offered.kind,
        port=0,
        proto=offered.proto,
        formats=offered.formats,
        attributes=(Attribute("mid", mid),) if mid is not None else (),
    )


def build_session(
    origin: Origin,
    media: Sequence[MediaDescription],
    *,
    name: str = "-",
    connection: Connection | None = None,
    attributes: Sequence[Attribute] = (),
) -> SessionDescription:
    """An offer (or any description) with ``t=0 0`` as offer/answer uses (RFC 3264 section 5)."""
    return SessionDescription(
        origin=origin, name=name, connection=connection, attributes=tuple(attributes), media=tuple(media)
    )


def answer_session(
    offer: SessionDescription,
    origin: Origin,
    media: Sequence[MediaDescription | None],
    *,
    name: str = "-",
    connection: Connection | None = None,
    ice_lite: bool = False,
    attributes: Sequence[Attribute] = (),
) -> SessionDescription:
    """The answer to ``offer``: one section per offered section, in order (RFC 3264 section 6).

    ``None`` refuses a section (:func:`rejected_media`). Each offered BUNDLE group is answered with
    the mids we accepted, in the offer's order (RFC 8843 section 7.3); ``ice_lite`` adds
    ``a=ice-lite`` (RFC 8839 section 5.3).
    """
    if len(media) != len(offer.media):
        raise ValueError(
            f"the answer needs {len(offer.media)} media sections (RFC 3264 section 6), not {len(media)}"
        )
    sections = tuple(
        answer if answer is not None else rejected_media(offered)
        for offered, answer in zip(offer.media, media, strict=True)
    )
    accepted = {section.mid for section in sections if not section.is_rejected and section.mid is not None}
    out: list[Attribute] = []
    for group in offer.bundle_groups:
        mids = tuple(mid for mid in group.mids if mid in accepted)
        if mids:
            out.append(Group("BUNDLE", mids).to_attribute())
    if ice_lite:
        out.append(Attribute("ice-lite"))
    out.extend(attributes)
    return build_session(origin, sections, name=name, connection=connection, attributes=out)


def revise(previous: SessionDescription | None, updated: SessionDescription) -> SessionDescription:
    """``updated`` with the origin a re-offer or re-answer must carry (RFC 3264 section 8).

    The o= line stays that of ``previous`` except the version, which grows by one when anything else
    changed and stays when nothing did (then the description must be identical). With no previous
    description, ``updated`` is returned as is.
    """
    if previous is None:
        return updated
    same_origin = replace(updated, origin=previous.origin)
    if same_origin == previous:
        return previous
    return replace(updated, origin=previous.origin.next_version())


def random_session_id() -> int:
    """A fresh ``sess-id``: random and below 2**63 so every peer's signed 64-bit parser takes it
    (RFC 8829 section 5.2.1)."""
    return secrets.randbits(62)
