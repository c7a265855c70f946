"""A call that rings agents: a customer's call from a carrier (inbound) or an agent's call to
another agent's extension (internal), as a sans-I/O state machine.

We are the UAS of the caller's INVITE and the UAC of one INVITE per registered contact of every
agent we ring, all sent at once (parallel forking done by the B2BUA itself, RFC 3261 16.7's
rules applied to our own branches). The first 2xx wins: its branch is acknowledged and bridged,
every other branch is cancelled with ``Reason: SIP;cause=200;text="Call completed elsewhere"``
(RFC 3326) so the other agents' phones stop ringing without counting it as missed. Nobody to ring
answers the caller 480 at once; nobody answering within the ring timeout is a no-answer.

Media: the caller's offer goes to a worker, which answers it and makes our offer for the agents.
A browser needs a WebRTC offer and a desk phone a plain RTP one, so a call that rings both asks for
one session of each kind (``key``) and releases the loser's when someone answers.

Blind transfer (RFC 3515): the agent who answered sends REFER naming a colleague's extension. We
answer 202, NOTIFY ``100 Trying``, hold both legs in the worker (the customer hears silence) and ring
every contact of the new agent like the first time, with an offer for a new leg the worker prepared
while the customer's leg stays where it is. The first to answer takes the transferor's place in the
media session and in this call (it becomes the ``winner``); the transferor gets ``NOTIFY 200`` and
BYE. If nobody answers (busy, declined, nobody registered, the ring timeout), the transferor gets the
failure as a sipfrag and the customer back; if the transferor already hung up, the call ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from services.signaling.b2bua.call import (
    AnswerCaller,
    Call,
    Command,
    DescribeMedia,
    HandOverMedia,
    LegAddress,
    Phase,
    Publish,
    SendToBranch,
    SendToCaller,
    Side,
    StartMedia,
    StartTimer,
    StopMedia,
    cancel_for,
    sdp_text,
)
from services.signaling.b2bua.referral import notify
from services.signaling.b2bua.session_timer import RETRY_S, SessionExpires, expire_at, refresh_at
from services.signaling.sip.auth import ChallengeOutcome, DigestClient, DigestError
from services.signaling.sip.dialog import Dialog, DialogError, DialogState
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.message import Request, Response, make_response, new_tag
from services.signaling.sip.transaction import new_branch
from shared.events import (
    CallAnswered,
    CallAnsweredData,
    CallCreated,
    CallCreatedData,
    CallRinging,
    CallRingingData,
    CallStatus,
    CallTransferFailed,
    CallTransferFailedData,
    CallTransferred,
    CallTransferredData,
    Direction,
    EndCause,
    LegKind,
    Party,
    TransferKind,
)
from shared.media import (
    CreateSession,
    DiscardLegs,
    Hold,
    LegMedia,
    PrepareLeg,
    RemoteDescription,
    ReplaceLeg,
    SessionCreated,
    SessionKind,
)
from shared.outcomes import Outcome, for_cause, for_sip_status

SDP = "application/sdp"
#: RFC 3326 2 with the text SIP.js and desk phones show as "answered elsewhere" (not a missed call).
COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
RING_TIMER = "ring"
TRANSFER_TIMER = "transfer"
#: Our refresh of the caller's session, and the caller's refresh overdue (RFC 4028 10).
CALLER_REFRESH = "caller-session-refresh"
CALLER_EXPIRE = "caller-session-expire"
#: What the transferor reads in the sipfrag when the new party's phones all failed (RFC 3261 21).
_PHRASES = {
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    487: "Request Terminated",
    503: "Service Unavailable",
    603: "Decline",
}
DEFAULT_RING_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called: a customer through a trunk, or an agent."""

    invite: Request
    address: LegAddress
    #: The caller speaks WebRTC (a browser agent); carriers and desk phones speak plain RTP.
    webrtc: bool
    party: Party
    #: E.164 for a customer (normalized with the trunk's region), the extension for an agent.
    number: str
    display_name: str | None = None
    agent_id: str | None = None
    trunk_id: str | None = None


@dataclass(frozen=True, slots=True)
class RingTarget:
    """One registered contact of an agent we ring (one registrar binding), or a number we call through
    a trunk (a transfer to an outside number: ``agent_id`` None, ``trunk_id`` set)."""

    agent_id: str | None
    #: The agent's extension, or the E.164 number the carrier is asked for.
    extension: str
    domain: str
    #: The binding's Contact URI: the Request-URI of our INVITE (RFC 3261 10.2.1 / 16.5).
    contact: str
    #: How we appear on the flow the binding registered over (or towards the carrier).
    address: LegAddress
    webrtc: bool
    trunk_id: str | None = None
    #: Who we are to the carrier (the trunk's caller id) and how we answer its 401/407.
    caller_id: str | None = None
    credentials: DigestClient | None = None


class BranchState(Enum):
    WAITING = "waiting"  # its media session is being prepared
    CALLING = "calling"  # INVITE sent, nothing heard yet
    PROCEEDING = "proceeding"  # a provisional response came: it may be cancelled
    CANCELLING = "cancelling"
    ANSWERED = "answered"
    DONE = "done"  # a final non-2xx, a timeout, or cancelled


