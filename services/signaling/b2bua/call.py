"""One call through the gateway, agent leg and customer leg, as a sans-I/O state machine.

The B2BUA (RFC 3261 6, "back-to-back user agent") terminates the agent's INVITE as a UAS and
originates a new one to the carrier as a UAC; media goes through a worker, never end to end, so
each leg has its own SDP. The call is driven by what happens (the worker answered, the carrier
sent 183, the agent cancelled, a BYE came) and answers with :data:`Command` values for the stack
to carry out: respond to the agent, send a request on a leg, ask the media worker, publish an
event. It never reads a clock: every input carries ``now``.

This module holds the outbound direction (an agent calls a customer through a trunk).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import ClassVar

from services.signaling.b2bua.session_timer import (
    MIN_SE_S,
    RETRY_S,
    SessionExpires,
    expire_at,
    parse_min_se,
    parse_session_expires,
    refresh_at,
)
from services.signaling.sip.auth import ChallengeOutcome, DigestClient, DigestError
from services.signaling.sip.dialog import Dialog, DialogError
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.message import Request, Response, make_response, new_tag
from services.signaling.sip.transaction import new_branch
from shared.events import (
    CallAnswered,
    CallAnsweredData,
    CallCreated,
    CallCreatedData,
    CallDtmf,
    CallDtmfData,
    CallEarlyMedia,
    CallEarlyMediaData,
    CallEnded,
    CallEndedData,
    CallEventEnvelope,
    CallHeld,
    CallHeldData,
    CallQuality,
    CallQualityData,
    CallRecordingChanged,
    CallRecordingData,
    CallResumed,
    CallResumedData,
    CallRinging,
    CallRingingData,
    CallStatus,
    Direction,
    EndCause,
    LegKind,
    LegQuality,
    Party,
    RecordingState,
)
from shared.media import (
    CreateSession,
    DiscardLegs,
    Hold,
    PrepareLeg,
    RemoteDescription,
    ReplaceLeg,
    SessionCreated,
    SessionKind,
)
from shared.outcomes import Outcome, for_cause, for_sip_status

#: 3xx redirections followed before the call fails (loops between carriers end here).
MAX_REDIRECTS = 3
SDP = "application/sdp"


class Phase(Enum):
    MEDIA = "media"  # waiting for a media worker
    DIALING = "dialing"  # INVITE sent to the carrier
    RINGING = "ringing"
    EARLY_MEDIA = "early-media"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class LegAddress:
    """How we appear on one leg: the Via sent-by, our Contact, the transport's Via token."""

    via_host: str
    contact: str
    transport: str


@dataclass(frozen=True, slots=True)
class CarrierTarget:
    """Where and as whom the customer leg is placed (from the trunk)."""

    trunk_id: str
    domain: str
    caller_id: str
    credentials: DigestClient | None = None
    #: The session interval asked of the carrier (RFC 4028); None: no session timer.
    session_expires_s: int | None = 1800


# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerCaller:
    """Respond on the server transaction of the INVITE that made the call (the caller's)."""

    response: Response


@dataclass(frozen=True, slots=True)
class SendToCarrier:
    """Send on the customer leg (INVITE and CANCEL as client transactions; ACK for 2xx without)."""

    request: Request


@dataclass(frozen=True, slots=True)
class SendToCaller:
    """An in-dialog request to the caller, over the flow its INVITE came on."""

    request: Request


@dataclass(frozen=True, slots=True)
class SendToBranch:
    """A request on one of the legs we placed to ring an agent (INVITE, CANCEL, ACK, BYE)."""

    branch: int
    request: Request


@dataclass(frozen=True, slots=True)
class StartMedia:
    """Ask a worker for a session; its answer comes back as ``media_ready(created, now, key)``.
    A call that rings browsers and desk phones at once needs one session of each kind (``key``)."""

    request: CreateSession
    key: str = "main"


@dataclass(frozen=True, slots=True)
class DescribeMedia:
    description: RemoteDescription
    key: str = "main"


@dataclass(frozen=True, slots=True)
class StopMedia:
    reason: str
    key: str = "main"


@dataclass(frozen=True, slots=True)
class HandOverMedia:
    """A transfer's step on the media session ``key`` (shared/media.py): hold a leg while the new
    party rings, prepare its leg (our offer comes back as ``transfer_offer``), replace the old leg
    with it once it answered, or discard what was prepared."""

    request: Hold | PrepareLeg | ReplaceLeg | DiscardLegs
    key: str = "main"


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Call ``timer_fired(name, now)`` at ``at`` (the call never reads a clock)."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class Publish:
    event: CallEventEnvelope


Command = (
    AnswerCaller
    | SendToCarrier
    | SendToCaller
    | SendToBranch
    | StartMedia
    | DescribeMedia
    | StopMedia
    | HandOverMedia
    | StartTimer
    | Publish
)


