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

    #: A browser agent and a carrier: WebRTC (ICE-lite, DTLS-SRTP) <-> plain RTP.
    WEBRTC_RTP = "webrtc-rtp"
    #: A desk-phone agent and a carrier: plain RTP on both sides.
    RTP_RTP = "rtp-rtp"
    #: Two browser agents.
    WEBRTC_WEBRTC = "webrtc-webrtc"
    #: The echo test line: the agent's own audio comes back.
    ECHO = "echo"


class LegMedia(StrEnum):
    WEBRTC = "webrtc"
    RTP = "rtp"


class CreateSession(ContractModel):
    tenant_id: Token
    call_id: Token
    kind: SessionKind
    #: The agent's SDP offer when the agent calls (outbound); None when we ring the agent (inbound).
    agent_offer: str | None = None
    #: The customer's (carrier's) SDP offer when the customer calls (inbound).
    customer_offer: str | None = None
    record: bool = False


class SessionCreated(ContractModel):
    worker_id: Token
    session_id: Token
    #: Our answer to ``agent_offer``, or our offer to the agent when it had none.
    agent_sdp: str | None = None
    #: Our offer to the customer's side, or our answer to ``customer_offer``.
    customer_sdp: str | None = None


class RemoteDescription(ContractModel):
    """SDP from one side after creation: the answer to our offer, or a new offer (re-INVITE)."""

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
    "Done",
    "Hold",
    "LegMedia",
    "LocalDescription",
    "MediaEvent",
    "MediaEventKind",
    "RemoteDescription",
    "SendDtmf",
    "SessionClosed",
    "SessionCreated",
    "SessionKind",
]
