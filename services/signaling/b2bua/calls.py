"""Every call of one signaling instance: INVITEs in, call state machines driven, commands carried out.

The stack hands this class the requests it does not answer itself (INVITE, BYE, CANCEL, the ACK
for a 2xx). An agent's INVITE is authenticated (407, RFC 3261 22.3), routed by the dial plan, and
becomes an :class:`OutboundCall`; the call's commands go to the stack (SIP), to the media workers
(NATS request/reply) and to the event stream. A request nobody authenticated never reaches a
carrier: that is the toll-fraud line.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from services.signaling.b2bua.call import (
    AgentCall,
    AnswerAgent,
    CarrierTarget,
    Command,
    DescribeMedia,
    EchoCall,
    LegAddress,
    OutboundCall,
    Phase,
    Publish,
    SendToAgent,
    SendToCarrier,
    StartMedia,
    StopMedia,
)
from services.signaling.b2bua.dialplan import CallCounts, Refused, ServiceLine, ToService, ToTrunk, route
from services.signaling.directory import AgentDirectory
from services.signaling.sip.message import Request, Response, make_response
from services.signaling.sip.transaction import ClientTransaction, ServerTransaction, TransactionStateError
from services.signaling.sip.uri import SipUri
from services.signaling.stack import SipStack
from services.signaling.transport.flow import Flow, TransportKind
from services.signaling.transport.layer import TransportUnavailable
from services.signaling.trunk.trunks import Trunks
from shared import subjects
from shared.bus import Bus, BusError
from shared.events import (
    CallCreated,
    CallCreatedData,
    CallEnded,
    CallEndedData,
    CallEventEnvelope,
    Direction,
    EndCause,
    Party,
)
from shared.logging import bind_call, get_logger
from shared.media import (
    CloseSession,
    CreateSession,
    LocalDescription,
    RemoteDescription,
    SessionClosed,
    SessionCreated,
)
from shared.outcomes import for_cause
from shared.records import TrunkRecord
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


@dataclass
class _Leg:
    call: AgentCall
    agent_flow: Flow
    agent_txn: ServerTransaction
    #: The flow to the carrier, being opened while the media worker prepares the session (None:
    #: a call with no carrier, such as the echo line).
    carrier: asyncio.Task[Flow | None] | None


class Calls:
    def __init__(
        self,
        stack: SipStack,
        settings: SignalingSettings,
        directory: AgentDirectory,
        trunks: Trunks,
        media: MediaClient,
        publish: Callable[[CallEventEnvelope], None],
    ) -> None:
        self.stack = stack
        self.settings = settings
        self.directory = directory
        self.trunks = trunks
        self.media = media
        self.publish = publish
        self._calls: dict[str, _Leg] = {}
        #: (SIP Call-ID, our tag) of each leg's dialog -> our call id.
        self._by_dialog: dict[tuple[str, str], str] = {}
        self._by_invite: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        stack.handle("INVITE", self._on_invite)
        stack.handle("BYE", self._on_bye)
        stack.handle("CANCEL", self._on_cancel)
        stack.handle("ACK", self._on_ack)
        stack.on_stray_response(self._on_stray_response)
        stack.on_flow_closed(self._on_flow_closed)

    @property
    def active(self) -> int:
        return len(self._calls)

    # --- requests from the stack --------------------------------------------------------------

    def _on_invite(self, txn: ServerTransaction | None, request: Request, flow: Flow, now: float) -> None:
        if txn is None:
            return
        if request.to.tag is not None:
            # Re-INVITEs (hold, session refresh) come with the in-dialog features of the calls issue.
            self.stack.respond(
                txn, make_response(request, 488, "Re-INVITE not supported yet", to_tag=txn.to_tag)
            )
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
        decision = route(dialed, agent, self.directory.agents(), self.trunks.active(), self._counts())
        call_id = uuid.uuid4().hex
        bind_call(tenant_id=agent.tenant_id, call_id=call_id)
        if isinstance(decision, Refused):
            log.info("call refused by the dial plan", rule=decision.rule, reason=decision.reason)
            self.stack.respond(
                txn, make_response(request, decision.sip_status, decision.reason[:120], to_tag=txn.to_tag)
            )
            self._refused(call_id, agent.tenant_id, agent.agent_id, agent.extension, dialed, decision)
            return
        webrtc = flow.transport in (TransportKind.WS, TransportKind.WSS)
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
            self._begin(_Leg(echo, flow, txn, None), now)
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
            ),
            webrtc_agent=webrtc,
        )
        self._begin(_Leg(call, flow, txn, asyncio.ensure_future(self._connect_carrier(trunk))), now)

    def _begin(self, leg: _Leg, now: float) -> None:
        call = leg.call
        self._calls[call.call_id] = leg
        self._by_invite[id(leg.agent_txn)] = call.call_id
        self._by_dialog[(call.agent_invite.call_id, call.agent_tag)] = call.call_id
        self._execute(leg, call.start(now))

    async def _connect_carrier(self, trunk: TrunkRecord) -> Flow | None:
        try:
            return await self.trunks.flow_to(trunk)
        except (TransportUnavailable, OSError) as exc:
            log.warning("carrier unreachable", trunk=trunk.trunk_id, error=str(exc))
            return None

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
        from_agent = request.call_id == leg.call.agent_invite.call_id
        self._execute(leg, leg.call.bye(from_agent=from_agent, now=now))

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
        self._execute(leg, leg.call.agent_cancelled(now))

    def _on_ack(self, txn: ServerTransaction | None, request: Request, flow: Flow, now: float) -> None:
        return None  # the ACK for our 2xx to the agent: the call is already connected

    def _on_stray_response(self, response: Response, flow: Flow, now: float) -> None:
        for leg in self._calls.values():
            invite = leg.call.carrier_invite
            if invite is not None and response.call_id == invite.call_id:
                self._execute(leg, leg.call.carrier_response(response, now))
                return

    def _on_flow_closed(self, flow: Flow) -> None:
        """The agent's connection closed: its calls end on both legs (a grace period for a
        reconnecting browser comes with the calls-that-survive work)."""
        now = _now()
        for leg in [leg for leg in self._calls.values() if leg.agent_flow == flow]:
            if leg.call.phase is Phase.CONNECTED:
                self._execute(leg, leg.call.hang_up(EndCause.AGENT_CONNECTION_LOST, now))
            else:
                self._execute(leg, leg.call.agent_cancelled(now))

    # --- commands -----------------------------------------------------------------------------

    def _execute(self, leg: _Leg, commands: list[Command]) -> None:
        call = leg.call
        for command in commands:
            if isinstance(command, AnswerAgent):
                try:
                    self.stack.respond(leg.agent_txn, command.response)
                except TransactionStateError:
                    log.info("agent's INVITE already answered", status=command.response.status_code)
            elif isinstance(command, SendToCarrier):
                self._spawn(self._to_carrier(leg, command.request))
            elif isinstance(command, SendToAgent):
                self.stack.send_request(command.request, leg.agent_flow, _ignore)
            elif isinstance(command, StartMedia):
                self._spawn(self._start_media(leg, command.request))
            elif isinstance(command, DescribeMedia):
                self._spawn(self._describe_media(leg, command.description))
            elif isinstance(command, StopMedia):
                self._spawn(self._stop_media(call, command.reason))
            elif isinstance(command, Publish):
                self.publish(command.event)
                if isinstance(command.event, CallEnded):
                    self._forget(call)

    async def _to_carrier(self, leg: _Leg, request: Request) -> None:
        # The first connection to the carrier may still be being made.
        flow = await leg.carrier if leg.carrier is not None else None
        now = _now()
        if flow is None:
            self._execute(leg, leg.call.carrier_failed(timed_out=False, now=now))
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
                self._execute(leg, leg.call.carrier_failed(timed_out=True, now=moment))
            else:
                self._execute(leg, leg.call.carrier_response(response, moment))

        self.stack.send_request(request, flow, on_response)
        if request.method == "INVITE":
            self._by_dialog[(request.call_id, request.from_.tag or "")] = leg.call.call_id

    async def _start_media(self, leg: _Leg, request: CreateSession) -> None:
        try:
            created = await self.media.create(request)
        except BusError as exc:
            log.warning("no media session", error=str(exc))
            self._execute(leg, leg.call.media_failed(str(exc), _now()))
            return
        self._execute(leg, leg.call.media_ready(created, _now()))

    async def _describe_media(self, leg: _Leg, description: RemoteDescription) -> None:
        call = leg.call
        if call.media_worker is None or call.media_session is None:
            return
        try:
            await self.media.describe(call.media_worker, call.media_session, description)
        except BusError as exc:
            log.warning("media update failed", error=str(exc))
            self._execute(leg, call.hang_up(EndCause.MEDIA_FAILURE, _now()))

    async def _stop_media(self, call: AgentCall, reason: str) -> None:
        if call.media_worker is None or call.media_session is None:
            return
        try:
            await self.media.close(call.media_worker, call.media_session, reason)
        except BusError as exc:
            log.warning("media close failed", error=str(exc))

    # --- bookkeeping --------------------------------------------------------------------------

    def _forget(self, call: AgentCall) -> None:
        self._calls.pop(call.call_id, None)
        for dialog in [k for k, v in self._by_dialog.items() if v == call.call_id]:
            del self._by_dialog[dialog]
        for invite in [k for k, v in self._by_invite.items() if v == call.call_id]:
            del self._by_invite[invite]

    def _counts(self) -> CallCounts:
        by_trunk: dict[str, int] = {}
        by_agent: dict[str, int] = {}
        by_tenant: dict[str, int] = {}
        for leg in self._calls.values():
            call = leg.call
            if call.trunk_id is not None:
                by_trunk[call.trunk_id] = by_trunk.get(call.trunk_id, 0) + 1
            by_agent[call.agent_id] = by_agent.get(call.agent_id, 0) + 1
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
        self, call_id: str, tenant: str, agent_id: str, extension: str, dialed: str, why: Refused
    ) -> None:
        outcome = for_cause(EndCause.DIALPLAN_REFUSED, why.reason)
        base = {"tenant_id": tenant, "call_id": call_id}
        self.publish(
            CallCreated(
                **base,
                sequence=0,
                data=CallCreatedData(
                    direction=Direction.OUTBOUND,
                    from_number=extension,
                    to_number=dialed[:64] or "?",
                    agent_id=agent_id,
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
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        now = _now()
        for leg in list(self._calls.values()):
            self._execute(leg, leg.call.hang_up(EndCause.SYSTEM_SHUTDOWN, now))
        for leg in self._calls.values():
            if leg.carrier is not None:
                leg.carrier.cancel()
        for task in list(self._tasks):
            task.cancel()


def _ignore(_txn: ClientTransaction, _response: Response | None) -> None:
    return None


def _now() -> float:
    return asyncio.get_running_loop().time()