@dataclass(frozen=True, slots=True)
class Side:
    """One end of a connected call as an in-dialog request from it needs it: the dialog it came in,
    how we appear to it, which leg of the media session it is, and who it is."""

    dialog: Dialog
    contact: str
    media_leg: LegKind
    media_key: str
    party: Party
    #: The other end's media leg (where DTMF from this side is played).
    other_leg: LegKind | None


# --- the call -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Call:
    """What every call has: its identity, where it stands, its media session, its timing and its
    events in order. Subclasses say who called and where the other end is; every input returns the
    :data:`Command` values to carry out."""

    call_id: str
    tenant_id: str
    record: bool = False
    phase: Phase = Phase.MEDIA
    media_session: str | None = None
    media_worker: str | None = None
    created_at: float = 0.0
    answered_at: float | None = None
    answered_wall: datetime | None = None
    #: The signaling instance that holds the call: its events' ``source``, and the ``node`` of
    #: the ``calls.command.<node>.*`` subjects the api sends this call's commands to.
    source: str = "echodesk"
    _sequence: int = 0
    _held_by: set[Party] = field(default_factory=set)
    #: The worker's latest per-leg figures: call.ended carries them as the call's summary.
    _quality: list[LegQuality] = field(default_factory=list)
    #: Paused, resumed or stopped by a command (shared/commands.py ControlRecording).
    recording_state: RecordingState = RecordingState.RECORDING

    @property
    def caller_invite(self) -> Request:
        """The INVITE that made the call (we are its UAS)."""
        raise NotImplementedError

    @property
    def caller_tag(self) -> str:
        """Our tag in the caller's dialog (the To tag of our responses)."""
        raise NotImplementedError

    @property
    def caller_call_id(self) -> str:
        """The SIP Call-ID of the caller's dialog: an in-dialog request with it comes from the caller."""
        return self.caller_invite.call_id

    @property
    def trunk_id(self) -> str | None:
        return None

    @property
    def agent_ids(self) -> tuple[str, ...]:
        """The agents this call occupies, for their concurrency limits."""
        return ()

    # What happens to a call; each kind of call answers with the commands to carry out.

    def start(self, now: float) -> list[Command]:
        raise NotImplementedError

    def media_ready(self, created: SessionCreated, now: float, key: str = "main") -> list[Command]:
        raise NotImplementedError

    def media_failed(self, reason: str, now: float, key: str = "main") -> list[Command]:
        raise NotImplementedError

    def caller_cancelled(self, now: float) -> list[Command]:
        """The caller's CANCEL (already answered 200 by the stack, RFC 3261 9.2)."""
        raise NotImplementedError

    def bye(self, from_caller: bool, now: float) -> list[Command]:
        raise NotImplementedError

    def hang_up(self, cause: EndCause, now: float, by: Party = Party.SYSTEM) -> list[Command]:
        """End the call from our side (media failure, shutdown, the api): CANCEL or BYE every leg."""
        raise NotImplementedError

    def stray_response(self, response: Response, now: float) -> list[Command]:
        """A response no transaction claimed (a retransmitted 2xx, RFC 3261 13.2.2.4)."""
        return []

    def owns_response(self, response: Response) -> bool:
        return False

    def timer_fired(self, name: str, now: float) -> list[Command]:
        return []

    def side(self, from_caller: bool) -> Side | None:
        """The end an in-dialog request came from, while the call is connected."""
        return None

    def session_refreshed(self, from_caller: bool, now: float) -> list[Command]:
        """An end refreshed the session (RFC 4028): re-INVITE or UPDATE answered 2xx."""
        return []

    def session_header(self, from_caller: bool) -> str | None:
        """The Session-Expires value for our 2xx to an end's refresh, when a session timer runs."""
        return None

    def caller_response(self, response: Response | None, now: float) -> list[Command]:
        """The answer to a re-INVITE we sent the caller (None: it timed out); other requests to
        the caller need no answer read."""
        return []

    def held_by(self, party: Party) -> bool:
        return party in self._held_by

    def transfer_refusal(self, from_caller: bool) -> tuple[int, str] | None:
        """Why a REFER from one end (RFC 3515) cannot be carried out, as a status and a reason; None
        when it can (calls that ring agents: b2bua/ringing.py)."""
        return (501, "Transferring this kind of call is not supported")

    def hold_changed(self, party: Party, held: bool, now: float) -> list[Command]:
        """A re-INVITE put the call on hold or took it off (RFC 3264 8.4): the event, once per change."""
        if self.phase is not Phase.CONNECTED or (party in self._held_by) == held:
            return []
        if held:
            self._held_by.add(party)
            return [Publish(CallHeld(**self._envelope(), data=CallHeldData(held_by=party)))]
        self._held_by.discard(party)
        return [Publish(CallResumed(**self._envelope(), data=CallResumedData(resumed_by=party)))]

    def recording_changed(
        self, state: RecordingState, by: Party, requested_by: str | None = None
    ) -> list[Command]:
        """The recording was paused, resumed or stopped (the worker already does it): the event."""
        if not self.record or self.phase is not Phase.CONNECTED or state is self.recording_state:
            return []
        self.recording_state = state
        data = CallRecordingData(state=state, changed_by=by, requested_by=requested_by)
        return [Publish(CallRecordingChanged(**self._envelope(), data=data))]

    def dtmf(self, leg: LegKind, digit: str, duration_ms: int, method: str) -> list[Command]:
        """A digit a party pressed (RFC 4733 in the media, or SIP INFO), for the call's timeline."""
        if self.phase is not Phase.CONNECTED:
            return []
        data = CallDtmfData(digit=digit, duration_ms=duration_ms, leg=leg, method=method)
        return [Publish(CallDtmf(**self._envelope(), data=data))]

    def quality(self, legs: list[LegQuality]) -> list[Command]:
        """The worker's periodic per-leg figures, for the call's quality chart."""
        if self.phase is not Phase.CONNECTED:
            return []
        self._quality = legs
        return [Publish(CallQuality(**self._envelope(), data=CallQualityData(legs=legs)))]

    def _dialogs(self) -> tuple[Dialog | None, ...]:
        return ()

    def _end(
        self,
        outcome: Outcome,
        ended_by: Party,
        now: float,
        *,
        sip_status: int | None = None,
        sip_reason: str | None = None,
        media: bool = True,
    ) -> list[Command]:
        """The call is over: dialogs terminated, media released, the final event."""
        self.phase = Phase.ENDED
        for dialog in self._dialogs():
            if dialog is not None:
                dialog.terminate()
        talk = now - self.answered_at if self.answered_at is not None else 0.0
        ended = CallEnded(
            **self._envelope(),
            data=CallEndedData(
                status=outcome.status,
                cause=outcome.cause,
                ended_by=ended_by,
                sip_status=sip_status,
                sip_reason=sip_reason,
                message=outcome.message,
                answered_at=self.answered_wall,
                duration_s=max(0.0, now - self.created_at),
                talk_time_s=max(0.0, talk),
                quality=self._quality,
            ),
        )
        commands: list[Command] = self._release_media(outcome.cause.value) if media else []
        commands.append(Publish(ended))
        return commands

    def _release_media(self, reason: str) -> list[Command]:
        return [StopMedia(reason)] if self.media_session is not None else []

    def _envelope(self) -> dict[str, object]:
        sequence = self._sequence
        self._sequence += 1
        return {
            "tenant_id": self.tenant_id,
            "call_id": self.call_id,
            "sequence": sequence,
            "source": self.source,
        }


