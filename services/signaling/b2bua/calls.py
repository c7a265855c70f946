"""Every call of one signaling instance: INVITEs in, call state machines driven, commands carried out.

The stack hands this class the requests it does not answer itself (INVITE, BYE, CANCEL, the ACK
for a 2xx). An agent's INVITE is authenticated (407, RFC 3261 22.3), routed by the dial plan, and
becomes an :class:`OutboundCall`; the call's commands go to the stack (SIP), to the media workers
(NATS request/reply) and to the event stream. A request nobody authenticated never reaches a
carrier: that is the toll-fraud line.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from structlog.contextvars import unbind_contextvars

from services.signaling.b2bua.bridged import CALLEE, BridgedCall
from services.signaling.b2bua.call import (
    AgentCall,
    AnswerCaller,
    Call,
    CarrierTarget,
    Command,
    DescribeMedia,
    EchoCall,
    HandOverMedia,
    LegAddress,
    OutboundCall,
    Phase,
    Publish,
    SendToBranch,
    SendToCaller,
    SendToCarrier,
    Side,
    StartMedia,
    StartTimer,
    StopMedia,
)
from services.signaling.b2bua.call_store import CallStore
from services.signaling.b2bua.demo import DemoCall
from services.signaling.b2bua.dialplan import (
    CallCounts,
    Refused,
    ServiceLine,
    TenantPolicy,
    ToAgent,
    ToService,
    ToTrunk,
    route,
)
from services.signaling.b2bua.dtmf_info import dtmf_from_info
from services.signaling.b2bua.media_watch import WorkerWatch
from services.signaling.b2bua.reconnect import Reconnections, Slot
from services.signaling.b2bua.referral import ReferError, refer_target
from services.signaling.b2bua.ringing import Caller, RingCall, RingTarget
from services.signaling.b2bua.session_timer import MIN_SE_S, TooBrief, uas_session
from services.signaling.b2bua.snapshot import (
    SEQUENCE_BLOCK,
    CallSnapshot,
    FlowRef,
    Flows,
    abandon,
    ack_for,
    capture,
    restore,
)
from services.signaling.directory import AgentDirectory
from services.signaling.registrar import Binding
from services.signaling.sip.dialog import Dialog, DialogError
from services.signaling.sip.message import Request, Response, make_response, supported_tags
from services.signaling.sip.transaction import ClientTransaction, ServerTransaction, TransactionStateError
from services.signaling.sip.uri import SipUri
from services.signaling.stack import SipStack, aor_of
from services.signaling.tenants import TenantDirectory
from services.signaling.transport.flow import Flow, TransportKind
from services.signaling.transport.layer import TransportUnavailable
from services.signaling.trunk.numbers import called_number, caller_number
from services.signaling.trunk.trunks import Trunks
from shared import subjects
from shared.bus import Bus, BusError, Rejected, RemoteError
from shared.commands import (
    CallCommand,
    CommandAccepted,
    CommandVerb,
    ControlRecording,
    SendDigits,
    TransferCall,
)
from shared.events import (
    CallCreated,
    CallCreatedData,
    CallDtmf,
    CallEnded,
    CallEndedData,
    CallEventEnvelope,
    CallQuality,
    CallStatus,
    Direction,
    EndCause,
    Party,
    RecordingState,
)
from shared.logging import bind_call, get_logger
from shared.media import (
    CloseSession,
    CreateSession,
    DiscardLegs,
    Done,
    Hold,
    LegMedia,
    LocalDescription,
    MediaEvent,
    MediaEventKind,
    PrepareLeg,
    RecordingControl,
    RemoteDescription,
    ReplaceLeg,
    SendDtmf,
    SessionClosed,
    SessionCreated,
)
from shared.outcomes import for_cause
from shared.records import AgentRecord, TrunkRecord
from shared.sdp import SdpError, SessionDescription
from shared.settings import SignalingSettings

log = get_logger("echodesk.signaling.calls")

#: How long signaling waits for a media worker to answer (a worker is local; seconds are plenty).
MEDIA_TIMEOUT_S = 3.0


class MediaClient(Protocol):
    async def create(self, request: CreateSession) -> SessionCreated: ...

    async def describe(
        self, worker: str, session: str, description: RemoteDescription
    ) -> LocalDescription: ...

    async def close(self, worker: str, session: str, reason: str) -> None: ...

    async def dtmf(self, worker: str, session: str, digit: SendDtmf) -> None: ...

    async def hold(self, worker: str, session: str, hold: Hold) -> None: ...

    async def prepare(self, worker: str, session: str, request: PrepareLeg) -> LocalDescription: ...

    async def replace(self, worker: str, session: str, request: ReplaceLeg) -> None: ...

    async def discard(self, worker: str, session: str, request: DiscardLegs) -> None: ...

    async def record(self, worker: str, session: str, control: RecordingControl) -> None: ...


@dataclass
class BusMedia:
    """The media workers over NATS (shared/media.py is the contract)."""

    bus: Bus

    async def create(self, request: CreateSession) -> SessionCreated:
        return await self.bus.request(
            subjects.media_session_create(), request, SessionCreated, timeout=MEDIA_TIMEOUT_S
        )

    async def describe(self, worker: str, session: str, description: RemoteDescription) -> LocalDescription:
        subject = subjects.media_session(worker, session, "update")
        return await self.bus.request(subject, description, LocalDescription, timeout=MEDIA_TIMEOUT_S)

    async def close(self, worker: str, session: str, reason: str) -> None:
        subject = subjects.media_session(worker, session, "close")
        await self.bus.request(subject, CloseSession(reason=reason), SessionClosed, timeout=MEDIA_TIMEOUT_S)

    async def dtmf(self, worker: str, session: str, digit: SendDtmf) -> None:
        subject = subjects.media_session(worker, session, "dtmf")
        await self.bus.request(subject, digit, Done, timeout=MEDIA_TIMEOUT_S)

    async def hold(self, worker: str, session: str, hold: Hold) -> None:
        subject = subjects.media_session(worker, session, "hold")
        await self.bus.request(subject, hold, Done, timeout=MEDIA_TIMEOUT_S)

    async def prepare(self, worker: str, session: str, request: PrepareLeg) -> LocalDescription:
        subject = subjects.media_session(worker, session, "prepare")
        return await self.bus.request(subject, request, LocalDescription, timeout=MEDIA_TIMEOUT_S)

    async def replace(self, worker: str, session: str, request: ReplaceLeg) -> None:
        subject = subjects.media_session(worker, session, "replace")
        await self.bus.request(subject, request, Done, timeout=MEDIA_TIMEOUT_S)

    async def discard(self, worker: str, session: str, request: DiscardLegs) -> None:
        subject = subjects.media_session(worker, session, "discard")
        await self.bus.request(subject, request, Done, timeout=MEDIA_TIMEOUT_S)

    async def record(self, worker: str, session: str, control: RecordingControl) -> None:
        subject = subjects.media_session(worker, session, "record")
        await self.bus.request(subject, control, Done, timeout=MEDIA_TIMEOUT_S)


@dataclass
class _Leg:
    """A call and the I/O it needs: the flows of its legs, its media sessions, its timers."""

    call: Call
    caller_flow: Flow
    #: None for a call taken over after a restart (its INVITE was answered long ago).
    caller_txn: ServerTransaction | None
    #: The flow to the carrier, being opened while the media worker prepares the session (None:
    #: a call with no carrier, such as the echo line).
    carrier: asyncio.Task[Flow | None] | None = None
    #: The flow of each branch of a call that rings agents (its index is the branch's).
    branch_flows: list[Flow] = field(default_factory=list)
    #: Media sessions by key: (worker, session).
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    #: The (Call-ID, our tag) keys of its dialogs in ``Calls._by_dialog``.
    dialog_keys: list[tuple[str, str]] = field(default_factory=list)
    #: A REFER to an outside number waits for the flow to its trunk (a second one gets 491).
    refer_pending: bool = False
    #: Each flow as its snapshot names it (the registration of an agent's flow is looked up once).
    refs: dict[Flow, FlowRef] = field(default_factory=dict)
    #: The block of event numbers its snapshot last reserved (b2bua/snapshot.py ``SEQUENCE_BLOCK``).
    sequence_block: int = -1


class Calls:
    def __init__(
        self,
        stack: SipStack,
        settings: SignalingSettings,
        directory: AgentDirectory,
        trunks: Trunks,
        media: MediaClient,
        publish: Callable[[CallEventEnvelope], None],
        tenants: TenantDirectory | None = None,
    ) -> None:
        self.stack = stack
        #: Tenants' policies (KV ``tenants``): whether their calls are recorded.
        self.tenants = tenants if tenants is not None else TenantDirectory()
        self.settings = settings
        self.directory = directory
        self.trunks = trunks
        self.media = media
        self.publish = publish
        self._calls: dict[str, _Leg] = {}
        self._policy = TenantPolicy(max_concurrent_calls=settings.tenant_max_concurrent_calls)
        self.workers = WorkerWatch()
        #: This instance's name: the ``source`` of its calls' events and the node of its commands.
        self.node = subjects.token(settings.instance_id)
        #: (SIP Call-ID, our tag) of each leg's dialog -> our call id.
        self._by_dialog: dict[tuple[str, str], str] = {}
        self._by_invite: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        stack.handle("INVITE", self._on_invite)
        stack.handle("BYE", self._on_bye)
        stack.handle("CANCEL", self._on_cancel)
        stack.handle("ACK", self._on_ack)
        stack.handle("INFO", self._on_info)
        stack.handle("UPDATE", self._on_update)
        stack.handle("REFER", self._on_refer)
        stack.on_stray_response(self._on_stray_response)
        stack.on_flow_closed(self._on_flow_closed)
        stack.on_binding_added(self._on_binding_added)
        #: Agents' ends of connected calls whose connection dropped (services/signaling/b2bua/reconnect.py).
        self.reconnections = Reconnections(settings.agent_reconnect_grace_s)
        self._reconnect_timer: asyncio.TimerHandle | None = None
        #: BYEs for agents whose grace ran out, by (AOR, instance), sent when they register again
        #: (until the deadline beside each): their browser still shows a call that ended.
        self._undelivered: dict[tuple[str, str], list[tuple[Request, float]]] = {}
        #: Where each call's snapshot goes (KV ``calls``: b2bua/call_store.py); None: not kept.
        self.store: CallStore | None = None
        #: INVITEs of calls a previous incarnation was setting up, cancelled at start, by SIP
        #: Call-ID: their final answers are acknowledged (RFC 3261 17.1.1.3) until the deadline.
        self._abandoned: dict[str, tuple[Request, Flow, float]] = {}

    @property
    def active(self) -> int:
        return len(self._calls)

    # --- requests from the stack --------------------------------------------------------------

    def _on_invite(self, txn: ServerTransaction | None, request: Request, flow: Flow, now: float) -> None:
        if txn is None:
            return
        if request.to.tag is not None:
            self._on_reinvite(txn, request, now)
            return
        carriers = self.trunks.carriers_at(flow)
        if carriers:
            self._inbound(txn, request, flow, carriers, now)
            return
        caller_uri = request.from_.uri
        if not isinstance(caller_uri, SipUri) or not caller_uri.user:
            self.stack.respond(txn, make_response(request, 403, "Unknown caller", to_tag=txn.to_tag))
            return
        agent = self.stack.authenticate(txn, request, flow, now, domain=caller_uri.host.lower())
        if agent is None:
            return  # challenged or refused: nothing reaches a carrier unauthenticated
        dialed_uri = request.uri
        dialed = dialed_uri.user if isinstance(dialed_uri, SipUri) and dialed_uri.user else ""
        decision = route(
            dialed, agent, self.directory.agents(), self.trunks.active(), self._counts(), self._policy
        )
        call_id = uuid.uuid4().hex
        bind_call(tenant_id=agent.tenant_id, call_id=call_id)
        if isinstance(decision, Refused):
            log.info("call refused by the dial plan", rule=decision.rule, reason=decision.reason)
            self.stack.respond(
                txn, make_response(request, decision.sip_status, decision.reason[:120], to_tag=txn.to_tag)
            )
            self._refused(
                call_id, agent.tenant_id, agent.extension, dialed, decision, agent_id=agent.agent_id
            )
            return
        webrtc = _webrtc(flow)
        if isinstance(decision, ToAgent):
            caller = Caller(
                invite=request,
                address=self._address(flow),
                webrtc=webrtc,
                party=Party.AGENT,
                number=agent.extension,
                display_name=agent.display_name,
                agent_id=agent.agent_id,
            )
            target = decision.agent
            self._ring(
                call_id,
                agent.tenant_id,
                caller,
                Direction.INTERNAL,
                target.extension,
                [target],
                flow,
                txn,
                now,
            )
            return
        if isinstance(decision, ToService) and decision.line is ServiceLine.ECHO:
            echo = EchoCall(
                call_id=call_id,
                tenant_id=agent.tenant_id,
                agent_id=agent.agent_id,
                agent_extension=agent.extension,
                agent_invite=request,
                agent_address=self._address(flow),
                webrtc_agent=webrtc,
                line=dialed,
            )
            self._begin(_Leg(echo, flow, txn), now)
            return
        if isinstance(decision, ToService) and decision.line is ServiceLine.DEMO:
            demo = DemoCall(
                call_id=call_id,
                tenant_id=agent.tenant_id,
                agent_id=agent.agent_id,
                agent_extension=agent.extension,
                agent_invite=request,
                agent_address=self._address(flow),
                webrtc_agent=webrtc,
                line=dialed,
            )
            self._begin(_Leg(demo, flow, txn), now)
            return
        if not isinstance(decision, ToTrunk):
            self.stack.respond(txn, make_response(request, 480, "Not available yet", to_tag=txn.to_tag))
            return
        trunk = decision.trunk
        call = OutboundCall(
            call_id=call_id,
            tenant_id=agent.tenant_id,
            agent_id=agent.agent_id,
            agent_extension=agent.extension,
            customer_number=decision.number,
            agent_invite=request,
            agent_address=self._address(flow),
            carrier_address=self._address_for(
                trunk.transport.value, self.trunks.contact_host(trunk.sip_server)
            ),
            target=CarrierTarget(
                trunk_id=trunk.trunk_id,
                domain=trunk.domain or trunk.sip_server,
                caller_id=trunk.username or (trunk.dids[0].lstrip("+") if trunk.dids else "echodesk"),
                credentials=self.trunks.credentials(trunk),
                session_expires_s=max(MIN_SE_S, self.settings.session_expires_s)
                if self.settings.session_expires_s
                else None,
            ),
            webrtc_agent=webrtc,
            record=self.tenants.records_calls(agent.tenant_id, self.settings.record_calls),
        )
        self._begin(_Leg(call, flow, txn, asyncio.ensure_future(self._connect_carrier(trunk))), now)

    def _inbound(
        self, txn: ServerTransaction, request: Request, flow: Flow, carriers: list[TrunkRecord], now: float
    ) -> None:
        """A carrier's INVITE: which of our numbers it calls, then ring that number's agents."""
        called = called_number(request, carriers)
        if called is None:
            log.info("inbound call for a number no trunk serves", source=str(flow), uri=str(request.uri))
            self.stack.respond(txn, make_response(request, 404, "Number not served here", to_tag=txn.to_tag))
            return
        trunk, did = called
        call_id = uuid.uuid4().hex
        bind_call(tenant_id=trunk.tenant_id, call_id=call_id)
        counts = self._counts()
        if counts.by_trunk.get(trunk.trunk_id, 0) >= trunk.max_concurrent_calls:
            why = Refused(
                "trunk_limit",
                486,
                f"trunk {trunk.name} is at its limit of {trunk.max_concurrent_calls} calls",
            )
            self.stack.respond(txn, make_response(request, 486, "Busy Here", to_tag=txn.to_tag))
            self._refused(
                call_id,
                trunk.tenant_id,
                caller_number(request, trunk),
                did,
                why,
                direction=Direction.INBOUND,
                trunk_id=trunk.trunk_id,
            )
            return
        agents = [
            a
            for a in self.directory.agents()
            if a.tenant_id == trunk.tenant_id
            and a.enabled
            and (trunk.ring_group is None or trunk.ring_group in a.ring_groups)
        ]
        caller = Caller(
            invite=request,
            address=self._address_for(flow.transport.value, self.trunks.contact_host(trunk.sip_server)),
            webrtc=False,
            party=Party.CUSTOMER,
            number=caller_number(request, trunk),
            display_name=request.from_.display_name or None,
            trunk_id=trunk.trunk_id,
        )
        self._ring(call_id, trunk.tenant_id, caller, Direction.INBOUND, did, agents, flow, txn, now)

    def _ring(
        self,
        call_id: str,
        tenant_id: str,
        caller: Caller,
        direction: Direction,
        dialed: str,
        agents: list[AgentRecord],
        flow: Flow,
        txn: ServerTransaction,
        now: float,
    ) -> None:
        """Ring every registered contact of ``agents`` that has room for another call."""
        invite = caller.invite
        session = uas_session(invite.headers.get("Session-Expires"), supported_tags(invite))
        if isinstance(session, TooBrief):
            # RFC 4028 9: the caller asks again with at least our minimum.
            self._respond(txn, invite, 422, "Session Interval Too Small", (("Min-SE", str(session.min_se)),))
            return
        counts = self._counts()
        targets: list[RingTarget] = []
        flows: list[Flow] = []
        for agent in agents:
            if counts.by_agent.get(agent.agent_id, 0) >= agent.max_concurrent_calls:
                continue
            for binding in self.stack.bindings_of(agent, now):
                targets.append(self._ring_target(agent, str(binding.contact.uri), binding.flow))
                flows.append(binding.flow)
        call = RingCall(
            call_id=call_id,
            tenant_id=tenant_id,
            caller=caller,
            direction=direction,
            dialed=dialed,
            targets=tuple(targets),
            ring_timeout_s=self.settings.ring_timeout_s,
            record=self.tenants.records_calls(tenant_id, self.settings.record_calls),
            caller_session=session,
            caller_supports_timer="timer" in supported_tags(invite),
        )
        self._begin(_Leg(call, flow, txn, branch_flows=flows), now)

    def _ring_target(self, agent: AgentRecord, contact: str, flow: Flow) -> RingTarget:
        return RingTarget(
            agent_id=agent.agent_id,
            extension=agent.extension,
            domain=agent.domain,
            contact=contact,
            address=self._address(flow),
            webrtc=_webrtc(flow),
        )

    def _begin(self, leg: _Leg, now: float) -> None:
        call = leg.call
        call.source = self.node
        self._calls[call.call_id] = leg
        self._by_invite[id(leg.caller_txn)] = call.call_id
        self._index(leg, (call.caller_call_id, call.caller_tag))
        self._execute(leg, call.start(now))

    async def _connect_carrier(self, trunk: TrunkRecord) -> Flow | None:
        try:
            return await self.trunks.flow_to(trunk)
        except (TransportUnavailable, OSError) as exc:
            log.warning("carrier unreachable", trunk=trunk.trunk_id, error=str(exc))
            return None

    def _in_dialog(self, txn: ServerTransaction, request: Request) -> tuple[_Leg, Side] | None:
        """The call and the end an in-dialog request came from, or None once answered (481, or 491
        while the call is not connected yet: RFC 3261 14.2)."""
        call_id = self._by_dialog.get((request.call_id, request.to.tag or ""))
        leg = self._calls.get(call_id or "")
        if leg is None:
            self.stack.respond(txn, make_response(request, 481, "Call/Transaction Does Not Exist"))
            return None
        side = leg.call.side(from_caller=request.call_id == leg.call.caller_call_id)
        if side is None:
            self.stack.respond(txn, make_response(request, 491, "Request Pending"))
            return None
        if side.dialog.call_id != request.call_id:
            # A leg the call no longer has (its agent transferred the call and got our BYE).
            self.stack.respond(txn, make_response(request, 481, "Call/Transaction Does Not Exist"))
            return None
        try:
            side.dialog.accept_request(request)
        except DialogError as exc:
            # RFC 3261 12.2.2: a CSeq lower than the last one is answered 500.
            self.stack.respond(txn, make_response(request, 500, f"Out of order: {exc}"[:120]))
            return None
        if self.store is not None:
            self.store.changed(leg.call.call_id)  # the remote CSeq, maybe the remote target
        return leg, side

    def _on_reinvite(self, txn: ServerTransaction, request: Request, now: float) -> None:
        """A re-INVITE on a connected call: hold, resume, a session refresh, a codec change
        (RFC 3261 14.2, RFC 3264 8). Its offer goes to that side's media leg; what the worker
        refuses gets a 488 and changes nothing, so the call keeps its audio."""
        found = self._in_dialog(txn, request)
        if found is None:
            return
        leg, side = found
        if not request.body:
            # A re-INVITE without an offer asks us to offer (RFC 3264 8): not supported yet.
            self.stack.respond(txn, make_response(request, 488, "A re-INVITE needs an SDP offer"))
            return
        self._spawn(self._reoffer(leg, side, txn, request))

    async def _reoffer(self, leg: _Leg, side: Side, txn: ServerTransaction, request: Request) -> None:
        session = leg.sessions.get(side.media_key)
        offer = request.body.decode("utf-8", "replace")
        if session is None:
            self._respond(txn, request, 500, "No media session")
            return
        try:
            local = await self.media.describe(
                *session, RemoteDescription(leg=side.media_leg, sdp=offer, type="offer")
            )
        except RemoteError as exc:
            status = {"bad_sdp": 488, "no_common_codec": 488, "glare": 491}.get(exc.code, 500)
            reason = "Not Acceptable Here" if status == 488 else None
            # RFC 3261 20.43: the Warning says why, for the other side's logs.
            warning = ("Warning", f'399 echodesk "{exc.message[:100].replace(chr(34), chr(39))}"')
            self._respond(txn, request, status, reason, (warning,))
            return
        except BusError as exc:
            log.warning("media update failed", error=str(exc))
            self._respond(txn, request, 500, "Media unavailable")
            return
        body = (local.sdp or "").encode()
        headers = [("Contact", side.contact)] + ([("Content-Type", "application/sdp")] if body else [])
        self._respond(txn, request, 200, None, (*headers, *self._session_headers(leg, request)), body)
        from_caller, now = request.call_id == leg.call.caller_call_id, _now()
        self._execute(leg, leg.call.hold_changed(side.party, _holds(offer), now))
        self._execute(leg, leg.call.session_refreshed(from_caller, now))

    def _on_update(self, txn: ServerTransaction | None, request: Request, flow: Flow, now: float) -> None:
        """UPDATE (RFC 3311): with an offer like a re-INVITE; without one, carriers' session refresh
        (RFC 4028 7.4), answered at once."""
        if txn is None:
            return
        found = self._in_dialog(txn, request)
        if found is None:
            return
        leg, side = found
        if request.body:
            self._spawn(self._reoffer(leg, side, txn, request))
            return
        headers = (("Contact", side.contact), *self._session_headers(leg, request))
        self._respond(txn, request, 200, None, headers)
        from_caller = request.call_id == leg.call.caller_call_id
        self._execute(leg, leg.call.session_refreshed(from_caller, now))

    @staticmethod
    def _session_headers(leg: _Leg, request: Request) -> tuple[tuple[str, str], ...]:
        """Session-Expires (and Require: timer) in our 2xx to a refresh that asked for one (RFC 4028 9)."""
        if request.headers.get("Session-Expires") is None:
            return ()
        value = leg.call.session_header(from_caller=request.call_id == leg.call.caller_call_id)
        return (("Session-Expires", value), ("Require", "timer")) if value else ()

    def _on_info(self, txn: ServerTransaction | None, request: Request, flow: Flow, now: float) -> None:
        """SIP INFO DTMF (SIP.js sends it by default: PEERS.md), played to the other end as RFC 4733."""
        if txn is None:
            return
        found = self._in_dialog(txn, request)
        if found is None:
            return
        leg, side = found
        try:
            digit, duration = dtmf_from_info(request.content_type, request.body)
        except ValueError as exc:
            self.stack.respond(
                txn, make_response(request, 415 if "type" in str(exc) else 400, str(exc)[:120])
            )
            return
        self.stack.respond(txn, make_response(request, 200))
        session = leg.sessions.get(side.media_key)
        if session is not None and side.other_leg is not None:
            self._spawn(
                self._play_digit(session, SendDtmf(leg=side.other_leg, digit=digit, duration_ms=duration))
            )
        self._execute(leg, leg.call.dtmf(side.media_leg, digit, duration, "sip-info"))

    def _on_refer(self, txn: ServerTransaction | None, request: Request, flow: Flow, now: float) -> None:
        """A blind transfer (RFC 3515): the agent on a call names a colleague's extension. Answered 202
        and carried out by the call (b2bua/ringing.py), which reports by NOTIFY; refused at once with
        a 4xx and its reason when it cannot be (outside a call, a bad Refer-To, one already running)."""
        if txn is None:
            return
        if request.to.tag is None:
            # RFC 3515 allows REFER outside a dialog; a helpdesk gateway transfers only calls.
            self._respond(txn, request, 403, "REFER is accepted only within a call")
            return
        found = self._in_dialog(txn, request)
        if found is None:
            return
        leg, _side = found
        call = leg.call
        refusal = call.transfer_refusal(from_caller=request.call_id == call.caller_call_id)
        if refusal is None and leg.refer_pending:
            refusal = (491, "A transfer of this call is already in progress")
        if refusal is not None:
            self._respond(txn, request, *refusal)
            return
        try:
            target = refer_target(request)
        except ReferError as exc:
            self._respond(txn, request, exc.status, exc.reason)
            return
        assert isinstance(call, RingCall)
        plan = self._plan_transfer(call, target.dialed, now)
        if plan is None:
            self._respond(txn, request, 403, "The transferring agent is no longer configured")
            return
        self._respond(txn, request, 202, "Accepted")
        self._carry_out(leg, call, request, target.dialed, plan, now, Party.AGENT)

    def _plan_transfer(self, call: RingCall, dialed: str, now: float) -> _TransferPlan | None:
        """Where a transfer of ``call`` to ``dialed`` goes: routed as the transferring agent's own call
        would be (toll-fraud rules, limits, trunk choice), with this call's slot counted as free (it
        moves, it does not add a call). None: that agent is no longer configured."""
        assert call.winner is not None
        transferor = next(
            (a for a in self.directory.agents() if a.agent_id == call.winner.target.agent_id), None
        )
        if transferor is None:
            return None
        decision = route(
            dialed,
            transferor,
            self.directory.agents(),
            self.trunks.active(),
            self._counts(without=call.call_id),
            self._policy,
        )
        log.info("transfer asked", target=dialed, by=transferor.agent_id, route=type(decision).__name__)
        if isinstance(decision, Refused):
            return _TransferPlan(refusal=(decision.sip_status, decision.reason))
        if isinstance(decision, ToService):
            return _TransferPlan(refusal=(403, f"{dialed} is a service line: it cannot take a transfer"))
        if isinstance(decision, ToTrunk):
            return _TransferPlan(out=decision)
        agent = decision.agent
        if self._counts().by_agent.get(agent.agent_id, 0) >= agent.max_concurrent_calls:
            return _TransferPlan(
                refusal=(486, f"extension {agent.extension} is busy"), to_agent=agent.agent_id
            )
        plan = _TransferPlan(to_agent=agent.agent_id)
        for binding in self.stack.bindings_of(agent, now):
            plan.targets.append(self._ring_target(agent, str(binding.contact.uri), binding.flow))
            plan.flows.append(binding.flow)
        if not plan.targets:
            plan.refusal = (480, f"nobody is registered at extension {agent.extension}")
        return plan

    def _carry_out(
        self,
        leg: _Leg,
        call: RingCall,
        refer: Request | None,
        dialed: str,
        plan: _TransferPlan,
        now: float,
        asked_by: Party,
    ) -> None:
        if plan.out is not None:
            leg.refer_pending = True
            self._spawn(self._transfer_out(leg, call, refer, dialed, plan.out, asked_by))
            return
        leg.branch_flows.extend(plan.flows)
        commands = call.start_transfer(
            refer,
            dialed,
            tuple(plan.targets),
            now,
            to_agent_id=plan.to_agent,
            refusal=plan.refusal,
            asked_by=asked_by,
        )
        self._execute(leg, commands)

    async def _transfer_out(
        self,
        leg: _Leg,
        call: RingCall,
        refer: Request | None,
        dialed: str,
        decision: ToTrunk,
        asked_by: Party,
    ) -> None:
        """A transfer to a number: called through the trunk the dial plan chose, as the agent's own
        call to it would be (its caller id and credentials)."""
        trunk = decision.trunk
        flow = await self._connect_carrier(trunk)
        leg.refer_pending = False
        if self._calls.get(call.call_id) is not leg or call.transfer_refusal(from_caller=False) is not None:
            return  # the call ended (or changed hands) while the trunk's flow was being opened
        if flow is None:
            refusal = (503, "The carrier is unreachable")
            self._execute(
                leg, call.start_transfer(refer, dialed, (), _now(), refusal=refusal, asked_by=asked_by)
            )
            return
        domain = trunk.domain or trunk.sip_server
        target = RingTarget(
            agent_id=None,
            extension=decision.number,
            domain=domain,
            contact=f"sip:{decision.number}@{domain}",
            address=self._address_for(trunk.transport.value, self.trunks.contact_host(trunk.sip_server)),
            webrtc=False,
            trunk_id=trunk.trunk_id,
            caller_id=trunk.username or (trunk.dids[0].lstrip("+") if trunk.dids else "echodesk"),
            credentials=self.trunks.credentials(trunk),
        )
        leg.branch_flows.append(flow)
        self._execute(leg, call.start_transfer(refer, decision.number, (target,), _now(), asked_by=asked_by))

    def _transfer_command(self, leg: _Leg, request: TransferCall) -> CommandAccepted:
        """The api's blind transfer: what a REFER from the answering agent does, without NOTIFYs;
        what the dial plan refuses (or nobody there to ring) is refused at once."""
        call = leg.call
        refusal = call.transfer_refusal(from_caller=False)
        if refusal is None and leg.refer_pending:
            refusal = (491, "A transfer of this call is already in progress")
        if refusal is not None:
            raise Rejected("not_allowed", refusal[1])
        assert isinstance(call, RingCall)
        now = _now()
        plan = self._plan_transfer(call, request.target, now)
        if plan is None:
            raise Rejected("not_allowed", "the agent on the call is no longer configured")
        if plan.refusal is not None:
            status, reason = plan.refusal
            raise Rejected(
                "not_allowed", f"the transfer to {request.target} was refused ({status}): {reason}"
            )
        self._carry_out(leg, call, None, request.target, plan, now, Party.API)
        return CommandAccepted(call_id=call.call_id, status=CallStatus.IN_PROGRESS)

    async def _play_digit(self, session: tuple[str, str], digit: SendDtmf) -> None:
        try:
            await self.media.dtmf(*session, digit)
        except BusError as exc:
            log.warning("DTMF not played", error=str(exc))

    def _respond(
        self,
        txn: ServerTransaction,
        request: Request,
        status: int,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> None:
        try:
            self.stack.respond(txn, make_response(request, status, reason, headers=headers, body=body))
        except TransactionStateError:
            log.info("request already answered", method=request.method, status=status)

    def _on_bye(self, txn: ServerTransaction | None, request: Request, flow: Flow, now: float) -> None:
        if txn is None:
            return
        our_tag = request.to.tag or ""
        call_id = self._by_dialog.get((request.call_id, our_tag))
        leg = self._calls.get(call_id or "")
        self.stack.respond(
            txn,
            make_response(request, 200 if leg else 481, None if leg else "Call/Transaction Does Not Exist"),
        )
        if leg is None:
            return
        from_caller = request.call_id == leg.call.caller_call_id
        side = leg.call.side(from_caller)
        if side is not None and side.dialog.call_id != request.call_id:
            return  # our BYE to a transferred agent crossed theirs: that leg is already gone
        self._execute(leg, leg.call.bye(from_caller=from_caller, now=now))

    def _on_cancel(self, txn: ServerTransaction | None, request: Request, flow: Flow, now: float) -> None:
        if txn is None:
            return
        invite_txn = self.stack.transactions.find_invite(request)
        call_id = self._by_invite.get(id(invite_txn)) if invite_txn is not None else None
        leg = self._calls.get(call_id or "")
        if leg is None:
            self.stack.respond(txn, make_response(request, 481, "Call/Transaction Does Not Exist"))
            return
        # RFC 3261 9.2: the CANCEL gets its own 200; the INVITE gets 487 from the call.
        self.stack.respond(txn, make_response(request, 200))
        self._execute(leg, leg.call.caller_cancelled(now))

    def _on_ack(self, txn: ServerTransaction | None, request: Request, flow: Flow, now: float) -> None:
        return None  # the ACK for our 2xx to the caller: the call is already connected

    def _on_stray_response(self, response: Response, flow: Flow, now: float) -> None:
        if self._abandoned and response.call_id in self._abandoned:
            self._abandoned_answer(response, now)
            return
        for leg in self._calls.values():
            if leg.call.owns_response(response):
                self._execute(leg, leg.call.stray_response(response, now))
                return

    def _on_flow_closed(self, flow: Flow, gone: list[Binding]) -> None:
        """A connection closed. A connected call whose agent it carried waits for the agent to
        register again (its audio does not use the connection); other calls whose caller it carried
        end on both legs, and an agent rung over it stops being rung."""
        now = _now()
        agent = next((binding for binding in gone if binding.instance is not None), None)
        for leg in list(self._calls.values()):
            call = leg.call
            slot = _slot_of(leg, flow)
            if slot is _NOT_ON_IT:
                continue
            if agent is not None and self._agent_end(leg, slot):
                away = self.reconnections.lost(call.call_id, slot, agent.aor, agent.instance, now)
                if away is not None:
                    log.info("agent connection lost, waiting", call=call.call_id, grace_s=away.deadline - now)
                    self._arm_reconnections()
                    continue
            if slot is None:
                if call.phase is Phase.CONNECTED:
                    self._execute(leg, call.hang_up(EndCause.AGENT_CONNECTION_LOST, now))
                else:
                    self._execute(leg, call.caller_cancelled(now))
            elif isinstance(call, RingCall):
                self._execute(leg, call.branch_failed(slot, timed_out=False, now=now))

    @staticmethod
    def _agent_end(leg: _Leg, slot: Slot) -> bool:
        """Whether this flow of a connected call is its agent's end: the caller (an agent's own
        call: a carrier never registers) or the branch that answered."""
        call = leg.call
        if call.phase is not Phase.CONNECTED:
            return False
        if slot is None:
            return True
        if isinstance(call, BridgedCall):
            return slot == CALLEE and call.callee is not None and call.callee.party is Party.AGENT
        return isinstance(call, RingCall) and call.winner is not None and call.winner.index == slot

    def _on_binding_added(self, binding: Binding, replaced: Binding | None) -> None:
        """An agent registered: the calls it left behind on a dropped connection (or on the one its
        new registration replaces) are reached over the new flow from now on (RFC 5626 4.1)."""
        if binding.instance is not None:
            now = _now()
            for request, until in self._undelivered.pop((binding.aor, binding.instance), []):
                if until > now:
                    self.stack.send_request(request, binding.flow, _ignore)
        moves: list[tuple[_Leg, Slot]] = []
        for away in self.reconnections.returned(binding.aor, binding.instance):
            leg = self._calls.get(away.call_id)
            if leg is not None:
                moves.append((leg, away.slot))
        if replaced is not None:
            for leg in self._calls.values():
                slot = _slot_of(leg, replaced.flow)
                if slot is not _NOT_ON_IT and self._agent_end(leg, slot):
                    moves.append((leg, slot))
        for leg, slot in moves:
            if slot is None:
                leg.caller_flow = binding.flow
            else:
                leg.branch_flows[slot] = binding.flow
            log.info("agent reconnected", call=leg.call.call_id, flow=str(binding.flow))
            if self.store is not None:
                self.store.changed(leg.call.call_id)

    def _arm_reconnections(self) -> None:
        if self._reconnect_timer is not None:
            self._reconnect_timer.cancel()
            self._reconnect_timer = None
        deadline = self.reconnections.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - _now())
            self._reconnect_timer = asyncio.get_running_loop().call_later(delay, self._reconnections_due)

    def _reconnections_due(self) -> None:
        self._reconnect_timer = None
        now = _now()
        for away in self.reconnections.due(now):
            leg = self._calls.get(away.call_id)
            if leg is None:
                continue
            log.info("agent did not come back", call=away.call_id)
            commands = leg.call.hang_up(EndCause.AGENT_CONNECTION_LOST, now)
            to_agent = [c for c in commands if _to_slot(c, away.slot)]
            self._execute(leg, [c for c in commands if not _to_slot(c, away.slot)])
            # The agent's BYE has no connection to go on: it waits for the agent's next
            # registration, as long as a registration would have lasted.
            until = now + self.settings.sip_max_expires
            waiting = self._undelivered.setdefault((away.aor, away.instance), [])
            waiting += [(c.request, until) for c in to_agent if isinstance(c, SendToCaller | SendToBranch)]
        for key, waiting in list(self._undelivered.items()):
            waiting[:] = [(request, until) for request, until in waiting if until > now]
            if not waiting:
                del self._undelivered[key]
        self._arm_reconnections()

    # --- surviving a restart (b2bua/snapshot.py, b2bua/call_store.py) ----------------------------

    def snapshot(self, call_id: str) -> bytes | None:
        """The call's snapshot for KV ``calls`` as it stands now; None once it ended."""
        leg = self._calls.get(call_id)
        if leg is None:
            return None
        call = leg.call
        carrier = None
        if leg.carrier is not None and leg.carrier.done() and not leg.carrier.cancelled():
            flow = leg.carrier.result() if leg.carrier.exception() is None else None
            carrier = self._flow_ref(leg, flow, None) if flow is not None else None
        callee_flow: Flow | None = None
        callee_agent: str | None = None
        if isinstance(call, RingCall) and call.winner is not None:
            callee_flow = leg.branch_flows[call.winner.index]
            callee_agent = call.winner.target.agent_id
        elif isinstance(call, BridgedCall) and call.callee is not None:
            callee_flow = leg.branch_flows[CALLEE]
            callee_agent = call.callee.agent_id
        caller_agent = call.agent_id if isinstance(call, AgentCall) else None
        if isinstance(call, RingCall | BridgedCall):
            caller_agent = call.caller.agent_id
        flows = Flows(
            caller=self._flow_ref(leg, leg.caller_flow, caller_agent),
            callee=self._flow_ref(leg, callee_flow, callee_agent) if callee_flow is not None else None,
            branches=tuple(self._flow_ref(leg, f, None) for f in leg.branch_flows)
            if isinstance(call, RingCall) and call.phase is not Phase.CONNECTED
            else (),
            carrier=carrier,
        )
        snapshot = capture(call, flows, leg.sessions, time.time() - _now())
        return snapshot.model_dump_json(exclude_defaults=True).encode() if snapshot is not None else None

    def _flow_ref(self, leg: _Leg, flow: Flow, agent_id: str | None) -> FlowRef:
        known = leg.refs.get(flow)
        if known is not None:
            return known
        aor = instance = None
        if flow.reliable and agent_id is not None:
            # An agent on a connection is reached again when it registers again (RFC 5626 4.1).
            agent = next(
                (
                    a
                    for a in self.directory.agents()
                    if a.agent_id == agent_id and a.tenant_id == leg.call.tenant_id
                ),
                None,
            )
            if agent is not None:
                aor = aor_of(agent)
                binding = next((b for b in self.stack.bindings_of(agent, _now()) if b.flow == flow), None)
                instance = binding.instance if binding is not None else None
        ref = FlowRef(
            transport=flow.transport.value,
            host=flow.remote[0],
            port=flow.remote[1],
            aor=aor,
            instance=instance,
        )
        leg.refs[flow] = ref
        return ref

    async def resume(self, found: dict[str, bytes]) -> list[str]:
        """Take over the calls a previous incarnation of this instance left (KV ``calls``): connected
        calls carry on, calls being set up end on every leg we can reach. Returns the media sessions
        kept (the others of the previous incarnation are released by their workers)."""
        now = _now()
        offset = time.time() - now
        kept: list[str] = []
        restored = ended = 0
        for call_id, data in found.items():
            if self.store is not None:
                self.store.inherited(call_id)
            try:
                snapshot = CallSnapshot.model_validate_json(data)
            except ValueError as exc:
                log.error("call snapshot unreadable: dropped", call=call_id, error=str(exc)[:200])
                if self.store is not None:
                    self.store.changed(call_id)
                continue
            bind_call(tenant_id=snapshot.tenant_id, call_id=snapshot.call_id)
            if snapshot.connected and snapshot.caller is not None:
                session = await self._restore(snapshot, now, offset)
                if session is not None:
                    kept.append(session)
                    restored += 1
                else:
                    ended += 1
                continue
            await self._abandon(snapshot, now + offset)
            ended += 1
            if self.store is not None:
                self.store.changed(call_id)
        unbind_contextvars("tenant_id", "call_id")
        log.info("calls taken over", restored=restored, ended=ended)
        return kept

    async def _restore(self, snapshot: CallSnapshot, now: float, offset: float) -> str | None:
        """One connected call back on its dialogs; the media session it keeps (None: the call could
        not go on and was ended on both legs)."""
        taken = restore(snapshot, now=now, wall_offset=offset, source=self.node)
        call = taken.call
        caller_flow, caller_away = await self._reach(taken.caller_flow, snapshot.trunk_id)
        callee_flows: list[Flow] = []
        callee_away = False
        if call.callee is not None:
            callee_flow, callee_away = await self._reach(taken.callee_flow, snapshot.trunk_id)
            callee_flows.append(callee_flow)
        sessions = {call.media_key: taken.session} if taken.session is not None else {}
        leg = _Leg(call, caller_flow, None, branch_flows=callee_flows, sessions=sessions)
        self._calls[call.call_id] = leg
        self._index(leg, (call.caller.dialog.call_id, call.caller.dialog.local_tag))
        if call.callee is not None:
            self._index(leg, (call.callee.dialog.call_id, call.callee.dialog.local_tag))
        if taken.session is None:
            # Nothing bridges the two ends any more: both get BYE.
            log.warning("restored call has no media session", call=call.call_id)
            self._execute(leg, call.hang_up(EndCause.MEDIA_FAILURE, now))
            return None
        self.workers.alive(taken.session[0], now)
        if self.store is not None:
            # Written again at once: it reserves the next block of event numbers for this run.
            leg.sequence_block = call._sequence // SEQUENCE_BLOCK
            self.store.changed(call.call_id)
        self._execute(leg, call.start(now))
        for slot, ref, away in (
            (None, taken.caller_flow, caller_away),
            (CALLEE, taken.callee_flow, callee_away),
        ):
            if not away or ref is None:
                continue
            # The agent may have registered again already (its softphone reconnects while this
            # instance loads its trunks): its new flow is the end's.
            back = next(
                (
                    b
                    for b in self.stack.registrar.bindings(ref.aor or "", now)
                    if ref.instance is not None and b.instance == ref.instance
                ),
                None,
            )
            if back is not None:
                if slot is None:
                    leg.caller_flow = back.flow
                else:
                    leg.branch_flows[slot] = back.flow
                continue
            # A browser's WebSocket died with the process: it waits to be registered again.
            waiting = self.reconnections.lost(call.call_id, slot, ref.aor or "", ref.instance, now)
            if waiting is None:
                log.info("restored call has an end that cannot come back", call=call.call_id)
                self._execute(leg, call.hang_up(EndCause.AGENT_CONNECTION_LOST, now))
                return taken.session[1]
            self._arm_reconnections()
        return taken.session[1]

    async def _reach(self, ref: FlowRef | None, trunk_id: str | None = None) -> tuple[Flow, bool]:
        """A flow to an end of a restored call, and whether the end is away until it registers again.
        UDP needs only the address; a carrier on TCP/TLS gets a new connection to its trunk's address
        (the one it called us from had a port of its own); an agent on a connection (a browser's
        WebSocket) must come back itself."""
        if ref is None:
            return Flow(TransportKind.UDP, ("0.0.0.0", 0), ("0.0.0.0", 0), connection_id=-1), True
        kind = TransportKind(ref.transport)
        remote = (ref.host, ref.port)
        carrier = ref.aor is None and kind in (TransportKind.TCP, TransportKind.TLS)
        trunk = next((t for t in self.trunks.active() if t.trunk_id == trunk_id), None) if carrier else None
        if trunk is not None:
            try:
                return await self.trunks.flow_to(trunk), False
            except (TransportUnavailable, OSError) as exc:
                log.warning("carrier of a restored call unreachable", trunk=trunk.trunk_id, error=str(exc))
        if kind is TransportKind.UDP or carrier:
            try:
                return await self.stack.transport.connect(kind, ref.host, ref.port), False
            except TransportUnavailable as exc:
                log.warning(
                    "end of a restored call unreachable",
                    flow=f"{kind.value}:{ref.host}:{ref.port}",
                    error=str(exc),
                )
        return Flow(kind, remote, ("0.0.0.0", 0), connection_id=-1), True

    async def _abandon(self, snapshot: CallSnapshot, now_epoch: float) -> None:
        """A call the previous incarnation was setting up: 487 to the caller, CANCEL to the callees,
        its final event (RFC 3261 9.1, 15)."""
        ending = abandon(snapshot, now_epoch=now_epoch, source=self.node)
        deadline = _now() + 32.0  # 64*T1: as long as a final response is retransmitted (17.2.1)
        if ending.answer is not None:
            response, ref = ending.answer
            flow, away = await self._reach(ref)
            if not away:
                try:
                    self.stack.transport.send(flow, response.encode())
                except TransportUnavailable as exc:
                    log.info("487 not sent", error=str(exc))
        for cancel, invite, ref in ending.cancels:
            flow, away = await self._reach(ref)
            if away:
                continue
            self._abandoned[invite.call_id] = (invite, flow, deadline)
            self.stack.send_request(cancel, flow, _ignore)
        log.info(
            "call being set up ended by the restart", call=snapshot.call_id, cancelled=len(ending.cancels)
        )
        self.publish(ending.ended)

    def _abandoned_answer(self, response: Response, now: float) -> None:
        """A final answer to an INVITE cancelled at start: ACK it (a 2xx that crossed the CANCEL
        is also ended with BYE, RFC 3261 15)."""
        invite, flow, deadline = self._abandoned[response.call_id]
        if now > deadline:
            del self._abandoned[response.call_id]
            return
        if response.cseq.method != "INVITE" or response.status_code < 200:
            return
        if response.status_code >= 300:
            self.stack.send_ack(ack_for(invite, response), flow)
            return
        try:
            dialog = Dialog.as_uac(invite, response, "")
        except (DialogError, ValueError) as exc:
            log.info("2xx to a cancelled INVITE not understood", error=str(exc))
            return
        via = invite.via
        sent_by = f"{via.host}:{via.port}" if via.port else via.host
        self.stack.send_ack(dialog.ack(via_host=sent_by, transport=flow.transport.value), flow)
        self.stack.send_request(
            dialog.request("BYE", via_host=sent_by, transport=flow.transport.value), flow, _ignore
        )

    # --- the media workers ------------------------------------------------------------------

    def media_event(self, event: MediaEvent) -> None:
        """What a worker reports about one of our calls' sessions (other instances' calls are theirs)."""
        leg = self._calls.get(event.call_id)
        if leg is None or (event.worker_id, event.session_id) not in leg.sessions.values():
            return
        call, now = leg.call, _now()
        if event.kind is MediaEventKind.MEDIA_TIMEOUT:
            log.info("media timeout", leg=event.leg, detail=event.detail)
            self._execute(leg, call.hang_up(EndCause.MEDIA_TIMEOUT, now))
        elif event.kind is MediaEventKind.CLOSED:
            # The worker ended a session we still use (it is stopping, or it failed).
            log.warning("media session closed under a live call", detail=event.detail)
            self._execute(leg, call.hang_up(EndCause.MEDIA_FAILURE, now))
        elif event.kind is MediaEventKind.DTMF and event.leg is not None and event.digit is not None:
            self._execute(leg, call.dtmf(event.leg, event.digit, event.duration_ms or 0, "rfc4733"))
        elif event.kind is MediaEventKind.QUALITY and event.quality:
            self._execute(leg, call.quality(event.quality))

    def check_workers(self, now: float) -> None:
        """Calls on a worker that stopped heartbeating end on both legs (cause media_failure)."""
        for worker in self.workers.gone(now):
            legs = [leg for leg in self._calls.values() if any(w == worker for w, _ in leg.sessions.values())]
            if legs:
                log.error("media worker gone: ending its calls", worker=worker, calls=len(legs))
            for leg in legs:
                # Its sessions died with it: nothing to close.
                leg.sessions = {k: v for k, v in leg.sessions.items() if v[0] != worker}
                self._execute(leg, leg.call.hang_up(EndCause.MEDIA_FAILURE, now))

    # --- commands from the api (shared/commands.py) ---------------------------------------------

    async def command(self, verb: CommandVerb, request: CallCommand) -> CommandAccepted:
        """Carry out an api command on one of this instance's calls, or refuse it with a typed error."""
        leg = self._calls.get(request.call_id)
        if leg is None or leg.call.tenant_id != request.tenant_id:
            raise Rejected("call_not_found", f"no call {request.call_id} is in progress on this node")
        call, now = leg.call, _now()
        connected = call.phase is Phase.CONNECTED
        log.info("api command", verb=verb, call_id=call.call_id, by=request.requested_by)
        if isinstance(request, TransferCall):
            return self._transfer_command(leg, request)
        if verb == "hangup":
            cause = EndCause.NORMAL_CLEARING if connected else EndCause.CANCELED
            self._execute(leg, call.hang_up(cause, now, by=Party.API))
            return CommandAccepted(
                call_id=call.call_id, status=CallStatus.COMPLETED if connected else CallStatus.CANCELED
            )
        side = call.side(from_caller=True)
        if not connected or side is None:
            raise Rejected("not_allowed", f"the call is {call.phase.value}: only an answered call can {verb}")
        session = leg.sessions.get(side.media_key)
        if session is None:
            raise Rejected("media_unavailable", "the call has no media session")
        try:
            if verb in ("hold", "resume"):
                held = verb == "hold"
                if call.held_by(Party.API) == held:
                    raise Rejected(
                        "not_allowed", "the call is already on hold" if held else "the call is not on hold"
                    )
                # Both parties stop hearing each other: the gateway holds the call in the middle.
                for kind in (side.media_leg, side.other_leg):
                    if kind is not None:
                        await self.media.hold(*session, Hold(leg=kind, held=held))
                self._execute(leg, call.hold_changed(Party.API, held, _now()))
                status = CallStatus.HELD if held else CallStatus.IN_PROGRESS
                return CommandAccepted(call_id=call.call_id, status=status)
            if isinstance(request, ControlRecording):
                await self._control_recording(leg, session, request)
                return CommandAccepted(
                    call_id=call.call_id,
                    status=CallStatus.HELD if call.held_by(Party.API) else CallStatus.IN_PROGRESS,
                )
            assert isinstance(request, SendDigits)
            for digit in request.digits:
                await self.media.dtmf(
                    *session, SendDtmf(leg=request.leg, digit=digit, duration_ms=request.duration_ms)
                )
                self._execute(leg, call.dtmf(request.leg, digit, request.duration_ms, "api"))
        except RemoteError as exc:
            raise Rejected("media_unavailable", f"the media worker refused: {exc.message}") from None
        except BusError as exc:
            raise Rejected("media_unavailable", f"the media worker did not answer: {exc}") from None
        return CommandAccepted(
            call_id=call.call_id,
            status=CallStatus.HELD if call.held_by(Party.API) else CallStatus.IN_PROGRESS,
        )

    async def _control_recording(
        self, leg: _Leg, session: tuple[str, str], request: ControlRecording
    ) -> None:
        """Pause, resume or stop the recording: the worker stops forking audio (the recorder writes
        the span as silence and lists it), and the call's timeline says who did it."""
        call = leg.call
        if not call.record:
            raise Rejected("not_allowed", "the call is not recorded (the tenant's recording policy)")
        target = {
            "pause": RecordingState.PAUSED,
            "resume": RecordingState.RECORDING,
            "stop": RecordingState.STOPPED,
        }[request.action]
        current = call.recording_state
        if current is RecordingState.STOPPED:
            raise Rejected("not_allowed", "the call's recording was stopped and cannot be resumed")
        if current is target:
            raise Rejected("not_allowed", f"the call's recording is already {current.value}")
        paused = target is not RecordingState.RECORDING
        if paused != (current is RecordingState.PAUSED):
            await self.media.record(*session, RecordingControl(paused=paused))
        self._execute(leg, call.recording_changed(target, Party.API, request.requested_by))

    # --- commands -----------------------------------------------------------------------------

    def _execute(self, leg: _Leg, commands: list[Command]) -> None:
        call = leg.call
        for command in commands:
            if isinstance(command, AnswerCaller):
                if leg.caller_txn is None:
                    continue  # a call taken over: its INVITE was answered by the previous instance
                try:
                    self.stack.respond(leg.caller_txn, command.response)
                except TransactionStateError:
                    log.info("caller's INVITE already answered", status=command.response.status_code)
            elif isinstance(command, SendToCarrier):
                self._spawn(self._to_carrier(leg, command.request))
            elif isinstance(command, SendToBranch):
                self._to_branch(leg, command.branch, command.request)
            elif isinstance(command, SendToCaller):
                self._to_caller(leg, command.request)
            elif isinstance(command, StartMedia):
                self._spawn(self._start_media(leg, command.request, command.key))
            elif isinstance(command, DescribeMedia):
                self._spawn(self._describe_media(leg, command.description, command.key))
            elif isinstance(command, StopMedia):
                self._spawn(self._stop_media(leg, command.reason, command.key))
            elif isinstance(command, HandOverMedia):
                self._spawn(self._hand_over(leg, command.request, command.key))
            elif isinstance(command, StartTimer):
                self._start_timer(leg, command.name, command.at)
            elif isinstance(command, Publish):
                self.publish(command.event)
                if isinstance(command.event, CallEnded):
                    self._forget(call)
        if self.store is not None and commands and _changes_snapshot(leg, commands):
            self.store.changed(call.call_id)

    def _to_caller(self, leg: _Leg, request: Request) -> None:
        if request.method == "ACK":
            self.stack.send_ack(request, leg.caller_flow)
            return
        if request.method != "INVITE":
            self.stack.send_request(request, leg.caller_flow, _ignore)
            return

        def on_response(_txn: ClientTransaction, response: Response | None) -> None:
            self._execute(leg, leg.call.caller_response(response, _now()))

        self.stack.send_request(request, leg.caller_flow, on_response)

    async def _to_carrier(self, leg: _Leg, request: Request) -> None:
        call = leg.call
        assert isinstance(call, OutboundCall)
        # The first connection to the carrier may still be being made.
        flow = await leg.carrier if leg.carrier is not None else None
        now = _now()
        if flow is None:
            self._execute(leg, call.carrier_failed(timed_out=False, now=now))
            return
        if request.method == "ACK":
            self.stack.send_ack(request, flow)
            return
        if request.method == "BYE":
            self.stack.send_request(request, flow, _ignore)
            return

        def on_response(_txn: ClientTransaction, response: Response | None) -> None:
            moment = _now()
            if response is None:
                self._execute(leg, call.carrier_failed(timed_out=True, now=moment))
            else:
                self._execute(leg, call.carrier_response(response, moment))

        self.stack.send_request(request, flow, on_response)
        if request.method == "INVITE":
            self._index(leg, (request.call_id, request.from_.tag or ""))

    def _to_branch(self, leg: _Leg, index: int, request: Request) -> None:
        call = leg.call
        assert isinstance(call, RingCall | BridgedCall)
        flow = leg.branch_flows[index]
        if request.method == "ACK":
            self.stack.send_ack(request, flow)
            return
        if request.method != "INVITE":
            self.stack.send_request(request, flow, _ignore)
            return

        def on_response(_txn: ClientTransaction, response: Response | None) -> None:
            moment = _now()
            if response is None:
                self._execute(leg, call.branch_failed(index, timed_out=True, now=moment))
            else:
                self._execute(leg, call.branch_response(index, response, moment))

        self._index(leg, (request.call_id, request.from_.tag or ""))
        self.stack.send_request(request, flow, on_response)

    def _start_timer(self, leg: _Leg, name: str, at: float) -> None:
        def fire() -> None:
            if self._calls.get(leg.call.call_id) is leg:
                self._execute(leg, leg.call.timer_fired(name, _now()))

        leg.timers.append(asyncio.get_running_loop().call_at(at, fire))

    async def _start_media(self, leg: _Leg, request: CreateSession, key: str) -> None:
        try:
            created = await self.media.create(request.model_copy(update={"owner": self.node}))
        except BusError as exc:
            log.warning("no media session", error=str(exc))
            self._execute(leg, leg.call.media_failed(str(exc), _now(), key))
            return
        leg.sessions[key] = (created.worker_id, created.session_id)
        self.workers.alive(created.worker_id, _now())
        self._execute(leg, leg.call.media_ready(created, _now(), key))

    async def _describe_media(self, leg: _Leg, description: RemoteDescription, key: str) -> None:
        session = leg.sessions.get(key)
        if session is None:
            return
        try:
            await self.media.describe(*session, description)
        except BusError as exc:
            log.warning("media update failed", error=str(exc))
            self._execute(leg, leg.call.hang_up(EndCause.MEDIA_FAILURE, _now()))

    async def _hand_over(
        self, leg: _Leg, request: Hold | PrepareLeg | ReplaceLeg | DiscardLegs, key: str
    ) -> None:
        """A transfer's media step (b2bua/ringing.py); what fails is fed back to the call."""
        call = leg.call
        session = leg.sessions.get(key)
        try:
            if session is None:
                raise BusError("the call has no media session")
            if isinstance(request, Hold):
                await self.media.hold(*session, request)
            elif isinstance(request, PrepareLeg):
                offer = await self.media.prepare(*session, request)
                if isinstance(call, RingCall) and offer.sdp is not None:
                    webrtc = request.media is LegMedia.WEBRTC
                    self._execute(leg, call.transfer_offer(webrtc, offer.sdp, _now()))
            elif isinstance(request, ReplaceLeg):
                await self.media.replace(*session, request)
            else:
                await self.media.discard(*session, request)
        except BusError as exc:
            log.warning("transfer media step failed", step=type(request).__name__, error=str(exc))
            if isinstance(request, PrepareLeg) and isinstance(call, RingCall):
                webrtc = request.media is LegMedia.WEBRTC
                self._execute(leg, call.transfer_media_failed(webrtc, str(exc), _now()))
            elif isinstance(request, ReplaceLeg):
                # The new party answered but cannot be heard: nothing good is left of the call.
                self._execute(leg, call.hang_up(EndCause.MEDIA_FAILURE, _now()))

    async def _stop_media(self, leg: _Leg, reason: str, key: str) -> None:
        session = leg.sessions.pop(key, None)
        if session is None:
            return
        try:
            await self.media.close(*session, reason)
        except BusError as exc:
            log.warning("media close failed", error=str(exc))

    # --- bookkeeping --------------------------------------------------------------------------

    def _index(self, leg: _Leg, dialog: tuple[str, str]) -> None:
        """Find the call by (Call-ID, our tag) of one of its dialogs; the leg keeps the key to drop."""
        self._by_dialog[dialog] = leg.call.call_id
        leg.dialog_keys.append(dialog)

    def _forget(self, call: Call) -> None:
        leg = self._calls.pop(call.call_id, None)
        if leg is None:
            return
        if self.reconnections:
            self.reconnections.forget(call.call_id)
        for timer in leg.timers:
            timer.cancel()
        # Each call's own keys, not a scan of every call's: ending calls under load stays O(1).
        for dialog in leg.dialog_keys:
            self._by_dialog.pop(dialog, None)
        if leg.caller_txn is not None:
            self._by_invite.pop(id(leg.caller_txn), None)
        if self.store is not None:
            self.store.changed(call.call_id)

    def _counts(self, without: str | None = None) -> CallCounts:
        by_trunk: dict[str, int] = {}
        by_agent: dict[str, int] = {}
        by_tenant: dict[str, int] = {}
        for leg in self._calls.values():
            call = leg.call
            if call.call_id == without:
                continue
            if call.trunk_id is not None:
                by_trunk[call.trunk_id] = by_trunk.get(call.trunk_id, 0) + 1
            for agent_id in call.agent_ids:
                by_agent[agent_id] = by_agent.get(agent_id, 0) + 1
            by_tenant[call.tenant_id] = by_tenant.get(call.tenant_id, 0) + 1
        return CallCounts(by_trunk, by_agent, by_tenant)

    def _address(self, flow: Flow) -> LegAddress:
        return self._address_for(flow.transport.value)

    def _address_for(self, transport: str, host: str | None = None) -> LegAddress:
        """How we appear on a leg: towards a carrier the same address its trunk registers with
        (never a private or pod address: PEERS.md), towards agents the public host."""
        kind = TransportKind(transport)
        host = host or self.settings.sip_public_host or "127.0.0.1"
        port = self.stack.transport.bound.get(kind, (host, 5060))[1]
        sent_by = f"{host}:{port}"
        suffix = "" if kind is TransportKind.UDP else f";transport={kind.value}"
        return LegAddress(sent_by, f"<sip:echodesk@{sent_by}{suffix}>", kind.value)

    def _refused(
        self,
        call_id: str,
        tenant: str,
        caller: str,
        dialed: str,
        why: Refused,
        *,
        direction: Direction = Direction.OUTBOUND,
        agent_id: str | None = None,
        trunk_id: str | None = None,
    ) -> None:
        """A call refused before it started still gets its two events: created and ended."""
        outcome = for_cause(EndCause.DIALPLAN_REFUSED, why.reason)
        base = {"tenant_id": tenant, "call_id": call_id, "source": self.node}
        self.publish(
            CallCreated(
                **base,
                sequence=0,
                data=CallCreatedData(
                    direction=direction,
                    from_number=caller[:64] or "?",
                    to_number=dialed[:64] or "?",
                    agent_id=agent_id,
                    trunk_id=trunk_id,
                ),
            )
        )
        self.publish(
            CallEnded(
                **base,
                sequence=1,
                data=CallEndedData(
                    status=outcome.status,
                    cause=outcome.cause,
                    ended_by=Party.SYSTEM,
                    sip_status=why.sip_status,
                    sip_reason=why.reason[:120],
                    message=outcome.message,
                    duration_s=0.0,
                ),
            )
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # A bug in a call's step must be seen, not lost with its task.
            log.error("call step failed", error=repr(error), exc_info=error)

    async def stop(self, *, hand_over: bool = False) -> None:
        """End every call (``hand_over``: every call but the connected ones, whose snapshots a
        successor with this instance's name takes over; their timers stop here)."""
        now = _now()
        kept: list[_Leg] = []
        for leg in list(self._calls.values()):
            if hand_over and leg.call.phase is Phase.CONNECTED:
                for timer in leg.timers:
                    timer.cancel()
                kept.append(leg)
                continue
            self._execute(leg, leg.call.hang_up(EndCause.SYSTEM_SHUTDOWN, now))
        for leg in self._calls.values():
            if leg.carrier is not None:
                leg.carrier.cancel()
        if kept:
            # Their latest state in KV, then nothing more from this instance: connections closing
            # as it stops must not end them (the successor reaches the agents again).
            if self.store is not None:
                await self.store.flushed(MEDIA_TIMEOUT_S)
            self.store = None
            for leg in kept:
                self._forget(leg.call)
            log.info("connected calls left to the successor", calls=len(kept))
        # The hang-ups' media closes are in flight: a worker left holding sessions would wait out
        # its drain deadline for calls that are gone.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=MEDIA_TIMEOUT_S)
        for task in list(self._tasks):
            task.cancel()


@dataclass
class _TransferPlan:
    """Where a transfer goes: the new agent's contacts (and their flows), a number through a trunk
    (``out``), or the status and reason it is refused with."""

    targets: list[RingTarget] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    to_agent: str | None = None
    out: ToTrunk | None = None
    refusal: tuple[int, str] | None = None


def _ignore(_txn: ClientTransaction, _response: Response | None) -> None:
    return None


def _changes_snapshot(leg: _Leg, commands: list[Command]) -> bool:
    """Whether what a call just did may change its snapshot: anything but reports (quality figures,
    a digit) numbered within the block of events its snapshot already reserved. Quality reports come
    every few seconds for every call: they must not each cost a snapshot."""
    block = leg.call._sequence // SEQUENCE_BLOCK
    if block != leg.sequence_block:
        leg.sequence_block = block
        return True
    return not all(isinstance(c, Publish) and isinstance(c.event, CallQuality | CallDtmf) for c in commands)


def _holds(offer: str) -> bool:
    """Whether an offer puts its author's audio on hold (sendonly, inactive, c=0.0.0.0: RFC 3264 8.4)."""
    try:
        description = SessionDescription.parse(offer)
    except SdpError:
        return False
    audio = next((m for m in description.media if m.kind == "audio"), None)
    return audio is not None and description.is_on_hold(audio)


def _to_slot(command: Command, slot: Slot) -> bool:
    """Whether ``command`` sends a request over the flow ``slot`` of its call."""
    if slot is None:
        return isinstance(command, SendToCaller)
    return isinstance(command, SendToBranch) and command.branch == slot


#: ``_slot_of`` for a flow that is none of a call's.
_NOT_ON_IT: Slot = -1


def _slot_of(leg: _Leg, flow: Flow) -> Slot:
    """Which of a call's flows ``flow`` is: the caller's (None), a branch's (its index), or -1."""
    if leg.caller_flow == flow:
        return None
    for index, branch_flow in enumerate(leg.branch_flows):
        if branch_flow == flow:
            return index
    return _NOT_ON_IT


def _webrtc(flow: Flow) -> bool:
    """Agents on WebSockets are browsers (WebRTC media); on UDP, TCP and TLS, desk phones (RTP)."""
    return flow.transport in (TransportKind.WS, TransportKind.WSS)


def _now() -> float:
    return asyncio.get_running_loop().time()
