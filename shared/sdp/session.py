"""Media sections and whole descriptions: parsing, serialization and level fallbacks (RFC 8866 section 5)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import ClassVar, Final

from shared.sdp._syntax import FORBIDDEN, MAX_PORT, PROTO, check_text, check_token, parse_int, split_fields
from shared.sdp.attributes import (
    Attribute,
    AttributeValue,
    Candidate,
    Crypto,
    Direction,
    ExtMap,
    Fingerprint,
    Fmtp,
    Group,
    IceCredentials,
    Msid,
    Rtcp,
    RtcpFb,
    RtpMap,
    Setup,
    Ssrc,
)
from shared.sdp.codec import STATIC_PAYLOAD_TYPES, Codec
from shared.sdp.errors import SdpError
from shared.sdp.fields import Bandwidth, Connection, Origin, Repeat, TimeDescription, ZoneAdjustment


def _first_typed(attributes: Iterable[Attribute], name: str) -> AttributeValue:
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
        check_token(self.kind, "media", reason)
        if not 0 <= self.port <= MAX_PORT:
            raise SdpError(reason, f"port {self.port} is not 0-{MAX_PORT}")
        if self.port_count is not None and self.port_count < 1:
            raise SdpError(reason, "number of ports must be positive")
        if PROTO.fullmatch(self.proto) is None:
            raise SdpError(reason, f"proto {self.proto!r} is not <token>[/<token>...]")
        # RFC 8866 section 5.14 wants one format at least; RFC 3264 section 6 keeps one in a rejection.
        # Some peers send none on a port-0 line, which is harmless.
        if not self.formats and self.port != 0:
            raise SdpError(reason, "no formats")
        rtp = self.is_rtp
        for fmt in self.formats:
            if rtp:
                parse_int(fmt, "payload type", reason, 0, 127)
            else:
                check_token(fmt, "format", reason)
        for text in (self.information, self.key):
            if text is not None:
                check_text(text, reason)
        _check_directions(self.attributes, reason)

    @classmethod
    def parse(cls, value: str) -> MediaDescription:
        reason = cls._REASON
        parts = split_fields(value)
        if len(parts) < 3:
            raise SdpError(reason, "want <media> <port> <proto> <fmt>...")
        port, slash, count = parts[1].partition("/")
        return cls(
            parts[0],
            parse_int(port, "port", reason, 0, MAX_PORT),
            parts[2],
            tuple(parts[3:]),
            parse_int(count, "number of ports", reason, 1) if slash else None,
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
        return tuple(split_fields(value)) if value else ()

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
                check_text(text, "bad session description")
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
        return media.ice_options or (tuple(split_fields(value)) if value else ())

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
                if FORBIDDEN.search(value) is not None:
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
                else:  # "k": obsolete (RFC 8866 section 5.12), kept as written for the caller to judge
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