@dataclass(kw_only=True)
class AgentCall(Call):
    """A call an agent placed: the agent's leg (its INVITE, our tag, its dialog once answered).
    Subclasses say where the other end is."""

    agent_id: str
    agent_extension: str
    agent_invite: Request
    agent_address: LegAddress
    #: The agent speaks WebRTC (a browser over WS/WSS) or plain RTP (a desk phone).
    webrtc_agent: bool = True
    agent_tag: str = field(default_factory=new_tag)
    agent_sdp: str | None = None
    agent_dialog: Dialog | None = None
    #: Our INVITE towards a carrier, where there is one.
    carrier_invite: Request | None = None

    @property
    def caller_invite(self) -> Request:
        return self.agent_invite

    @property
    def caller_tag(self) -> str:
        return self.agent_tag

    @property
    def agent_ids(self) -> tuple[str, ...]:
        return (self.agent_id,)

    def _dialogs(self) -> tuple[Dialog | None, ...]:
        return (self.agent_dialog,)

    def _cancelled(self, now: float) -> list[Command]:
        return self._fail(for_cause(EndCause.CANCELED), 487, "Request Terminated", now, ended_by=Party.AGENT)

    def _fail(
        self,
        outcome: Outcome,
        agent_status: int,
        agent_reason: str,
        now: float,
        *,
        sip_reason: str | None = None,
        ended_by: Party | None = None,
        media_running: bool = True,
    ) -> list[Command]:
        """The call ends before an answer: a final response to the agent, and the final event."""
        if self.phase is Phase.ENDED:
            return []
        # The agent's browser sees the carrier's status (SIP.js shows its reason), never a 2xx/3xx.
        status = agent_status if 400 <= agent_status <= 699 else 500
        commands: list[Command] = [AnswerCaller(self._agent_response(status, reason=agent_reason))]
        sip_status = agent_status if agent_status >= 300 else None
        party = ended_by or (
            Party.CUSTOMER if sip_status and sip_status not in (487, 500, 503) else Party.SYSTEM
        )
        return commands + self._end(
            outcome,
            party,
            now,
            sip_status=sip_status,
            sip_reason=sip_reason or agent_reason,
            media=media_running,
        )

    def _agent_response(
        self, status: int, *, reason: str | None = None, body: bytes = b"", contact: bool = False
    ) -> Response:
        headers: list[tuple[str, str]] = []
        if contact or 100 < status < 300:
            headers.append(("Contact", self.agent_address.contact))
        if body:
            headers.append(("Content-Type", SDP))
        return make_response(
            self.agent_invite, status, reason, to_tag=self.agent_tag, headers=tuple(headers), body=body
        )

    def _agent_body(self) -> bytes:
        return (self.agent_sdp or "").encode()


