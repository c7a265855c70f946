"""``a=`` attributes: the raw :class:`Attribute` and the typed values of the ones offer/answer reads.

RFC 8866 section 6 (rtpmap, fmtp, ptime, direction), RFC 8839 section 5 (ICE), RFC 8842 and RFC 8122
(DTLS setup and fingerprint), RFC 8843 and RFC 5888 (BUNDLE, mid), RFC 5761 (rtcp-mux), RFC 3605
(rtcp), RFC 8830 (msid), RFC 5576 (ssrc), RFC 8285 (extmap), RFC 4585 (rtcp-fb), RFC 4568 (crypto).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Final, TypeAlias

from shared.sdp._syntax import (
    DECIMAL,
    FORBIDDEN,
    HEX_PAIRS,
    ICE_CHARS,
    MAX_PORT,
    MAX_U32,
    TOKEN,
    VCHARS,
    check_host,
    check_text,
    check_token,
    parse_int,
    split_fields,
)
from shared.sdp.errors import SdpError
from shared.sdp.fields import Connection


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
        if TOKEN.fullmatch(self.encoding_name) is None:
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
            parse_int(parts[0], "payload type", cls._REASON, 0, 127),
            encoding[0],
            parse_int(encoding[1], "clock rate", cls._REASON, 1),
            parse_int(encoding[2], "channels", cls._REASON, 1) if len(encoding) == 3 else None,
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
        check_token(self.format, "format", self._REASON)
        if not self.parameters or self.parameters != self.parameters.strip(" \t"):
            raise SdpError(self._REASON, "parameters missing or padded with blanks")
        check_text(self.parameters, self._REASON)

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
            parse_int(self.format, "payload type", self._REASON, 0, 127)
        check_token(self.type, "feedback type", self._REASON)
        if self.parameters is not None:
            check_text(self.parameters, self._REASON)
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
        if ICE_CHARS.fullmatch(self.foundation) is None or len(self.foundation) > 32:
            raise SdpError(reason, "foundation is 1-32 ice-chars")
        if not 1 <= self.component <= 256:
            raise SdpError(reason, f"component {self.component} is not 1-256")
        check_token(self.transport, "transport", reason)
        if not 0 <= self.priority <= MAX_U32:
            raise SdpError(reason, "priority is a 32-bit number")
        check_host(self.address, None, reason)
        if not 0 <= self.port <= MAX_PORT:
            raise SdpError(reason, f"port {self.port} is not 0-{MAX_PORT}")
        check_token(self.type, "candidate type", reason)
        if self.related_address is not None:
            check_host(self.related_address, None, reason)
        if self.related_port is not None and not 0 <= self.related_port <= MAX_PORT:
            raise SdpError(reason, f"rport {self.related_port} is not 0-{MAX_PORT}")
        for name, value in self.extensions:
            check_token(name, "extension name", reason)
            if name in ("raddr", "rport"):
                raise SdpError(reason, f"a second {name}")
            if VCHARS.fullmatch(value) is None:
                raise SdpError(reason, f"extension {name} value {value!r} is not printable ASCII")

    @classmethod
    def parse(cls, value: str) -> Candidate:
        reason = cls._REASON
        parts = split_fields(value)
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
                related_port = parse_int(item, "rport", reason, 0, MAX_PORT)
            else:
                extensions.append((name, item))
        return cls(
            foundation=parts[0],
            component=parse_int(parts[1], "component", reason, 1, 256),
            transport=parts[2],
            priority=parse_int(parts[3], "priority", reason, 0, MAX_U32),
            address=parts[4],
            port=parse_int(parts[5], "port", reason, 0, MAX_PORT),
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
        object.__setattr__(
            self, "algorithm", check_token(self.algorithm, "hash function", self._REASON).lower()
        )
        if HEX_PAIRS.fullmatch(self.value) is None:
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
class Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 section 2.1)."""

    port: int
    connection: Connection | None = None

    _REASON: ClassVar[str] = "bad rtcp"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= MAX_PORT:
            raise SdpError(self._REASON, f"port {self.port} is not 0-{MAX_PORT}")

    @classmethod
    def parse(cls, value: str) -> Rtcp:
        port, _, address = value.partition(" ")
        try:
            connection = Connection.parse(address) if address else None
        except SdpError as error:
            raise SdpError(cls._REASON, error.detail) from None
        return cls(parse_int(port, "port", cls._REASON, 0, MAX_PORT), connection)

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
        check_token(self.semantics, "semantics", self._REASON)
        for mid in self.mids:
            check_token(mid, "identification tag", self._REASON)

    @classmethod
    def parse(cls, value: str) -> Group:
        parts = split_fields(value)
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
        check_token(self.stream_id, "stream id", self._REASON)
        if self.track_id is not None:
            check_token(self.track_id, "track id", self._REASON)

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
        if not 0 <= self.ssrc <= MAX_U32:
            raise SdpError(self._REASON, "ssrc is a 32-bit number")
        check_token(self.attribute, "source attribute", self._REASON)
        if self.value is not None:
            check_text(self.value, self._REASON)

    @classmethod
    def parse(cls, value: str) -> Ssrc:
        ssrc, sep, rest = value.partition(" ")
        if not sep:
            raise SdpError(cls._REASON, "want <ssrc> <attribute>[:<value>]")
        name, colon, attribute_value = rest.partition(":")
        return cls(parse_int(ssrc, "ssrc", cls._REASON, 0, MAX_U32), name, attribute_value if colon else None)

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
        if VCHARS.fullmatch(self.uri) is None:
            raise SdpError(self._REASON, "the URI is not printable ASCII")
        if self.attributes is not None:
            check_text(self.attributes, self._REASON)

    @classmethod
    def parse(cls, value: str) -> ExtMap:
        parts = value.split(" ", 2)
        if len(parts) < 2:
            raise SdpError(cls._REASON, "want <id>[/<direction>] <uri> [<attributes>]")
        ident, slash, direction = parts[0].partition("/")
        if slash and direction not in _DIRECTIONS:
            raise SdpError(cls._REASON, f"direction {direction!r} is not a direction")
        return cls(
            parse_int(ident, "id", cls._REASON, 1, 65535),
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
        check_token(self.suite, "crypto suite", self._REASON)
        for part in (self.key_params, *self.session_params):
            if VCHARS.fullmatch(part) is None:
                raise SdpError(self._REASON, f"{part!r} is not printable ASCII")
        if ":" not in self.key_params:
            raise SdpError(self._REASON, "key params are <method>:<info>")

    @classmethod
    def parse(cls, value: str) -> Crypto:
        parts = split_fields(value)
        if len(parts) < 3:
            raise SdpError(cls._REASON, "want <tag> <suite> <key params> [<session params>]")
        return cls(
            parse_int(parts[0], "tag", cls._REASON, 0, 999_999_999), parts[1], parts[2], tuple(parts[3:])
        )

    def __str__(self) -> str:
        return " ".join((str(self.tag), self.suite, self.key_params, *self.session_params))

    def to_attribute(self) -> Attribute:
        return Attribute("crypto", str(self))


def _ptime(name: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        # RFC 8866 section 6.4: non-zero-int-or-real (milliseconds).
        if DECIMAL.fullmatch(value) is None or float(value) <= 0:
            raise SdpError(f"bad {name}", "want a positive number of milliseconds")
        return float(value)

    return parse


def _ice_chars(name: str, shortest: int) -> Callable[[str], None]:
    def parse(value: str) -> None:
        # RFC 8839 section 5.4: ufrag 4-256 and pwd 22-256 ice-chars.
        if ICE_CHARS.fullmatch(value) is None or not shortest <= len(value) <= 256:
            raise SdpError(f"bad {name}", f"want {shortest}-256 of A-Z a-z 0-9 + /")

    return parse


def _tokens(name: str) -> Callable[[str], None]:
    def parse(value: str) -> None:
        parts = split_fields(value)
        if not parts:
            raise SdpError(f"bad {name}", "missing value")
        for part in parts:
            check_token(part, "value", f"bad {name}")

    return parse


def _mid(value: str) -> None:
    # RFC 5888 section 4: identification-tag = token
    check_token(value, "identification tag", "bad mid")


def _setup(value: str) -> Setup:
    try:
        return Setup(value)
    except ValueError:
        raise SdpError("bad setup", "want actpass, active, passive or holdconn") from None


AttributeValue: TypeAlias = (
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
_VALUED: Final[dict[str, Callable[[str], AttributeValue]]] = {
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
    typed: AttributeValue = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if TOKEN.fullmatch(self.name) is None:
            raise SdpError("bad attribute name", text=f"a={self}")
        value = self.value
        if value is not None and FORBIDDEN.search(value) is not None:
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
