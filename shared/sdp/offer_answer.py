"""Offer/answer (RFC 3264): codec negotiation, answer and offer building, origin versions."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from shared.sdp._syntax import DIGITS, TOKEN
from shared.sdp.attributes import (
    Attribute,
    Candidate,
    Direction,
    Fingerprint,
    Fmtp,
    Group,
    IceCredentials,
    RtcpFb,
    Setup,
)
from shared.sdp.codec import Codec
from shared.sdp.errors import NoCommonCodec
from shared.sdp.fields import Connection, Origin
from shared.sdp.session import MediaDescription, SessionDescription

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
            or TOKEN.fullmatch(parts[0]) is None
            or any(DIGITS.fullmatch(part) is None for part in parts[1:])
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
