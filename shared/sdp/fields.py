"""The lines of a description other than ``m=`` and ``a=`` (RFC 8866 sections 5.2-5.12)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import ClassVar

from shared.sdp._syntax import (
    TIME_UNITS,
    TYPED_TIME,
    check_host,
    check_text,
    check_token,
    ip_version,
    parse_int,
    split_fields,
)
from shared.sdp.errors import SdpError


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
        check_host(self.address, self.addr_type, reason)
        multicast = self.is_multicast
        if self.ttl is not None and not (multicast and self.addr_type == "IP4" and 0 <= self.ttl <= 255):
            raise SdpError(reason, "a TTL belongs to an IPv4 multicast address and is 0-255")
        if multicast and self.addr_type == "IP4" and self.ttl is None:
            raise SdpError(reason, "an IPv4 multicast address needs a TTL")
        if self.address_count is not None and not (multicast and self.address_count >= 1):
            raise SdpError(reason, "a number of addresses belongs to a multicast address")

    @property
    def is_multicast(self) -> bool:
        version = ip_version(self.address)
        if version == 4:
            return 224 <= int(self.address.partition(".")[0]) <= 239
        return version == 6 and ipaddress.IPv6Address(self.address).is_multicast

    @classmethod
    def parse(cls, value: str) -> Connection:
        reason = cls._REASON
        parts = split_fields(value)
        if len(parts) != 3:
            raise SdpError(reason, "want <nettype> <addrtype> <address>")
        net_type, addr_type, address = parts
        pieces = address.split("/")
        if len(pieces) > 3:
            raise SdpError(reason, "too many '/' in the address")
        numbers = [parse_int(piece, "multicast suffix", reason, 0) for piece in pieces[1:]]
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
        if not self.username or split_fields(self.username) != [self.username]:
            raise SdpError(reason, "username is one word ('-' when there is none)")
        check_text(self.username, reason)
        if self.session_id < 0 or self.session_version < 0:
            raise SdpError(reason, "session id and version are non-negative numbers")
        if self.net_type != "IN" or self.addr_type not in ("IP4", "IP6"):
            raise SdpError(reason, "want IN IP4 or IN IP6")
        check_host(self.address, self.addr_type, reason)

    @classmethod
    def parse(cls, value: str) -> Origin:
        reason = cls._REASON
        parts = split_fields(value)
        if len(parts) != 6:
            raise SdpError(reason, "want <username> <sess-id> <sess-version> <nettype> <addrtype> <address>")
        return cls(
            parts[0],
            parse_int(parts[1], "session id", reason),
            parse_int(parts[2], "session version", reason),
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
        check_token(self.type, "bandwidth type", self._REASON)
        if self.value < 0:
            raise SdpError(self._REASON, "bandwidth is a non-negative number")

    @classmethod
    def parse(cls, value: str) -> Bandwidth:
        kind, colon, amount = value.partition(":")
        if not colon:
            raise SdpError(cls._REASON, "want <bwtype>:<bandwidth>")
        return cls(kind, parse_int(amount, "bandwidth", cls._REASON))

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


def _typed_time(text: str, what: str, reason: str, signed: bool = False) -> str:
    match = TYPED_TIME.fullmatch(text)
    if match is None or (match[1] and not signed):
        raise SdpError(reason, f"{what} {text!r} is not <digits>[d|h|m|s]")
    return text


def _seconds(typed_time: str) -> int:
    match = TYPED_TIME.fullmatch(typed_time)
    if match is None:
        raise ValueError(f"not a typed time: {typed_time!r}")
    seconds = int(match[2]) * TIME_UNITS[match[3]]
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
        parts = split_fields(value)
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
        parts = split_fields(value)
        if not parts or len(parts) % 2:
            raise SdpError("bad zone adjustment", "want <time> <offset> pairs")
        return tuple(
            ZoneAdjustment(parse_int(time, "time", "bad zone adjustment"), offset)
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
        parts = split_fields(value)
        if len(parts) != 2:
            raise SdpError(cls._REASON, "want <start time> <stop time>")
        return cls(parse_int(parts[0], "start", cls._REASON), parse_int(parts[1], "stop", cls._REASON))

    def lines(self) -> list[str]:
        out = [f"t={self.start} {self.stop}"]
        out.extend(f"r={repeat}" for repeat in self.repeats)
        if self.zone_adjustments:
            out.append("z=" + " ".join(f"{zone.time} {zone.offset}" for zone in self.zone_adjustments))
        return out