@dataclass(slots=True)
class Branch:
    index: int
    target: RingTarget
    key: str
    state: BranchState = BranchState.WAITING
    invite: Request | None = None
    dialog: Dialog | None = None
    final_status: int | None = None
    final_reason: str | None = None
    #: A CANCEL to send as soon as a provisional response allows it (RFC 3261 9.1).
    cancel_reason: str | None = None
    cancel_pending: bool = False
    tag: str = field(default_factory=new_tag)
    sip_call_id: str = field(default_factory=lambda: new_tag() + new_tag())
    #: A branch ringing the new party of a transfer (its ``key`` is the session it joins).
    transfer: bool = False
    #: Our INVITE's CSeq: a carrier's challenge is answered with the next (RFC 3261 22.2).
    cseq: int = 1

    @property
    def open(self) -> bool:
        return self.state in (BranchState.WAITING, BranchState.CALLING, BranchState.PROCEEDING)


def media_plan(caller_webrtc: bool, callee_webrtc: bool) -> tuple[SessionKind, LegKind, LegKind]:
    """The session kind for a caller and a callee, and which leg of it each one is.

    The contract's legs are named for an outbound call (a WebRTC ``agent`` leg, a plain RTP
    ``customer`` leg); a browser always takes the WebRTC leg, and between two of a kind the caller
    takes the ``customer`` leg of an ``rtp-rtp`` session (so a carrier's customer is the customer)
    and the ``agent`` leg of a ``webrtc-webrtc`` one.
    """
    if caller_webrtc and callee_webrtc:
        return SessionKind.WEBRTC_WEBRTC, LegKind.AGENT, LegKind.CUSTOMER
    if caller_webrtc:
        return SessionKind.WEBRTC_RTP, LegKind.AGENT, LegKind.CUSTOMER
    if callee_webrtc:
        return SessionKind.WEBRTC_RTP, LegKind.CUSTOMER, LegKind.AGENT
    return SessionKind.RTP_RTP, LegKind.CUSTOMER, LegKind.AGENT


def _key(target: RingTarget) -> str:
    return "webrtc" if target.webrtc else "rtp"


@dataclass(slots=True)
class Transfer:
    """A blind transfer under way (RFC 3515): who asked, in which REFER, for what, and the legs."""

    by: Branch
    #: The REFER (its dialog gets our NOTIFYs); None for a transfer the api asked for.
    refer: Request | None
    #: What the Refer-To named (the extension).
    target: str
    to_agent_id: str | None
    #: The transferor's leg of the media session (the new party takes it) and the other one.
    leg: LegKind
    other_leg: LegKind
    key: str
    #: The transferor hung up while the new party rang: a failure then ends the call.
    transferor_gone: bool = False
    #: When the new party has rung long enough (a timer of an earlier transfer is not this one's).
    deadline: float = 0.0
    #: Who asked: the agent (REFER) or the api (a command).
    asked_by: Party = Party.AGENT


