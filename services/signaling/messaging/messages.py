"""Every SIP MESSAGE (RFC 3428) of one signaling instance: checked, routed, delivered, accounted for.

Who may send, and where it goes, follows the rules of calls:
- a carrier's MESSAGE (its source is a trunk's carrier, ``Trunks.carriers_at``) is for the trunk's
  DID and goes to the agents of the trunk's ring group;
- an agent's MESSAGE is digest-authenticated (407, RFC 3261 22.3) and routed by the dial plan: an
  extension reaches that agent, a number goes out through a trunk with the same normalization,
  allow-lists and premium-rate block as a call, the carrier's 401/407 answered with the trunk's
  credentials;
- anyone else gets 403: a source that is no carrier of ours, claiming a domain no agent has.

Delivery to agents is a parallel ring for text (messaging/delivery.py). The sender gets 200 when a
phone accepts it, or 202 when its outcome is not known within ``message_answer_wait_s`` or it waits
for the agent to register (JetStream, messaging/pending.py). Every message accepted ends with
``message.delivered`` or ``message.failed``: nothing is lost without a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from services.signaling.b2bua.dialplan import (
    CallCounts,
    Refused,
    TenantPolicy,
    ToAgent,
    ToTrunk,
    route,
    route_number,
)
from services.signaling.directory import AgentDirectory
from services.signaling.messaging.content import ACCEPTED_TYPES, BodyRefused, Text, check_text, read_body
from services.signaling.messaging.delivery import (
    CarrierMessage,
    Delivered,
    Fanout,
    MessageDraft,
    Undelivered,
)
from services.signaling.messaging.pending import PendingMessage, PendingStore
from services.signaling.registrar import Binding
from services.signaling.sip.message import Request, Response, make_response
from services.signaling.sip.transaction import ClientTransaction, ServerTransaction, TransactionStateError
from services.signaling.sip.uri import SipUri
from services.signaling.stack import SipStack
from services.signaling.transport.flow import Flow
from services.signaling.transport.layer import TransportUnavailable
from services.signaling.trunk.numbers import called_number, caller_number
from services.signaling.trunk.trunks import Trunks
from shared.bus import Rejected
from shared.conversations import conversation_id
from shared.events import (
    Direction,
    EventEnvelope,
    MessageContent,
    MessageDelivered,
    MessageDeliveredData,
    MessageFailed,
    MessageFailedData,
    MessageFailure,
    MessageReceived,
    MessageSent,
)
from shared.logging import get_logger
from shared.messages import REFUSED_TARGET, REFUSED_TEXT, UNKNOWN_AGENT, MessageOutcome, SendMessage
from shared.records import AgentRecord, TrunkRecord
from shared.settings import SignalingSettings

log = get_logger("echodesk.signaling.messages")

#: Outcome events get an id derived from the message's: two instances (or a retry) that report the
#: same outcome publish the same event, which JetStream's de-duplication keeps once.
_OUTCOME_NAMESPACE = uuid.UUID("0f6f3f0e-9d2b-4c55-8d8e-3b1c2a7e5d41")
#: How long an instance remembers the messages it stored itself (their copies come back at once).
STORED_MEMORY_S = 60.0
#: The dial plan's concurrency limits are for calls: a message holds no line.
_NO_CALLS = CallCounts({}, {}, {})


#: The directory's agents, their SIP domains, and the agents by (tenant, agent id).
_AgentIndex = tuple[tuple[AgentRecord, ...], frozenset[str], dict[tuple[str, str], AgentRecord]]


@dataclass
class _Attempt:
    """One delivery attempt of one message: its sender's transaction (None for a message that waited)
    and whether that sender has had its answer."""

    message: PendingMessage
    txn: ServerTransaction | None
    request: Request | None
    #: The message came from the pending store (it waited for a registration).
    queued: bool
    #: The agent of each branch (the one who accepted it is named in the event).
    branch_agents: list[str] = field(default_factory=list)
    answered: bool = False
    timer: asyncio.TimerHandle | None = None
    #: For a message the api sent: gets the answer a phone's sender would (status, reason).
    waiter: asyncio.Future[tuple[int, str]] | None = None


class Messages:
    def __init__(
        self,
        stack: SipStack,
        settings: SignalingSettings,
        directory: AgentDirectory,
        trunks: Trunks,
        publish: Callable[[EventEnvelope], None],
        pending: PendingStore,
    ) -> None:
        self.stack = stack
        self.settings = settings
        self.directory = directory
        self.trunks = trunks
        self.publish = publish
        self.pending = pending
        self._policy = TenantPolicy(max_concurrent_calls=settings.tenant_max_concurrent_calls)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Messages being delivered from the pending store right now (not taken twice).
        self._in_flight: set[str] = set()
        self._agents_index: _AgentIndex | None = None
        #: Messages this instance stored itself (by id, with when): their copies coming back from
        #: the bus are not for it to deliver (its own phones for them did not answer).
        self._stored_here: dict[str, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        stack.accept("MESSAGE", ACCEPTED_TYPES)
        stack.handle("MESSAGE", self._on_message)
        stack.on_binding_added(self._on_binding_added)

    def start(self) -> None:
        self._sweeper = asyncio.ensure_future(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()

    # --- requests -------------------------------------------------------------------------------

    def _on_message(self, txn: ServerTransaction | None, request: Request, flow: Flow, now: float) -> None:
        if txn is None:
            return
        if request.to.tag is not None:
            # Inside a call (SIP.js Session.message): the gateway relays no in-dialog text.
            self._answer(txn, request, 403, "Send messages outside the call")
            return
        carriers = self.trunks.carriers_at(flow)
        if carriers:
            self._from_carrier(txn, request, flow, carriers)
            return
        sender = request.from_.uri
        if not isinstance(sender, SipUri) or not sender.user:
            self._answer(txn, request, 403, "Unknown sender")
            return
        domain = sender.host.lower()
        if domain not in self._agent_domains():
            # Neither one of our carriers nor anyone who could be an agent: no challenge to try.
            log.info("message from an unknown source", source=str(flow), domain=domain[:64])
            self._answer(txn, request, 403, "Unknown source: not a trunk's carrier nor an agent's domain")
            return
        agent = self.stack.authenticate(txn, request, flow, now, domain=domain)
        if agent is None:
            return  # challenged or refused
        self._from_agent(txn, request, agent)

    def _from_agent(self, txn: ServerTransaction, request: Request, agent: AgentRecord) -> None:
        body = read_body(request, self.settings.message_max_bytes)
        if isinstance(body, BodyRefused):
            self._answer(txn, request, body.status, body.reason, body.headers)
            return
        dialed_uri = request.uri
        dialed = dialed_uri.user if isinstance(dialed_uri, SipUri) and dialed_uri.user else ""
        self._originate(agent, dialed, body, txn=txn, request=request)

    async def send(self, command: SendMessage) -> MessageOutcome:
        """The api's ``messages.command.send``: a message from an agent, as if their phone sent it, or
        from the tenant itself to a customer's number."""
        agent = self._agent(command.tenant_id, command.agent_id) if command.agent_id is not None else None
        if command.agent_id is not None and agent is None:
            raise Rejected(UNKNOWN_AGENT, f"no enabled agent {command.agent_id} in this tenant")
        body = check_text(command.text.encode(), self.settings.message_max_bytes)
        if isinstance(body, BodyRefused):
            raise Rejected(REFUSED_TEXT, body.reason)
        waiter: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        if agent is None:
            message_id, refused = self._from_tenant(command.tenant_id, command.to, body, waiter)
        else:
            message_id, refused = self._originate(
                agent, command.to, body, txn=None, request=None, waiter=waiter
            )
        if refused is not None:
            raise Rejected(REFUSED_TARGET, refused.reason[:200])
        status, reason = await waiter
        outcome: Literal["delivered", "pending", "failed"] = (
            "delivered" if status == 200 else "pending" if status == 202 else "failed"
        )
        return MessageOutcome(message_id=message_id, outcome=outcome, sip_status=status, reason=reason[:200])

    def _from_tenant(
        self, tenant_id: str, dialed: str, body: Text, waiter: asyncio.Future[tuple[int, str]]
    ) -> tuple[str, Refused | None]:
        """A message from the tenant itself (no agent): to a customer's number through its trunk,
        as the trunk's caller id."""
        decision = route_number(dialed, tenant_id, self.trunks.active(), self._policy)
        message_id = uuid.uuid4().hex
        if isinstance(decision, Refused):
            return message_id, decision
        trunk, number = decision.trunk, decision.number
        caller_id = _caller_id(trunk)
        message = PendingMessage(
            message_id=message_id,
            tenant_id=tenant_id,
            agent_ids=(),
            direction=Direction.OUTBOUND,
            from_uri=f"sip:{caller_id}@{trunk.domain or trunk.sip_server}",
            to_number=number,
            content_type=body.content_type,
            body=body.body.decode(),
            accepted_at=datetime.now(UTC),
            customer_number=number,
            conversation_id=conversation_id(tenant_id, number),
        )
        self._accepted(message, body.text, len(body.body), caller_id, trunk_id=trunk.trunk_id)
        attempt = _Attempt(message, None, None, queued=False, waiter=waiter)
        self._arm_answer(attempt)
        self._spawn(self._to_carrier(attempt, trunk))
        return message_id, None

    def _originate(
        self,
        agent: AgentRecord,
        dialed: str,
        body: Text,
        *,
        txn: ServerTransaction | None,
        request: Request | None,
        waiter: asyncio.Future[tuple[int, str]] | None = None,
    ) -> tuple[str, Refused | None]:
        """Route and send ``agent``'s message to ``dialed``; (its id, the dial plan's refusal)."""
        decision = route(
            dialed, agent, self.directory.agents(), self.trunks.active(), _NO_CALLS, self._policy
        )
        message_id = uuid.uuid4().hex
        base = {
            "message_id": message_id,
            "tenant_id": agent.tenant_id,
            "from_uri": f"sip:{agent.extension}@{agent.domain}",
            "from_name": agent.display_name or agent.extension,
            "from_agent_id": agent.agent_id,
            "content_type": body.content_type,
            "body": body.body.decode(),
            "accepted_at": datetime.now(UTC),
        }
        if isinstance(decision, ToAgent):
            target = decision.agent
            message = PendingMessage(
                **base, agent_ids=(target.agent_id,), direction=Direction.INTERNAL, to_number=target.extension
            )
            self._accepted(message, body.text, len(body.body), agent.extension, to_agent_id=target.agent_id)
            self._deliver(_Attempt(message, txn, request, queued=False, waiter=waiter), [target])
            return message_id, None
        if isinstance(decision, ToTrunk):
            number = decision.number
            message = PendingMessage(
                **base,
                agent_ids=(agent.agent_id,),
                direction=Direction.OUTBOUND,
                to_number=number,
                customer_number=number,
                conversation_id=conversation_id(agent.tenant_id, number),
            )
            self._accepted(
                message, body.text, len(body.body), agent.extension, trunk_id=decision.trunk.trunk_id
            )
            attempt = _Attempt(message, txn, request, queued=False, waiter=waiter)
            self._arm_answer(attempt)
            self._spawn(self._to_carrier(attempt, decision.trunk))
            return message_id, None
        refusal = (
            decision
            if isinstance(decision, Refused)
            else Refused("service_line", 404, f"{dialed} is a service line: it takes no messages")
        )
        log.info("message refused by the dial plan", rule=refusal.rule, reason=refusal.reason)
        # Like a refused call, a refused message is on the record: sent, then failed.
        message = PendingMessage(
            **base, agent_ids=(agent.agent_id,), direction=Direction.OUTBOUND, to_number=dialed[:64] or "?"
        )
        self._accepted(message, body.text, len(body.body), agent.extension)
        attempt = _Attempt(message, txn, request, queued=False)
        self._respond(attempt, refusal.sip_status, refusal.reason[:120])
        self._failed(attempt, MessageFailure.NO_ROUTE, refusal.sip_status, refusal.reason)
        return message_id, refusal

    def _from_carrier(
        self, txn: ServerTransaction, request: Request, flow: Flow, carriers: list[TrunkRecord]
    ) -> None:
        """A customer's text: for which of our numbers, then to that number's ring group."""
        called = called_number(request, carriers)
        if called is None:
            log.info("message for a number no trunk serves", source=str(flow), uri=str(request.uri))
            self._answer(txn, request, 404, "Number not served here")
            return
        trunk, did = called
        body = read_body(request, self.settings.message_max_bytes)
        if isinstance(body, BodyRefused):
            self._answer(txn, request, body.status, body.reason, body.headers)
            return
        customer = caller_number(request, trunk)
        agents = [
            a
            for a in self.directory.agents()
            if a.tenant_id == trunk.tenant_id
            and (trunk.ring_group is None or trunk.ring_group in a.ring_groups)
        ]
        if not agents:
            self._answer(txn, request, 480, "No agent serves this number")
            return
        number = customer if customer.startswith("+") else None
        message = PendingMessage(
            message_id=uuid.uuid4().hex,
            tenant_id=trunk.tenant_id,
            agent_ids=tuple(a.agent_id for a in agents),
            direction=Direction.INBOUND,
            from_uri=f"sip:{customer}@{agents[0].domain}",
            from_name=request.from_.display_name[:128] if request.from_.display_name else None,
            to_number=did,
            content_type=body.content_type,
            body=body.body.decode(),
            accepted_at=datetime.now(UTC),
            customer_number=number,
            conversation_id=conversation_id(trunk.tenant_id, number) if number else None,
        )
        self._accepted(message, body.text, len(body.body), customer, trunk_id=trunk.trunk_id)
        self._deliver(_Attempt(message, txn, request, queued=False), agents)

    # --- delivery to agents -----------------------------------------------------------------------

    def _deliver(self, attempt: _Attempt, agents: list[AgentRecord]) -> None:
        """Send the message to every registered contact of ``agents`` at once."""
        now = _now()
        message = attempt.message
        branches: list[tuple[AgentRecord, Binding]] = [
            (agent, binding) for agent in agents for binding in self.stack.bindings_of(agent, now)
        ]
        fanout = Fanout(len(branches))
        if not branches:
            self._spawn(self._wait_for_registration(attempt))
            return
        attempt.branch_agents = [agent.agent_id for agent, _ in branches]
        body = message.body.encode()
        for index, (agent, binding) in enumerate(branches):
            host, transport = self._via(binding.flow)
            from_uri = message.from_uri
            if message.direction is Direction.INBOUND:
                from_uri = f"sip:{message.customer_number or 'anonymous'}@{agent.domain}"
            draft = MessageDraft(
                uri=str(binding.contact.uri),
                from_uri=from_uri,
                from_name=message.from_name,
                to_uri=f"sip:{agent.extension}@{agent.domain}",
                via_host=host,
                transport=transport,
                content_type=_wire_type(message.content_type),
                body=body,
                user_agent=self.stack.server_header,
            )

            def on_response(_txn: ClientTransaction, response: Response | None, index: int = index) -> None:
                if response is not None and response.status_code < 200:
                    return
                outcome = fanout.answered(index, response.status_code if response is not None else None)
                if outcome is not None:
                    self._settle(attempt, outcome)

            self.stack.send_request(draft.request(), binding.flow, on_response)
        if fanout.outcome is None:
            self._arm_answer(attempt)

    async def _wait_for_registration(self, attempt: _Attempt) -> None:
        """Nobody to deliver to now: keep the message for the agent's next registration."""
        message = attempt.message
        if attempt.queued:
            self._in_flight.discard(message.message_id)
            return  # it is still in the store
        try:
            await self.pending.put(message)
        except Exception as exc:
            log.error("message could not be queued", message_id=message.message_id, error=str(exc))
            self._respond(attempt, 503, "The message cannot be queued now")
            self._failed(attempt, MessageFailure.NOT_QUEUED, None, "The message could not be queued")
            return
        now = _now()
        self._stored_here[message.message_id] = now
        for stale in [k for k, at in self._stored_here.items() if now - at > STORED_MEMORY_S]:
            del self._stored_here[stale]
        self._respond(attempt, 202, "Accepted: the agent will get it when they register")

    def _settle(self, attempt: _Attempt, outcome: Delivered | Undelivered) -> None:
        message = attempt.message
        if attempt.timer is not None:
            attempt.timer.cancel()
        if isinstance(outcome, Delivered):
            self._respond(attempt, 200, "OK")
            agent_id = attempt.branch_agents[outcome.branch] if attempt.branch_agents else None
            if message.direction is Direction.OUTBOUND:
                agent_id = message.from_agent_id
            self.publish(
                MessageDelivered(
                    **self._envelope(message, agent_id),
                    data=MessageDeliveredData(
                        sip_status=outcome.sip_status, waited_s=_waited(message), queued=attempt.queued
                    ),
                )
            )
            if attempt.queued:
                self._spawn(self._forget(message))
            return
        if outcome.unreachable:
            self._spawn(self._wait_for_registration(attempt))
            return
        status, reason = _for_sender(outcome)
        self._respond(attempt, status, reason)
        self._failed(attempt, outcome.cause, outcome.sip_status, outcome.reason)
        if attempt.queued:
            self._spawn(self._forget(message))

    def _failed(self, attempt: _Attempt, cause: MessageFailure, status: int | None, reason: str) -> None:
        message = attempt.message
        agent_id = message.from_agent_id if message.direction is not Direction.INBOUND else None
        self.publish(
            MessageFailed(
                **self._envelope(message, agent_id),
                data=MessageFailedData(
                    cause=cause,
                    sip_status=status if status is not None and status >= 300 else None,
                    reason=reason[:200],
                    waited_s=_waited(message),
                ),
            )
        )

    async def _forget(self, message: PendingMessage) -> None:
        try:
            await self.pending.remove(message)
        finally:
            self._in_flight.discard(message.message_id)

    # --- to customers ---------------------------------------------------------------------------

    async def _to_carrier(self, attempt: _Attempt, trunk: TrunkRecord) -> None:
        message = attempt.message
        try:
            flow = await self.trunks.flow_to(trunk)
        except (TransportUnavailable, OSError) as exc:
            log.warning("carrier unreachable", trunk=trunk.trunk_id, error=str(exc))
            self._settle(
                attempt,
                Undelivered(
                    503,
                    f"Carrier unreachable: {exc}"[:200],
                    unreachable=False,
                    cause=MessageFailure.CARRIER_ERROR,
                ),
            )
            return
        domain = trunk.domain or trunk.sip_server
        caller_id = _caller_id(trunk)
        host = self.trunks.contact_host(trunk.sip_server)
        port = self.stack.transport.bound.get(flow.transport, (host, 5060))[1]
        draft = MessageDraft(
            uri=f"sip:{message.to_number}@{domain}",
            from_uri=f"sip:{caller_id}@{domain}",
            to_uri=f"sip:{message.to_number}@{domain}",
            via_host=f"{host}:{port}",
            transport=flow.transport.value,
            content_type=_wire_type(message.content_type),
            body=message.body.encode(),
            user_agent=self.stack.server_header,
        )
        carrier = CarrierMessage(draft, self.trunks.credentials(trunk))

        def on_response(_txn: ClientTransaction, response: Response | None) -> None:
            if response is not None and response.status_code < 200:
                return
            step = carrier.answered(response)
            if isinstance(step, Request):
                self.stack.send_request(step, flow, on_response)
            else:
                self._settle(attempt, step)

        self.stack.send_request(carrier.current, flow, on_response)

    # --- pending messages -------------------------------------------------------------------------

    def _on_binding_added(self, binding: Binding, _replaced: Binding | None) -> None:
        tenant_id, _, agent_id = binding.aor.partition("/")
        agent = self._agent(tenant_id, agent_id)
        if agent is not None:
            self._spawn(self._deliver_pending(agent))

    async def _deliver_pending(self, agent: AgentRecord) -> None:
        """An agent registered: what waited for them goes to their phones now."""
        try:
            waiting = await self.pending.for_agent(agent.tenant_id, agent.agent_id)
        except Exception as exc:  # NATS away: the messages stay stored for the next registration
            log.warning(
                "pending messages not read", agent=agent.agent_id, error=str(exc) or type(exc).__name__
            )
            return
        for message in waiting:
            if message.message_id in self._in_flight:
                continue
            self._in_flight.add(message.message_id)
            self._deliver(_Attempt(message, None, None, queued=True), [agent])

    def pending_arrived(self, message: PendingMessage) -> None:
        """Another instance stored a message for agents it has no phone of: when they are registered
        here, it goes to their phones now (an agent is registered on one instance, its sender may be
        on another)."""
        if message.message_id in self._in_flight or message.message_id in self._stored_here:
            return
        now = _now()
        agents = [
            a
            for agent_id in message.agent_ids
            if (a := self._agent(message.tenant_id, agent_id)) is not None and self.stack.bindings_of(a, now)
        ]
        if agents:
            self._in_flight.add(message.message_id)
            self._deliver(_Attempt(message, None, None, queued=True), agents)

    async def sweep(self) -> int:
        """Fail what waited longer than the pending time; returns how many."""
        ttl = self.settings.message_pending_ttl_s
        cutoff = datetime.now(UTC) - timedelta(seconds=ttl)
        expired = 0
        for message in await self.pending.older_than(cutoff):
            if message.message_id in self._in_flight:
                continue
            self._in_flight.add(message.message_id)
            attempt = _Attempt(message, None, None, queued=True, answered=True)
            self._failed(
                attempt,
                MessageFailure.EXPIRED,
                480,
                f"Not delivered: the agent did not register within {ttl:g} s",
            )
            await self._forget(message)
            expired += 1
        return expired

    async def _sweep_forever(self) -> None:
        every = min(60.0, max(0.5, self.settings.message_pending_ttl_s / 10))
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except Exception as exc:  # NATS away: the next round tries again
                log.warning("pending messages not swept", error=str(exc) or type(exc).__name__)

    # --- helpers ----------------------------------------------------------------------------------

    def _accepted(
        self,
        message: PendingMessage,
        text: str,
        size: int,
        from_number: str,
        *,
        to_agent_id: str | None = None,
        trunk_id: str | None = None,
    ) -> None:
        inbound = message.direction is Direction.INBOUND
        content = MessageContent(
            direction=message.direction,
            from_number=from_number[:64],
            to_number=message.to_number,
            from_agent_id=message.from_agent_id,
            to_agent_id=to_agent_id,
            trunk_id=trunk_id,
            content_type="message/cpim" if message.content_type == "message/cpim" else "text/plain",
            text=text,
            size_bytes=size,
        )
        envelope = self._envelope(message, None if inbound else message.from_agent_id)
        if inbound:
            self.publish(MessageReceived(**envelope, data=content))
        else:
            self.publish(MessageSent(**envelope, data=content))

    def _envelope(self, message: PendingMessage, agent_id: str | None) -> dict[str, Any]:
        return {
            "tenant_id": message.tenant_id,
            "message_id": message.message_id,
            "agent_id": agent_id,
            "customer_number": message.customer_number,
            "conversation_id": message.conversation_id,
            "source": self.stack.server_header,
        }

    def _arm_answer(self, attempt: _Attempt) -> None:
        """The sender's transaction may not wait for ever (RFC 3428 7: 202 when the outcome is not
        known yet); the outcome follows as an event."""
        if (attempt.txn is None and attempt.waiter is None) or attempt.answered:
            return
        attempt.timer = asyncio.get_running_loop().call_later(
            self.settings.message_answer_wait_s,
            self._respond,
            attempt,
            202,
            "Accepted: delivery goes on",
        )

    def _respond(self, attempt: _Attempt, status: int, reason: str) -> None:
        if attempt.answered:
            return
        if attempt.waiter is not None:
            attempt.answered = True
            if attempt.timer is not None:
                attempt.timer.cancel()
            if not attempt.waiter.done():
                attempt.waiter.set_result((status, reason))
            return
        if attempt.txn is None or attempt.request is None:
            return
        attempt.answered = True
        if attempt.timer is not None:
            attempt.timer.cancel()
        self._answer(attempt.txn, attempt.request, status, reason)

    def _answer(
        self,
        txn: ServerTransaction,
        request: Request,
        status: int,
        reason: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        with contextlib.suppress(TransactionStateError):
            self.stack.respond(
                txn, make_response(request, status, reason, to_tag=txn.to_tag, headers=headers)
            )

    def _via(self, flow: Flow) -> tuple[str, str]:
        host = self.settings.sip_public_host or "127.0.0.1"
        port = self.stack.transport.bound.get(flow.transport, (host, 5060))[1]
        return f"{host}:{port}", flow.transport.value

    def _agent_domains(self) -> frozenset[str]:
        return self._index()[1]

    def _agent(self, tenant_id: str, agent_id: str) -> AgentRecord | None:
        """An enabled agent by tenant and id (every registration asks: a lookup, not a scan)."""
        return self._index()[2].get((tenant_id, agent_id))

    def _index(self) -> _AgentIndex:
        # Rebuilt when the directory changes (its tuple of agents is then a new object).
        agents = self.directory.agents()
        if self._agents_index is None or self._agents_index[0] is not agents:
            self._agents_index = (
                agents,
                frozenset(a.domain.lower() for a in agents),
                {(a.tenant_id, a.agent_id): a for a in agents},
            )
        return self._agents_index

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("message step failed", error=repr(error), exc_info=error)


def _for_sender(outcome: Undelivered) -> tuple[int, str]:
    """What the sender's phone is told of a failure: the recipient's own status, except the ones it
    would take as about itself (a challenge would make it send its credentials again)."""
    if outcome.cause is MessageFailure.CARRIER_AUTH_FAILED:
        return 403, "The carrier refused the trunk's credentials"
    if outcome.sip_status == 408:
        return 504, "The carrier did not answer"
    if outcome.cause is MessageFailure.CARRIER_ERROR and outcome.sip_status >= 500:
        return 502, outcome.reason[:120]
    return outcome.sip_status, outcome.reason[:120]


def _caller_id(trunk: TrunkRecord) -> str:
    """Who a message through ``trunk`` is from, as calls through it are (b2bua/calls.py)."""
    return trunk.username or (trunk.dids[0].lstrip("+") if trunk.dids else "echodesk")


def _wire_type(content_type: str) -> str:
    """The Content-Type a message goes on with: text/plain names its charset, as MIME's default for
    text is US-ASCII (RFC 2046 4.1.2) and the text is UTF-8."""
    return "text/plain;charset=UTF-8" if content_type == "text/plain" else content_type


def _waited(message: PendingMessage) -> float:
    return max(0.0, (datetime.now(UTC) - message.accepted_at).total_seconds())


def _now() -> float:
    return asyncio.get_running_loop().time()


__all__ = ["Messages"]