@dataclass(kw_only=True)
class OutboundCall(AgentCall):
    """An agent's call to a customer through a carrier."""

    customer_number: str
    carrier_address: LegAddress
    target: CarrierTarget
    carrier_dialog: Dialog | None = None
    _redirects: int = 0
    _cancel_pending: bool = False
    _provisional_seen: bool = False
    _ringing_published: bool = False
    _early_published: bool = False
    _carrier_call_id: str = field(default_factory=lambda: new_tag() + new_tag())
    _carrier_tag: str = field(default_factory=new_tag)
    _carrier_cseq: int = 1
    #: Our SDP towards the carrier (a session refresh offers it again, unchanged).
    _carrier_sdp: bytes = b""
    #: RFC 4028: the interval agreed, who refreshes, our pending refresh re-INVITE, timers' due times.
    _session: SessionExpires | None = None
    _session_asked: int | None = None
    _refresh: Request | None = None
    _due: dict[str, float] = field(default_factory=dict)

    @property
    def trunk_id(self) -> str | None:
        return self.target.trunk_id

    def _dialogs(self) -> tuple[Dialog | None, ...]:
        return (self.agent_dialog, self.carrier_dialog)

    # --- inputs -------------------------------------------------------------------------

    def start(self, now: float) -> list[Command]:
        self.created_at = now
        created = CallCreated(
            **self._envelope(),
            data=CallCreatedData(
                direction=Direction.OUTBOUND,
                from_number=self.agent_extension,
                to_number=self.customer_number,
                agent_id=self.agent_id,
                trunk_id=self.target.trunk_id,
                status=CallStatus.INITIATED,
                recorded=self.record,
            ),
        )
        session = CreateSession(
            tenant_id=self.tenant_id,
            call_id=self.call_id,
            kind=SessionKind.WEBRTC_RTP if self.webrtc_agent else SessionKind.RTP_RTP,
            agent_offer=self.agent_invite.body.decode("utf-8", "replace") or None,
            record=self.record,
        )
        return [AnswerCaller(self._agent_response(100)), Publish(created), StartMedia(session)]

    def media_ready(self, created: SessionCreated, now: float, key: str = "main") -> list[Command]:
        if self.phase is not Phase.MEDIA:
            return [StopMedia("the call ended before its media was ready")]
        self.media_session, self.media_worker = created.session_id, created.worker_id
        if created.agent_sdp is None or created.customer_sdp is None:
            return self._fail(for_cause(EndCause.MEDIA_FAILURE), 500, "Media server gave no SDP", now)
        self.agent_sdp = created.agent_sdp
        if self._cancel_pending:
            return self._cancelled(now)
        self.phase = Phase.DIALING
        self._carrier_sdp = created.customer_sdp.encode()
        self._session_asked = self.target.session_expires_s
        self.carrier_invite = self._carrier_invite(self.customer_number, self._carrier_sdp)
        return [SendToCarrier(self.carrier_invite)]

    def media_failed(self, reason: str, now: float, key: str = "main") -> list[Command]:
        if self.phase is not Phase.MEDIA:
            return []
        if "codec" in reason.lower():
            # RFC 3264 6: no common codec is the agent's offer's fault: 488 with words.
            return self._fail(for_sip_status(488), 488, "Not Acceptable Here", now, media_running=False)
        return self._fail(
            for_cause(EndCause.MEDIA_FAILURE), 503, "Media unavailable", now, media_running=False
        )

    def carrier_response(self, response: Response, now: float) -> list[Command]:
        invite = self.carrier_invite
        if invite is None or response.cseq.method != "INVITE":
            return []  # answers to CANCEL and BYE need nothing from the call
        code = response.status_code
        refresh = self._refresh
        if refresh is not None and response.cseq.seq == refresh.cseq.seq and self.phase is Phase.CONNECTED:
            return self._refreshed(response, now)
        if self.phase is Phase.ENDED:
            # A 2xx after we gave up (CANCEL crossed it): acknowledge and hang up (RFC 3261 15).
            return self._ack_and_bye(response) if 200 <= code < 300 else []
        if code < 200:
            return self._provisional(response, now)
        if code < 300:
            return self._answered(response, now)
        if code in (401, 407):
            return self._challenged(response, now)
        if code == 422:
            return self._interval_too_small(response, now)
        if 300 <= code < 400:
            return self._redirected(response, now)
        return self._fail(for_sip_status(code), code, response.reason, now, sip_reason=response.reason)

    def owns_response(self, response: Response) -> bool:
        return self.carrier_invite is not None and response.call_id == self.carrier_invite.call_id

    def side(self, from_caller: bool) -> Side | None:
        if self.phase is not Phase.CONNECTED:
            return None
        if from_caller:
            if self.agent_dialog is None:
                return None
            contact = self.agent_address.contact
            return Side(self.agent_dialog, contact, LegKind.AGENT, "main", Party.AGENT, LegKind.CUSTOMER)
        if self.carrier_dialog is None:
            return None
        contact = self.carrier_address.contact
        return Side(self.carrier_dialog, contact, LegKind.CUSTOMER, "main", Party.CUSTOMER, LegKind.AGENT)

    def stray_response(self, response: Response, now: float) -> list[Command]:
        return self.carrier_response(response, now)

    def carrier_failed(self, *, timed_out: bool, now: float) -> list[Command]:
        """The INVITE transaction ended without a final response (Timer B, transport error)."""
        if self.phase is Phase.CONNECTED and self._refresh is not None:
            # RFC 4028 10: a refresh that timed out ends the session.
            self._refresh = None
            return self.hang_up(EndCause.SESSION_TIMER_EXPIRED, now)
        if self.phase in (Phase.CONNECTED, Phase.ENDED):
            return []
        if timed_out:
            return self._fail(for_sip_status(408), 408, "Request Timeout", now)
        return self._fail(for_sip_status(503), 503, "Carrier unreachable", now)

    def caller_cancelled(self, now: float) -> list[Command]:
        """The agent's CANCEL (already answered 200 by the stack, RFC 3261 9.2)."""
        if self.phase is Phase.MEDIA:
            self._cancel_pending = True
            return self._cancelled(now)
        if self.phase in (Phase.DIALING, Phase.RINGING, Phase.EARLY_MEDIA):
            if not self._provisional_seen:
                # RFC 3261 9.1: no CANCEL before a provisional response; send it when one comes.
                self._cancel_pending = True
                return []
            return [SendToCarrier(self._cancel())]
        return []

    def bye(self, from_caller: bool, now: float) -> list[Command]:
        """A BYE from one leg (the stack answered it 200): hang up the other."""
        if self.phase is not Phase.CONNECTED:
            return []
        commands: list[Command] = []
        other = self.carrier_dialog if from_caller else self.agent_dialog
        if other is not None:
            address = self.carrier_address if from_caller else self.agent_address
            bye = other.request("BYE", via_host=address.via_host, transport=address.transport)
            commands.append(SendToCarrier(bye) if from_caller else SendToCaller(bye))
        party = Party.AGENT if from_caller else Party.CUSTOMER
        return commands + self._end(for_cause(EndCause.NORMAL_CLEARING), party, now)

    def hang_up(self, cause: EndCause, now: float, by: Party = Party.SYSTEM) -> list[Command]:
        if self.phase is Phase.ENDED:
            return []
        if self.phase is not Phase.CONNECTED:
            commands: list[Command] = []
            if self.carrier_invite is not None and self._provisional_seen:
                commands.append(SendToCarrier(self._cancel()))
            outcome = for_cause(cause)
            status = 480 if cause is EndCause.MEDIA_FAILURE else 487
            return commands + self._fail(outcome, status, outcome.message, now, ended_by=by)
        commands = []
        for dialog, address, wrap in (
            (self.carrier_dialog, self.carrier_address, SendToCarrier),
            (self.agent_dialog, self.agent_address, SendToCaller),
        ):
            if dialog is not None:
                commands.append(
                    wrap(dialog.request("BYE", via_host=address.via_host, transport=address.transport))
                )
        return commands + self._end(for_cause(cause), by, now)

    def timer_fired(self, name: str, now: float) -> list[Command]:
        due = self._due.get(name)
        if self.phase is not Phase.CONNECTED or due is None or now < due - 0.001:
            return []  # over, or a timer re-armed since (only the latest counts)
        del self._due[name]
        if name == "session-expire":
            return self.hang_up(EndCause.SESSION_TIMER_EXPIRED, now)
        if name == "session-refresh" and self.carrier_dialog is not None and self._session is not None:
            asked = SessionExpires(self._session.interval_s, "uac")
            self._refresh = self.carrier_dialog.request(
                "INVITE",
                via_host=self.carrier_address.via_host,
                transport=self.carrier_address.transport,
                headers=(("Session-Expires", asked.header()), ("Supported", "timer")),
                body=self._carrier_sdp,
                content_type=SDP,
            )
            self.carrier_dialog.invite_sent()
            return [SendToCarrier(self._refresh)]
        return []

    def session_refreshed(self, from_caller: bool, now: float) -> list[Command]:
        """The carrier refreshed the session (a re-INVITE or UPDATE): its deadline moves on."""
        session = self._session
        if from_caller or session is None or session.refresher != "uas":
            return []
        return [self._arm("session-expire", expire_at(now, session.interval_s))]

    def session_header(self, from_caller: bool) -> str | None:
        """Session-Expires for our 2xx to the carrier's refresh (RFC 4028 9): it stays refresher."""
        if from_caller or self._session is None:
            return None
        return SessionExpires(self._session.interval_s, "uac").header()

    # --- steps ----------------------------------------------------------------------------

    def _arm(self, name: str, at: float) -> StartTimer:
        self._due[name] = at
        return StartTimer(name, at)

    def _arm_session(self, response: Response, now: float) -> list[Command]:
        """RFC 4028 7.2: the 2xx says the interval and who refreshes (us when it does not say)."""
        session = parse_session_expires(response.headers.get("Session-Expires"))
        if session is None:
            self._session = None
            return []
        self._session = SessionExpires(session.interval_s, session.refresher or "uac")
        if self._session.refresher == "uac":
            return [self._arm("session-refresh", refresh_at(now, session.interval_s))]
        return [self._arm("session-expire", expire_at(now, session.interval_s))]

    def _refreshed(self, response: Response, now: float) -> list[Command]:
        """The answer to our refresh re-INVITE (RFC 4028 10)."""
        code = response.status_code
        if code < 200:
            return []
        refresh = self._refresh
        self._refresh = None
        dialog = self.carrier_dialog
        if 200 <= code < 300 and dialog is not None:
            ack = SendToCarrier(
                dialog.ack(via_host=self.carrier_address.via_host, transport=self.carrier_address.transport)
            )
            return [ack, *self._arm_session(response, now)]
        if code in (408, 481):
            return self.hang_up(EndCause.SESSION_TIMER_EXPIRED, now)
        if code == 422 and refresh is not None and self._session is not None:
            min_se = parse_min_se(response.headers.get("Min-SE"))
            if min_se is not None and min_se > self._session.interval_s:
                self._session = SessionExpires(min_se, "uac")
                return [self._arm("session-refresh", now)]
        # Anything else (491 glare, a 5xx): the session goes on; try again shortly.
        return [self._arm("session-refresh", now + RETRY_S)]

    def _interval_too_small(self, response: Response, now: float) -> list[Command]:
        """422 to our INVITE: ask again with the carrier's Min-SE (RFC 4028 6), once."""
        invite = self.carrier_invite
        assert invite is not None
        min_se = parse_min_se(response.headers.get("Min-SE"))
        asked = self._session_asked or 0
        if min_se is None or min_se <= asked:
            return self._fail(for_sip_status(422), 422, response.reason, now, sip_reason=response.reason)
        self._session_asked = min_se
        self.carrier_invite = self._carrier_invite(self.customer_number, invite.body, previous=invite)
        return [SendToCarrier(self.carrier_invite)]

    def _provisional(self, response: Response, now: float) -> list[Command]:
        code = response.status_code
        commands: list[Command] = []
        self._provisional_seen = True  # any provisional, 100 included, allows CANCEL (RFC 3261 9.1)
        if self._cancel_pending:
            self._cancel_pending = False
            return [SendToCarrier(self._cancel())]
        if code == 100:
            return commands
        if response.body and code in (180, 183):
            # Early media (RFC 3960): the carrier's SDP answers our offer; the agent gets its own
            # answer in a 183 so the browser plays the ringback or announcement the carrier sends.
            commands.append(
                DescribeMedia(RemoteDescription(leg=LegKind.CUSTOMER, sdp=sdp_text(response), type="answer"))
            )
            commands.append(AnswerCaller(self._agent_response(183, body=self._agent_body())))
            self.phase = Phase.EARLY_MEDIA
            if not self._early_published:
                self._early_published = True
                commands.append(
                    Publish(CallEarlyMedia(**self._envelope(), data=CallEarlyMediaData(sip_status=code)))
                )
            return commands
        if self.phase is Phase.DIALING:
            self.phase = Phase.RINGING
        commands.append(AnswerCaller(self._agent_response(180)))
        if not self._ringing_published:
            self._ringing_published = True
            commands.append(
                Publish(CallRinging(**self._envelope(), data=CallRingingData(sip_status=min(code, 189))))
            )
        return commands

    def _answered(self, response: Response, now: float) -> list[Command]:
        invite = self.carrier_invite
        assert invite is not None
        if self.phase is Phase.CONNECTED:
            # A retransmitted 2xx: our ACK was lost; send it again (RFC 3261 13.2.2.4).
            return [SendToCarrier(self._carrier_ack())] if self.carrier_dialog is not None else []
        try:
            self.carrier_dialog = Dialog.as_uac(invite, response, self.carrier_address.contact)
        except (DialogError, SipParseError) as exc:
            return self._fail(for_sip_status(502), 502, f"Bad answer from the carrier: {exc}", now)
        commands: list[Command] = []
        if response.body:
            # The 2xx's SDP is the answer (RFC 3264); after early media it may differ from the 183's.
            commands.append(
                DescribeMedia(RemoteDescription(leg=LegKind.CUSTOMER, sdp=sdp_text(response), type="answer"))
            )
        commands.append(SendToCarrier(self._carrier_ack()))
        ok = self._agent_response(200, body=self._agent_body(), contact=True)
        self.agent_dialog = Dialog.as_uas(
            self.agent_invite, self.agent_tag, self.agent_address.contact, confirmed=True
        )
        commands.append(AnswerCaller(ok))
        self.phase = Phase.CONNECTED
        self.answered_at = now
        self.answered_wall = datetime.now(UTC)
        commands.append(
            Publish(CallAnswered(**self._envelope(), data=CallAnsweredData(media_worker=self.media_worker)))
        )
        return commands + self._arm_session(response, now)

    def _challenged(self, response: Response, now: float) -> list[Command]:
        invite = self.carrier_invite
        assert invite is not None
        credentials = self.target.credentials
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        answer_header = "Authorization" if response.status_code == 401 else "Proxy-Authorization"
        if credentials is None:
            return self._fail(
                for_sip_status(response.status_code), response.status_code, response.reason, now
            )
        try:
            answer = credentials.answer(
                response.headers.get_all(header),
                "INVITE",
                str(invite.uri),
                sent=invite.headers.get_all(answer_header),
            )
        except DigestError:
            answer = None
        if answer is None or answer.outcome is ChallengeOutcome.REJECTED:
            return self._fail(
                for_sip_status(response.status_code), response.status_code, response.reason, now
            )
        self.carrier_invite = self._carrier_invite(
            self.customer_number, invite.body, previous=invite, auth=(answer_header, answer.value)
        )
        return [SendToCarrier(self.carrier_invite)]

    def _redirected(self, response: Response, now: float) -> list[Command]:
        invite = self.carrier_invite
        assert invite is not None
        try:
            contacts = response.contacts
        except SipParseError:
            contacts = ()
        if self._redirects >= MAX_REDIRECTS or contacts == "*" or not contacts:
            return self._fail(
                for_sip_status(response.status_code), response.status_code, response.reason, now
            )
        self._redirects += 1
        self.carrier_invite = self._carrier_invite(
            self.customer_number, invite.body, previous=invite, request_uri=str(contacts[0].uri)
        )
        return [SendToCarrier(self.carrier_invite)]

    def _ack_and_bye(self, response: Response) -> list[Command]:
        invite = self.carrier_invite
        assert invite is not None
        try:
            dialog = Dialog.as_uac(invite, response, self.carrier_address.contact)
        except (DialogError, SipParseError):
            return []
        address = self.carrier_address
        return [
            SendToCarrier(dialog.ack(via_host=address.via_host, transport=address.transport)),
            SendToCarrier(dialog.request("BYE", via_host=address.via_host, transport=address.transport)),
        ]

    # --- building messages --------------------------------------------------------------------

    def _carrier_invite(
        self,
        number: str,
        body: bytes,
        *,
        previous: Request | None = None,
        auth: tuple[str, str] | None = None,
        request_uri: str | None = None,
    ) -> Request:
        """The INVITE to the carrier. A retry after a challenge or redirect keeps Call-ID and From tag
        and takes the next CSeq (RFC 3261 22.2, 8.1.3.4)."""
        if previous is not None:
            self._carrier_cseq += 1
        address = self.carrier_address
        uri = request_uri or (
            str(previous.uri) if previous is not None else f"sip:{number}@{self.target.domain}"
        )
        headers = [
            ("Via", f"SIP/2.0/{address.transport.upper()} {address.via_host};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{self.target.caller_id}@{self.target.domain}>;tag={self._carrier_tag}"),
            ("To", f"<sip:{number}@{self.target.domain}>"),
            ("Call-ID", self._carrier_call_id),
            ("CSeq", f"{self._carrier_cseq} INVITE"),
            ("Contact", address.contact),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, UPDATE"),
            ("Supported", "timer"),
        ]
        if self._session_asked:
            # RFC 4028 7.1: the interval we want; the carrier's 2xx says who refreshes.
            headers.append(("Session-Expires", str(self._session_asked)))
            headers.append(("Min-SE", str(MIN_SE_S)))
        if auth is not None:
            headers.append(auth)
        if body:
            headers.append(("Content-Type", SDP))
        return Request("INVITE", uri, headers, body)

    def _cancel(self) -> Request:
        assert self.carrier_invite is not None
        return cancel_for(self.carrier_invite)

    def _carrier_ack(self) -> Request:
        dialog = self.carrier_dialog
        assert dialog is not None
        return dialog.ack(via_host=self.carrier_address.via_host, transport=self.carrier_address.transport)