@dataclass(kw_only=True)
class RingCall(Call):
    caller: Caller
    direction: Direction
    #: What the caller dialed: the DID (E.164) of an inbound call, the extension of an internal one.
    dialed: str
    targets: tuple[RingTarget, ...]
    ring_timeout_s: float = DEFAULT_RING_TIMEOUT_S
    tag: str = field(default_factory=new_tag)
    caller_dialog: Dialog | None = None
    branches: list[Branch] = field(default_factory=list)
    #: Media sessions by key, while they are ours.
    sessions: dict[str, SessionCreated] = field(default_factory=dict)
    winner: Branch | None = None
    transfer: Transfer | None = None
    _ringing_published: bool = False
    #: The caller's session timer as our 2xx states it (RFC 4028 9; None: none), whether the caller
    #: said ``Supported: timer``, our refresh re-INVITE in flight, and the timers' due times.
    caller_session: SessionExpires | None = None
    caller_supports_timer: bool = False
    _caller_refresh: Request | None = None
    _caller_sdp: bytes = b""
    _due: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.branches = [Branch(i, target, _key(target)) for i, target in enumerate(self.targets)]

    # --- identity ------------------------------------------------------------------------------

    @property
    def caller_invite(self) -> Request:
        return self.caller.invite

    @property
    def caller_tag(self) -> str:
        return self.tag

    @property
    def trunk_id(self) -> str | None:
        return self.caller.trunk_id

    @property
    def agent_ids(self) -> tuple[str, ...]:
        targets = (
            (self.winner.target,) if self.winner is not None else [b.target for b in self.branches if b.open]
        )
        callees = tuple(dict.fromkeys(t.agent_id for t in targets if t.agent_id is not None))
        return ((self.caller.agent_id,) if self.caller.agent_id else ()) + callees

    def branch_of(self, sip_call_id: str) -> Branch | None:
        return next((b for b in self.branches if b.sip_call_id == sip_call_id), None)

    def owns_response(self, response: Response) -> bool:
        return self.branch_of(response.call_id) is not None

    def side(self, from_caller: bool) -> Side | None:
        winner = self.winner
        if self.phase is not Phase.CONNECTED or winner is None:
            return None
        _, caller_leg, callee_leg = media_plan(self.caller.webrtc, winner.target.webrtc)
        if from_caller:
            if self.caller_dialog is None:
                return None
            contact = self.caller.address.contact
            return Side(self.caller_dialog, contact, caller_leg, winner.key, self.caller.party, callee_leg)
        if winner.dialog is None:
            return None
        contact = winner.target.address.contact
        return Side(winner.dialog, contact, callee_leg, winner.key, Party.AGENT, caller_leg)

    # --- inputs --------------------------------------------------------------------------------

    def start(self, now: float) -> list[Command]:
        self.created_at = now
        created = CallCreated(
            **self._envelope(),
            data=CallCreatedData(
                direction=self.direction,
                from_number=self.caller.number,
                to_number=self.dialed,
                agent_id=self.caller.agent_id,
                trunk_id=self.caller.trunk_id,
                status=CallStatus.INITIATED,
                recorded=self.record,
            ),
        )
        if not self.branches:
            # Nobody registered (or everybody at their limit): the caller hears 480 at once and the
            # helpdesk gets its missed call (issue 5).
            return [
                Publish(created),
                *self._fail(
                    for_cause(EndCause.UNAVAILABLE), 480, "Temporarily Unavailable", now, media=False
                ),
            ]
        commands: list[Command] = [AnswerCaller(self._caller_response(100)), Publish(created)]
        offer = self.caller.invite.body.decode("utf-8", "replace") or None
        for key in dict.fromkeys(b.key for b in self.branches):
            kind, caller_leg, _ = media_plan(self.caller.webrtc, key == "webrtc")
            request = CreateSession(
                tenant_id=self.tenant_id,
                call_id=self.call_id,
                kind=kind,
                agent_offer=offer if caller_leg is LegKind.AGENT else None,
                customer_offer=offer if caller_leg is LegKind.CUSTOMER else None,
                record=self.record,
            )
            commands.append(StartMedia(request, key))
        commands.append(StartTimer(RING_TIMER, now + self.ring_timeout_s))
        return commands

    def media_ready(self, created: SessionCreated, now: float, key: str = "main") -> list[Command]:
        if self.phase is Phase.ENDED or self.winner is not None:
            return [StopMedia("the call no longer needs this session", key)]
        self.sessions[key] = created
        _, caller_leg, callee_leg = media_plan(self.caller.webrtc, key == "webrtc")
        ours_for_caller = _sdp_of(created, caller_leg)
        ours_for_callee = _sdp_of(created, callee_leg)
        if ours_for_caller is None or ours_for_callee is None:
            return self.media_failed("the media server gave no SDP", now, key)
        if self.phase is Phase.MEDIA:
            self.phase = Phase.DIALING
        commands: list[Command] = []
        for branch in self.branches:
            if branch.key == key and branch.state is BranchState.WAITING and not branch.transfer:
                branch.invite = self._branch_invite(branch, ours_for_callee.encode())
                branch.state = BranchState.CALLING
                commands.append(SendToBranch(branch.index, branch.invite))
        return commands

    def media_failed(self, reason: str, now: float, key: str = "main") -> list[Command]:
        if self.phase is Phase.ENDED:
            return []
        for branch in self.branches:
            if branch.key == key and branch.state is BranchState.WAITING:
                branch.state = BranchState.DONE
                branch.final_status = 488 if "codec" in reason.lower() else 503
        return self._after_branch_ended(now)

    def branch_response(self, index: int, response: Response, now: float) -> list[Command]:
        branch = self.branches[index]
        if response.cseq.method != "INVITE":
            return []  # answers to CANCEL and BYE need nothing from the call
        code = response.status_code
        if code < 200:
            return self._branch_provisional(branch, response)
        if code < 300:
            return self._branch_answered(branch, response, now)
        if branch.state is BranchState.ANSWERED:
            return []
        if code in (401, 407) and branch.target.credentials is not None and branch.open:
            retry = self._branch_challenged(branch, response)
            if retry is not None:
                return [SendToBranch(branch.index, retry)]
        branch.state = BranchState.DONE
        branch.final_status = code
        branch.final_reason = response.reason
        return self._after_branch_ended(now)

    def _branch_challenged(self, branch: Branch, response: Response) -> Request | None:
        """The carrier's 401/407 to a transfer out, answered with the trunk's credentials once per
        challenge (RFC 3261 22.2: same Call-ID and From tag, the next CSeq); None: give up."""
        invite, credentials = branch.invite, branch.target.credentials
        if invite is None or credentials is None or branch.cancel_pending:
            return None
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        answer_header = "Authorization" if response.status_code == 401 else "Proxy-Authorization"
        try:
            answer = credentials.answer(
                response.headers.get_all(header),
                "INVITE",
                str(invite.uri),
                sent=invite.headers.get_all(answer_header),
            )
        except DigestError:
            return None
        if answer.outcome is ChallengeOutcome.REJECTED or answer.value is None:
            return None
        branch.cseq += 1
        branch.invite = self._branch_invite(branch, invite.body, auth=(answer_header, answer.value))
        branch.state = BranchState.CALLING
        return branch.invite

    def branch_failed(self, index: int, *, timed_out: bool, now: float) -> list[Command]:
        """The branch's INVITE transaction ended without a final response (Timer B, a closed flow)."""
        branch = self.branches[index]
        transfer = self.transfer
        if transfer is not None and branch is transfer.by:
            # The transferor's connection went while the new party rings: it had left anyway.
            transfer.transferor_gone = True
            return []
        if branch.state is BranchState.ANSWERED:
            return self.hang_up(EndCause.AGENT_CONNECTION_LOST, now) if branch is self.winner else []
        if not branch.open and branch.state is not BranchState.CANCELLING:
            return []
        branch.state = BranchState.DONE
        branch.final_status = 408 if timed_out else 503
        return self._after_branch_ended(now)

    def stray_response(self, response: Response, now: float) -> list[Command]:
        branch = self.branch_of(response.call_id)
        if branch is None:
            return []
        return self.branch_response(branch.index, response, now)

    def timer_fired(self, name: str, now: float) -> list[Command]:
        if name in (CALLER_REFRESH, CALLER_EXPIRE):
            return self._caller_session_timer(name, now)
        if name == TRANSFER_TIMER:
            transfer = self.transfer
            if transfer is None or self.phase is not Phase.CONNECTED or now < transfer.deadline - 0.001:
                return []
            # RFC 3261 9.1: the new party's phones are cancelled; the transferor reads why.
            return self._transfer_failed(408, "No answer", now)
        if name != RING_TIMER or self.phase in (Phase.CONNECTED, Phase.ENDED):
            return []
        commands = self._cancel_open_branches(None)
        return commands + self._fail(for_cause(EndCause.NO_ANSWER), 480, "No Answer", now)

    def caller_cancelled(self, now: float) -> list[Command]:
        if self.phase in (Phase.CONNECTED, Phase.ENDED):
            return []
        commands = self._cancel_open_branches(None)
        return commands + self._fail(
            for_cause(EndCause.CANCELED), 487, "Request Terminated", now, ended_by=self.caller.party
        )

    def bye(self, from_caller: bool, now: float) -> list[Command]:
        if self.phase is not Phase.CONNECTED or self.winner is None:
            return []
        transfer = self.transfer
        if transfer is not None and not from_caller:
            # The transferor leaves once it asked (what a blind transfer is): the call waits for the
            # new party. Its dialog is over: no NOTIFY can reach it any more (RFC 3515 2.4.7).
            transfer.transferor_gone = True
            if self.winner.dialog is not None:
                self.winner.dialog.terminate()
            return []
        commands: list[Command] = []
        if transfer is not None:
            commands.extend(self._abandon_transfer(487, "Request Terminated"))
        if from_caller:
            dialog, address = self.winner.dialog, self.winner.target.address
            if dialog is not None:
                bye = dialog.request("BYE", via_host=address.via_host, transport=address.transport)
                commands.append(SendToBranch(self.winner.index, bye))
            party = self.caller.party
        else:
            commands.extend(self._bye_caller())
            # After a transfer to an outside number, the far end is a customer too.
            party = Party.AGENT if self.winner.target.agent_id is not None else Party.CUSTOMER
        return commands + self._end(for_cause(EndCause.NORMAL_CLEARING), party, now)

    def hang_up(self, cause: EndCause, now: float, by: Party = Party.SYSTEM) -> list[Command]:
        if self.phase is Phase.ENDED:
            return []
        outcome = for_cause(cause)
        if self.phase is not Phase.CONNECTED or self.winner is None:
            commands = self._cancel_open_branches(None)
            status = {EndCause.MEDIA_FAILURE: 480, EndCause.CANCELED: 487}.get(cause, 500)
            return commands + self._fail(outcome, status, None, now, ended_by=by)
        commands = self._bye_caller()
        if self.transfer is not None:
            commands.extend(self._abandon_transfer(487, "Request Terminated"))
        winner = self.winner
        if winner.dialog is not None and winner.dialog.state is not DialogState.TERMINATED:
            address = winner.target.address
            bye = winner.dialog.request("BYE", via_host=address.via_host, transport=address.transport)
            commands.append(SendToBranch(winner.index, bye))
        return commands + self._end(outcome, by, now)

    # --- the caller's session timer (RFC 4028) --------------------------------------------------

    def session_refreshed(self, from_caller: bool, now: float) -> list[Command]:
        """The caller refreshed the session (a re-INVITE or UPDATE we answered 2xx): when it is
        the refresher, its deadline moves on."""
        session = self.caller_session
        if not from_caller or session is None or session.refresher != "uac":
            return []
        return [self._arm(CALLER_EXPIRE, expire_at(now, session.interval_s))]

    def session_header(self, from_caller: bool) -> str | None:
        """Session-Expires for our 2xx to the caller's refresh: the same interval and refresher."""
        if not from_caller or self.caller_session is None:
            return None
        return self.caller_session.header()

    def caller_response(self, response: Response | None, now: float) -> list[Command]:
        """The answer to our refresh re-INVITE to the caller (None: it timed out)."""
        refresh = self._caller_refresh
        if refresh is None or self.phase is not Phase.CONNECTED or self.caller_dialog is None:
            return []
        if response is not None and (response.cseq.seq != refresh.cseq.seq or response.status_code < 200):
            return []
        self._caller_refresh = None
        if response is not None and response.status_code < 300:
            address = self.caller.address
            ack = self.caller_dialog.ack(via_host=address.via_host, transport=address.transport)
            return [SendToCaller(ack), *self._arm_caller_session(now)]
        if response is None or response.status_code in (408, 481):
            # RFC 4028 10: a refresh that timed out (or a dialog the caller no longer has) ends it.
            return self.hang_up(EndCause.SESSION_TIMER_EXPIRED, now)
        # Glare (491) or a passing failure: the session goes on; try again shortly.
        return [self._arm(CALLER_REFRESH, now + RETRY_S)]

    def _arm_caller_session(self, now: float) -> list[Command]:
        """After the caller's session was set up or refreshed: our refresh at half the interval
        when we refresh, else the caller's deadline (RFC 4028 10)."""
        session = self.caller_session
        if session is None:
            return []
        if session.refresher == "uas":
            return [self._arm(CALLER_REFRESH, refresh_at(now, session.interval_s))]
        return [self._arm(CALLER_EXPIRE, expire_at(now, session.interval_s))]

    def _caller_session_timer(self, name: str, now: float) -> list[Command]:
        due = self._due.get(name)
        if self.phase is not Phase.CONNECTED or due is None or now < due - 0.001:
            return []  # superseded by a later refresh, or the call is over
        del self._due[name]
        if name == CALLER_EXPIRE:
            return self.hang_up(EndCause.SESSION_TIMER_EXPIRED, now)
        session, dialog = self.caller_session, self.caller_dialog
        if session is None or dialog is None or self._caller_refresh is not None:
            return []
        address = self.caller.address
        self._caller_refresh = dialog.request(
            "INVITE",
            via_host=address.via_host,
            transport=address.transport,
            headers=(("Session-Expires", session.header()), ("Supported", "timer")),
            body=self._caller_sdp,
            content_type=SDP,
        )
        dialog.invite_sent()
        return [SendToCaller(self._caller_refresh)]

    def _arm(self, name: str, at: float) -> StartTimer:
        self._due[name] = at
        return StartTimer(name, at)

    # --- blind transfer (RFC 3515) -------------------------------------------------------------

    def transfer_refusal(self, from_caller: bool) -> tuple[int, str] | None:
        if self.phase is not Phase.CONNECTED or self.winner is None:
            return (491, "The call is not answered yet")
        if from_caller or self.winner.target.agent_id is None:
            # The customer's carrier (or the agent who called a colleague) hands nothing over here.
            return (403, "Only the agent who answered can transfer this call")
        if self.transfer is not None:
            return (491, "A transfer of this call is already in progress")
        return None

    def start_transfer(
        self,
        refer: Request | None,
        target: str,
        targets: tuple[RingTarget, ...],
        now: float,
        *,
        to_agent_id: str | None = None,
        refusal: tuple[int, str] | None = None,
        asked_by: Party = Party.AGENT,
    ) -> list[Command]:
        """The REFER from the agent who answered was accepted (202), or the api asked (``refer``
        None): ring ``targets`` (every contact of the new agent that has room, or a number through a
        trunk), or report ``refusal`` (the dial plan's status and reason)."""
        winner = self.winner
        assert winner is not None
        assert self.transfer is None
        _, caller_leg, callee_leg = media_plan(self.caller.webrtc, winner.target.webrtc)
        self.transfer = Transfer(
            by=winner,
            refer=refer,
            target=target,
            to_agent_id=to_agent_id,
            leg=callee_leg,
            other_leg=caller_leg,
            key=winner.key,
            asked_by=asked_by,
        )
        # RFC 3515 2.4.4: the first NOTIFY goes at once.
        commands = self._notify_transferor(100, "Trying")
        if refusal is not None or not targets:
            status, reason = refusal or (480, "Temporarily Unavailable")
            commands += self._notify_transferor(status, reason)
            commands.append(self._transfer_failed_event(status, reason))
            self.transfer = None
            return commands
        start = len(self.branches)
        for offset, ring in enumerate(targets):
            self.branches.append(Branch(start + offset, ring, winner.key, transfer=True))
        # Nobody hears anybody while the new party rings (the transferor is leaving; the customer
        # waits in silence rather than hearing what the transferor says to someone else).
        commands += [
            HandOverMedia(Hold(leg=callee_leg, held=True), winner.key),
            HandOverMedia(Hold(leg=caller_leg, held=True), winner.key),
        ]
        for webrtc in dict.fromkeys(ring.webrtc for ring in targets):
            media = LegMedia.WEBRTC if webrtc else LegMedia.RTP
            commands.append(HandOverMedia(PrepareLeg(leg=callee_leg, media=media), winner.key))
        self.transfer.deadline = now + self.ring_timeout_s
        commands.append(StartTimer(TRANSFER_TIMER, self.transfer.deadline))
        return commands

    def transfer_offer(self, webrtc: bool, sdp: str, now: float) -> list[Command]:
        """The worker prepared the new party's leg: ring the contacts that speak its media."""
        if self.transfer is None or self.phase is not Phase.CONNECTED:
            return []
        commands: list[Command] = []
        for branch in self.branches:
            if branch.transfer and branch.state is BranchState.WAITING and branch.target.webrtc == webrtc:
                branch.invite = self._branch_invite(branch, sdp.encode())
                branch.state = BranchState.CALLING
                commands.append(SendToBranch(branch.index, branch.invite))
        return commands

    def transfer_media_failed(self, webrtc: bool, reason: str, now: float) -> list[Command]:
        """The worker could not prepare a leg: the contacts that needed it cannot be rung."""
        if self.transfer is None or self.phase is not Phase.CONNECTED:
            return []
        for branch in self.branches:
            if branch.transfer and branch.state is BranchState.WAITING and branch.target.webrtc == webrtc:
                branch.state = BranchState.DONE
                branch.final_status = 503
        return self._after_branch_ended(now)

    def _transfer_answered(self, branch: Branch, response: Response, now: float) -> list[Command]:
        """The new party answered: it takes the transferor's place in the media and in the call."""
        invite = branch.invite
        transfer = self.transfer
        old = self.winner
        assert invite is not None
        address = branch.target.address
        try:
            dialog = Dialog.as_uac(invite, response, address.contact)
        except (DialogError, SipParseError):
            branch.state = BranchState.DONE
            branch.final_status = 502
            return self._after_branch_ended(now)
        ack = SendToBranch(branch.index, dialog.ack(via_host=address.via_host, transport=address.transport))
        if transfer is None or old is None or self.phase is not Phase.CONNECTED or not response.body:
            # Another contact answered first, the transfer is over, or an answer without SDP to our
            # offer (RFC 3264 5): acknowledge and release (RFC 3261 15).
            branch.state = BranchState.DONE
            branch.final_status = 488 if not response.body else None
            bye = dialog.request("BYE", via_host=address.via_host, transport=address.transport)
            commands: list[Command] = [ack, SendToBranch(branch.index, bye)]
            return commands + (self._after_branch_ended(now) if transfer is not None else [])
        branch.state = BranchState.ANSWERED
        branch.dialog = dialog
        media = LegMedia.WEBRTC if branch.target.webrtc else LegMedia.RTP
        replace = ReplaceLeg(leg=transfer.leg, media=media, answer=sdp_text(response))
        commands = [ack, HandOverMedia(replace, transfer.key)]
        commands.extend(self._cancel_open_branches(COMPLETED_ELSEWHERE))
        # RFC 3515 2.4.5: the final NOTIFY, then the transferor's leg ends (RFC 5589 6.1).
        commands.extend(self._notify_transferor(200, "OK"))
        if not transfer.transferor_gone and old.dialog is not None:
            old_address = old.target.address
            bye = old.dialog.request("BYE", via_host=old_address.via_host, transport=old_address.transport)
            commands.append(SendToBranch(old.index, bye))
            old.dialog.terminate()
        old.state = BranchState.DONE
        self.winner = branch
        self.transfer = None
        self._held_by.clear()
        data = CallTransferredData(
            kind=TransferKind.BLIND,
            target=transfer.target,
            transferred_by=transfer.asked_by,
            from_agent_id=old.target.agent_id,
            to_agent_id=branch.target.agent_id,
        )
        commands.append(Publish(CallTransferred(**self._envelope(), data=data)))
        return commands

    def _transfer_failed(self, status: int, reason: str, now: float) -> list[Command]:
        """Nobody took the transfer: the customer goes back to the transferor, or the call ends."""
        transfer = self.transfer
        assert transfer is not None
        failed = self._transfer_failed_event(status, reason)
        commands = [*self._abandon_transfer(status, reason), failed]
        if not transfer.transferor_gone:
            # The transferor hears the customer again (and the reason, on a phone that shows it).
            return [
                *commands,
                HandOverMedia(Hold(leg=transfer.leg, held=False), transfer.key),
                HandOverMedia(Hold(leg=transfer.other_leg, held=False), transfer.key),
            ]
        commands.extend(self._bye_caller())
        outcome = Outcome(
            CallStatus.COMPLETED,
            EndCause.TRANSFER_FAILED,
            f"Call ended: the transfer to {transfer.target} failed ({status} {reason})",
        )
        return commands + self._end(outcome, Party.SYSTEM, now, sip_status=status, sip_reason=reason)

    def _transfer_failed_event(self, status: int, reason: str) -> Publish:
        transfer = self.transfer
        assert transfer is not None
        data = CallTransferFailedData(
            kind=TransferKind.BLIND,
            target=transfer.target,
            transferred_by=transfer.asked_by,
            from_agent_id=transfer.by.target.agent_id,
            sip_status=status if 300 <= status <= 699 else 500,
            reason=reason[:200],
        )
        return Publish(CallTransferFailed(**self._envelope(), data=data))

    def _abandon_transfer(self, status: int, reason: str) -> list[Command]:
        """Stop ringing the new party, release its prepared legs, tell the transferor why."""
        transfer = self.transfer
        assert transfer is not None
        commands = self._notify_transferor(status, reason)
        self.transfer = None
        commands.extend(self._cancel_open_branches(None))
        commands.append(HandOverMedia(DiscardLegs(leg=transfer.leg), transfer.key))
        return commands

    def _notify_transferor(self, status: int, reason: str) -> list[Command]:
        """A NOTIFY in the transferor's dialog, while it lasts; a final status ends the subscription."""
        current = self.transfer
        if current is None or current.transferor_gone or current.refer is None:
            return []
        branch = current.by
        dialog = branch.dialog
        if dialog is None or dialog.state is DialogState.TERMINATED:
            return []
        address = branch.target.address
        request = notify(
            dialog,
            current.refer,
            status,
            reason,
            via_host=address.via_host,
            transport=address.transport,
        )
        return [SendToBranch(branch.index, request)]

    # --- steps ---------------------------------------------------------------------------------

    def _branch_provisional(self, branch: Branch, response: Response) -> list[Command]:
        if branch.state is BranchState.CALLING:
            branch.state = BranchState.PROCEEDING
        commands: list[Command] = []
        if branch.cancel_pending and branch.invite is not None:
            branch.cancel_pending = False
            branch.state = BranchState.CANCELLING
            return [SendToBranch(branch.index, cancel_for(branch.invite, branch.cancel_reason))]
        if response.status_code == 100 or self.phase not in (Phase.DIALING, Phase.RINGING):
            return commands
        # The agents' phones ring: the caller hears ringback (180 without SDP; the agents' early
        # media is not the caller's business).
        if self.phase is Phase.DIALING:
            self.phase = Phase.RINGING
            commands.append(AnswerCaller(self._caller_response(180)))
        if not self._ringing_published:
            self._ringing_published = True
            commands.append(Publish(CallRinging(**self._envelope(), data=CallRingingData())))
        return commands

    def _branch_answered(self, branch: Branch, response: Response, now: float) -> list[Command]:
        invite = branch.invite
        if invite is None:
            return []
        address = branch.target.address
        if branch is self.winner:
            # A retransmitted 2xx: our ACK was lost (RFC 3261 13.2.2.4).
            if branch.dialog is None:
                return []
            return [
                SendToBranch(
                    branch.index, branch.dialog.ack(via_host=address.via_host, transport=address.transport)
                )
            ]
        if branch.transfer:
            return self._transfer_answered(branch, response, now)
        try:
            dialog = Dialog.as_uac(invite, response, address.contact)
        except (DialogError, SipParseError):
            branch.state = BranchState.DONE
            branch.final_status = 502
            return self._after_branch_ended(now)
        ack = SendToBranch(branch.index, dialog.ack(via_host=address.via_host, transport=address.transport))
        if self.winner is not None or self.phase is Phase.ENDED:
            # Two agents answered at once, or the caller hung up as this one answered: acknowledge
            # and release the latecomer (RFC 3261 15: a 2xx is ended with ACK then BYE).
            branch.state = BranchState.DONE
            bye = dialog.request("BYE", via_host=address.via_host, transport=address.transport)
            return [ack, SendToBranch(branch.index, bye)]
        session = self.sessions.get(branch.key)
        if session is None:
            return [
                ack,
                SendToBranch(
                    branch.index,
                    dialog.request("BYE", via_host=address.via_host, transport=address.transport),
                ),
            ]
        branch.state = BranchState.ANSWERED
        branch.dialog = dialog
        self.winner = branch
        self.media_session, self.media_worker = session.session_id, session.worker_id
        _, caller_leg, callee_leg = media_plan(self.caller.webrtc, branch.target.webrtc)
        commands: list[Command] = [ack]
        if response.body:
            answer = RemoteDescription(leg=callee_leg, sdp=sdp_text(response), type="answer")
            commands.append(DescribeMedia(answer, branch.key))
        commands.extend(self._cancel_open_branches(COMPLETED_ELSEWHERE))
        for key in [k for k in self.sessions if k != branch.key]:
            del self.sessions[key]
            commands.append(StopMedia("answered elsewhere", key))
        self.caller_dialog = Dialog.as_uas(
            self.caller.invite, self.tag, self.caller.address.contact, confirmed=True
        )
        body = (_sdp_of(session, caller_leg) or "").encode()
        self._caller_sdp = body
        commands.append(AnswerCaller(self._caller_response(200, body=body, session=True)))
        commands.extend(self._arm_caller_session(now))
        self.phase = Phase.CONNECTED
        self.answered_at = now
        self.answered_wall = datetime.now(UTC)
        answered = CallAnsweredData(answered_by=branch.target.agent_id, media_worker=session.worker_id)
        commands.append(Publish(CallAnswered(**self._envelope(), data=answered)))
        return commands

    def _after_branch_ended(self, now: float) -> list[Command]:
        """A branch failed: when none is left, the caller gets the best of their answers."""
        transfer = self.transfer
        if transfer is not None and self.phase is Phase.CONNECTED:
            ringing = [b for b in self.branches if b.transfer]
            if any(b.open for b in ringing):
                return []
            carrier = ringing[0].final_status if len(ringing) == 1 and ringing[0].target.trunk_id else None
            if carrier is not None:
                # A number through a carrier: the transferor reads the carrier's own answer.
                return self._transfer_failed(carrier, ringing[0].final_reason or "Call failed", now)
            status = _best_failure([b.final_status or 480 for b in ringing])
            return self._transfer_failed(status, _PHRASES.get(status, "Temporarily Unavailable"), now)
        if self.phase in (Phase.CONNECTED, Phase.ENDED) or any(b.open for b in self.branches):
            return []
        status = _best_failure([b.final_status or 480 for b in self.branches])
        outcome = for_sip_status(status)
        if status == 480:
            outcome = for_cause(EndCause.UNAVAILABLE)
        return self._fail(outcome, status, None, now, ended_by=Party.AGENT)

    def _cancel_open_branches(self, reason: str | None) -> list[Command]:
        commands: list[Command] = []
        for branch in self.branches:
            if branch.state is BranchState.WAITING:
                branch.state = BranchState.DONE
            elif branch.state is BranchState.CALLING:
                # RFC 3261 9.1: no CANCEL before a provisional response; it goes when one comes.
                branch.cancel_pending = True
                branch.cancel_reason = reason
            elif branch.state is BranchState.PROCEEDING and branch.invite is not None:
                branch.state = BranchState.CANCELLING
                commands.append(SendToBranch(branch.index, cancel_for(branch.invite, reason)))
        return commands

    def _fail(
        self,
        outcome: Outcome,
        status: int,
        reason: str | None,
        now: float,
        *,
        ended_by: Party = Party.SYSTEM,
        media: bool = True,
    ) -> list[Command]:
        if self.phase is Phase.ENDED:
            return []
        commands: list[Command] = [AnswerCaller(self._caller_response(status, reason=reason))]
        return commands + self._end(outcome, ended_by, now, sip_status=status, sip_reason=reason, media=media)

    def _release_media(self, reason: str) -> list[Command]:
        commands: list[Command] = [StopMedia(reason, key) for key in self.sessions]
        self.sessions.clear()
        return commands

    def _dialogs(self) -> tuple[Dialog | None, ...]:
        return (self.caller_dialog, self.winner.dialog if self.winner is not None else None)

    def _bye_caller(self) -> list[Command]:
        if self.caller_dialog is None:
            return []
        address = self.caller.address
        return [
            SendToCaller(
                self.caller_dialog.request("BYE", via_host=address.via_host, transport=address.transport)
            )
        ]

    # --- building messages ---------------------------------------------------------------------

    def _caller_response(
        self, status: int, *, reason: str | None = None, body: bytes = b"", session: bool = False
    ) -> Response:
        headers: list[tuple[str, str]] = []
        if 100 < status < 300:
            headers.append(("Contact", self.caller.address.contact))
        if session and self.caller_session is not None:
            # RFC 4028 9: the 2xx states the interval and the refresher; Require only to a UAC
            # that supports timers (one that does not is not bound by it: we refresh).
            headers.append(("Session-Expires", self.caller_session.header()))
            if self.caller_supports_timer:
                headers.append(("Require", "timer"))
        if body:
            headers.append(("Content-Type", SDP))
        return make_response(
            self.caller.invite, status, reason, to_tag=self.tag, headers=tuple(headers), body=body
        )

    def _branch_invite(self, branch: Branch, body: bytes, *, auth: tuple[str, str] | None = None) -> Request:
        target = branch.target
        address = target.address
        caller = self.caller
        if target.caller_id is not None:
            # Towards a carrier we are the trunk's subscriber: its caller id, as an outbound call.
            from_value = f"<sip:{target.caller_id}@{target.domain}>;tag={branch.tag}"
        else:
            # The agent's screen shows who calls: the customer's E.164 (or the colleague's
            # extension), with the name where there is one (RFC 3261 20.20).
            name = (caller.display_name or caller.number).replace('"', "")
            from_value = f'"{name}" <sip:{caller.number}@{target.domain}>;tag={branch.tag}'
        headers = [
            ("Via", f"SIP/2.0/{address.transport.upper()} {address.via_host};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", from_value),
            ("To", f"<sip:{target.extension}@{target.domain}>"),
            ("Call-ID", branch.sip_call_id),
            ("CSeq", f"{branch.cseq} INVITE"),
            ("Contact", address.contact),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, UPDATE"),
            ("Content-Type", SDP),
        ]
        if auth is not None:
            headers.append(auth)
        return Request("INVITE", target.contact, headers, body)


def _sdp_of(created: SessionCreated, leg: LegKind) -> str | None:
    return created.agent_sdp if leg is LegKind.AGENT else created.customer_sdp


def _best_failure(statuses: list[int]) -> int:
    """What the caller hears when every agent's phone failed (after RFC 3261 16.7.6): a decline
    beats everything, all busy is busy, anything else is "temporarily unavailable"."""
    if any(600 <= s < 700 for s in statuses):
        return 603
    if statuses and all(s in (486, 600) for s in statuses):
        return 486
    return 480


__all__ = [
    "COMPLETED_ELSEWHERE",
    "TRANSFER_TIMER",
    "Branch",
    "BranchState",
    "Caller",
    "RingCall",
    "RingTarget",
    "Transfer",
    "media_plan",
]
