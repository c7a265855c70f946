"""The contract between signaling and the media workers (request/reply on NATS).

Signaling asks ``media.session.create`` (queue group ``media``: any worker with capacity answers)
for a bridge between two legs; the reply names the worker and carries the SDP each side needs.
Everything after that goes to that worker's own subjects
(``media.worker.<worker>.session.<session>.<verb>``). Workers report what happens to a session
(media timeout, DTMF, quality, the session ending) on ``media.events.<tenant>.<call_id>``.

SDP travels as text: each side parses it with :mod:`shared.sdp`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared.events import ContractModel, LegKind, LegQuality, Token


class SessionKind(StrEnum):
    """Which legs a bridge joins (ARCHITECTURE.md, issue 4's bridge kinds)."""

    #: A browser agent and a carrier: WebRTC (ICE-lite, DTLS-SRTP) <-> plain RTP. Also a browser agent
    #: and a desk-phone agent (agent to agent): the browser is always the ``agent`` leg, whichever called.
    WEBRTC_RTP = "webrtc-rtp"
    #: A desk-phone agent and a carrier: plain RTP on both sides.
    RTP_RTP = "rtp-rtp"
    #: Two browser agents (agent to agent). The caller's browser is the ``agent`` leg, the callee's
    #: the ``customer`` leg: our offer to the callee is ``SessionCreated.customer_sdp`` and its answer
    #: comes back as ``RemoteDescription(leg=customer, type="answer")``.
    WEBRTC_WEBRTC = "webrtc-webrtc"
    #: The echo test line: the agent's own audio comes back.
    ECHO = "echo"
    #: The demo line: the agent (a browser or a desk phone, by its offer) hears a short prompt played
    #: by the worker, repeated until the session is closed; what the agent sends is received and
    #: dropped (its DTMF is still reported). G.711 only: the worker makes the audio itself.
    ANNOUNCEMENT = "announcement"


class LegMedia(StrEnum):
    WEBRTC = "webrtc"
    RTP = "rtp"


class CreateSession(ContractModel):
    """A bridge between two legs. A leg with an offer gets our answer; a leg without one gets our offer
    (SessionCreated), whose answer comes later as a :class:`RemoteDescription` of type ``answer``.

    Ringing a browser (inbound, ``webrtc-rtp``): ``customer_offer`` set and ``agent_offer`` None; the
    carrier's offer is answered first and the browser is offered the same G.711 law first. The same
    ``agent_sdp`` may go to several browsers (parallel ringing): apply only the winner's answer; a
    second, different answer is refused with ``already_answered`` and changes nothing.
    """

    tenant_id: Token
    call_id: Token
    kind: SessionKind
    #: The agent's SDP offer when the agent calls (outbound); None when we ring the agent (inbound).
    agent_offer: str | None = None
    #: The customer's (carrier's) SDP offer when the customer calls (inbound).
    customer_offer: str | None = None
    record: bool = False
    #: The signaling instance that asked: when it starts again, its sessions are released.
    owner: Token | None = None


class SessionCreated(ContractModel):
    worker_id: Token
    session_id: Token
    #: Our answer to ``agent_offer``, or our offer to the agent when it had none.
    agent_sdp: str | None = None
    #: Our offer to the customer's side, or our answer to ``customer_offer``.
    customer_sdp: str | None = None


class RemoteDescription(ContractModel):
    """SDP from one side after creation: the answer to our offer, or a new offer (re-INVITE).

    A re-offer is answered per RFC 3264 section 8: hold (``sendonly``/``inactive``) gets ``recvonly``/
    ``inactive`` and nothing more is sent to that side until it resumes; a browser's ICE restart (new
    ice-ufrag) gets new credentials of ours; the DTLS association and its keys carry on. Refusals are
    typed and leave the call and its audio as they were: ``bad_sdp`` (malformed, SIP 400/488),
    ``no_common_codec`` (488), ``already_answered``, ``no_offer`` (an answer with no offer of ours out),
    ``glare`` (a browser's offer while ours awaits its answer, SIP 491), ``unsupported`` (a re-offer
    that needs a new DTLS association: a new fingerprint or a swapped DTLS role).
    """

    leg: LegKind
    sdp: str
    type: Literal["offer", "answer"]


class LocalDescription(ContractModel):
    """Our SDP in return: the answer to a new offer (empty when ``type`` was ``answer``)."""

    sdp: str | None = None


class Hold(ContractModel):
    leg: LegKind
    held: bool


class SendDtmf(ContractModel):
    """Play a digit towards ``leg`` as RFC 4733 events (a browser's SIP INFO, an api command)."""

    leg: LegKind
    digit: str = Field(pattern=r"^[0-9*#A-D]$")
    duration_ms: int = Field(default=160, ge=40, le=2000)


class PrepareLeg(ContractModel):
    """Verb ``prepare``: a new leg of ``media`` kind to stand in for ``leg`` when the party on it
    hands the call over (a transfer, RFC 3515): the reply's SDP is our offer for the new party. The
    current ``leg`` relays on until :class:`ReplaceLeg`; the other leg is untouched. Asked again for the
    same media, the same offer comes back (several phones of the new party may ring with it, and only
    the winner's answer is applied). Refused: ``no_leg``, ``unsupported`` (echo and announcement
    sessions have no one to transfer), ``capacity`` (no RTP port left)."""

    leg: LegKind
    media: LegMedia


class ReplaceLeg(ContractModel):
    """Verb ``replace``: the leg prepared for ``media`` takes the new party's ``answer`` and becomes
    ``leg``; the old leg and every other leg prepared for ``leg`` are closed, hold on both legs is
    cleared and audio flows between the new party and the other leg. Refused (nothing changes):
    ``not_prepared``, ``bad_sdp``, ``no_common_codec``."""

    leg: LegKind
    media: LegMedia
    answer: str


class DiscardLegs(ContractModel):
    """Verb ``discard``: close what was prepared for ``leg`` (the transfer failed or was given up);
    the session goes on as it was."""

    leg: LegKind


class RecordingControl(ContractModel):
    """Pause or resume a recorded session (verb ``record``): paused audio never leaves the worker."""

    paused: bool


class ReleaseSessions(ContractModel):
    """Published (core NATS, every worker listens) by a signaling instance as it starts: the sessions
    it owned before, except those of the calls it took over (``keep``), bridge calls that ended with
    the previous incarnation, so workers close them at once instead of relaying audio nobody bridges
    until a media timeout."""

    owner: Token
    reason: str = "owner restarted"
    #: Sessions of calls the new instance took over (their snapshots in KV ``calls``): kept.
    keep: list[str] = Field(default_factory=list, max_length=100_000)


class CloseSession(ContractModel):
    reason: str = "normal"


class SessionClosed(ContractModel):
    quality: list[LegQuality] = Field(default_factory=list)


class Done(ContractModel):
    """A reply that carries nothing but success."""


class MediaEventKind(StrEnum):
    MEDIA_TIMEOUT = "media_timeout"
    DTMF = "dtmf"
    QUALITY = "quality"
    CLOSED = "closed"
    #: An ``announcement`` session played its prompt through once (it repeats it from then on).
    ANNOUNCEMENT_PLAYED = "announcement_played"


class MediaEvent(ContractModel):
    """What a worker tells signaling about a session (core NATS; signaling owns the call events)."""

    tenant_id: Token
    call_id: Token
    session_id: Token
    worker_id: Token
    kind: MediaEventKind
    leg: LegKind | None = None
    digit: str | None = Field(default=None, pattern=r"^[0-9*#A-D]$")
    duration_ms: int | None = None
    quality: list[LegQuality] = Field(default_factory=list)
    detail: str | None = None


__all__ = [
    "CloseSession",
    "CreateSession",
    "DiscardLegs",
    "Done",
    "Hold",
    "LegMedia",
    "LocalDescription",
    "MediaEvent",
    "MediaEventKind",
    "PrepareLeg",
    "RecordingControl",
    "ReleaseSessions",
    "RemoteDescription",
    "ReplaceLeg",
    "SendDtmf",
    "SessionClosed",
    "SessionCreated",
    "SessionKind",
]