@dataclass(kw_only=True)
class EchoCall(AgentCall):
    """The echo test line (``*43``): the worker sends the agent's own audio back, so a newcomer
    hears two-way audio without any carrier (ARCHITECTURE.md, "Running it")."""

    line: str = "*43"
    #: What the worker does with the agent's audio (the demo line plays a prompt instead).
    session_kind: ClassVar[SessionKind] = SessionKind.ECHO

    def start(self, now: float) -> list[Command]:
        self.created_at = now
        created = CallCreated(
            **self._envelope(),
            data=CallCreatedData(
                direction=Direction.INTERNAL,
                from_number=self.agent_extension,
                to_number=self.line,
                agent_id=self.agent_id,
                status=CallStatus.INITIATED,
                recorded=self.record,
            ),
        )
        session = CreateSession(
            tenant_id=self.tenant_id,
            call_id=self.call_id,
            kind=self.session_kind,
            agent_offer=self.agent_invite.body.decode("utf-8", "replace") or None,
            record=self.record,
        )
        return [AnswerCaller(self._agent_response(100)), Publish(created), StartMedia(session)]

    def media_ready(self, created: SessionCreated, now: float, key: str = "main") -> list[Command]:
        if self.phase is not Phase.MEDIA:
            return [StopMedia("the call ended before its media was ready")]
        self.media_session, self.media_worker = created.session_id, created.worker_id
        if created.agent_sdp is None:
            return self._fail(for_cause(EndCause.MEDIA_FAILURE), 500, "Media server gave no SDP", now)
        self.agent_sdp = created.agent_sdp
        self.agent_dialog = Dialog.as_uas(
            self.agent_invite, self.agent_tag, self.agent_address.contact, confirmed=True
        )
        self.phase = Phase.CONNECTED
        self.answered_at = now
        self.answered_wall = datetime.now(UTC)
        answered = CallAnswered(**self._envelope(), data=CallAnsweredData(media_worker=self.media_worker))
        return [
            AnswerCaller(self._agent_response(200, body=self._agent_body(), contact=True)),
            Publish(answered),
        ]

    def media_failed(self, reason: str, now: float, key: str = "main") -> list[Command]:
        if self.phase is not Phase.MEDIA:
            return []
        if "codec" in reason.lower():
            return self._fail(for_sip_status(488), 488, "Not Acceptable Here", now, media_running=False)
        return self._fail(
            for_cause(EndCause.MEDIA_FAILURE), 503, "Media unavailable", now, media_running=False
        )

    def caller_cancelled(self, now: float) -> list[Command]:
        return self._cancelled(now) if self.phase is Phase.MEDIA else []

    def side(self, from_caller: bool) -> Side | None:
        if self.phase is not Phase.CONNECTED or not from_caller or self.agent_dialog is None:
            return None
        return Side(self.agent_dialog, self.agent_address.contact, LegKind.AGENT, "main", Party.AGENT, None)

    def bye(self, from_caller: bool, now: float) -> list[Command]:
        if self.phase is not Phase.CONNECTED:
            return []
        return self._end(for_cause(EndCause.NORMAL_CLEARING), Party.AGENT, now)

    def hang_up(self, cause: EndCause, now: float, by: Party = Party.SYSTEM) -> list[Command]:
        if self.phase is Phase.ENDED:
            return []
        if self.phase is not Phase.CONNECTED or self.agent_dialog is None:
            outcome = for_cause(cause)
            return self._fail(outcome, 480, outcome.message, now, ended_by=by)
        address = self.agent_address
        bye = self.agent_dialog.request("BYE", via_host=address.via_host, transport=address.transport)
        return [SendToCaller(bye), *self._end(for_cause(cause), by, now)]


def cancel_for(invite: Request, reason: str | None = None) -> Request:
    """CANCEL for a pending INVITE of ours (RFC 3261 9.1): same Request-URI, Call-ID, From, To, CSeq
    number and the same top Via (so the same branch); ``reason`` is a Reason header (RFC 3326)."""
    headers = [
        ("Via", invite.headers.get_all("Via")[0]),
        ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""),
        ("To", invite.headers.get("To") or ""),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq.seq} CANCEL"),
    ]
    if reason is not None:
        headers.append(("Reason", reason))
    return Request("CANCEL", invite.uri, headers)


def sdp_text(message: Request | Response) -> str:
    return message.body.decode("utf-8", "replace")


__all__ = [
    "AgentCall",
    "AnswerCaller",
    "Call",
    "CarrierTarget",
    "Command",
    "DescribeMedia",
    "EchoCall",
    "HandOverMedia",
    "LegAddress",
    "OutboundCall",
    "Phase",
    "Publish",
    "SendToBranch",
    "SendToCaller",
    "SendToCarrier",
    "Side",
    "StartMedia",
    "StartTimer",
    "StopMedia",
    "cancel_for",
]
