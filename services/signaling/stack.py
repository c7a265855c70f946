"""One signaling instance's SIP element: the thin asyncio layer over the sans-I/O cores.

Transports hand in parsed messages; the transaction layer, the registrar and digest auth decide;
this class carries out their actions (send bytes, answer requests, publish presence) and drives
their timers with the event loop's clock. Nothing here waits on NATS: events leave through a
callback that only queues them.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from services.signaling.abuse import GuardPolicy, SourceGuard, Verdict
from services.signaling.directory import AgentDirectory
from services.signaling.registrar import Binding, Refused, Registrar, RegistrarPolicy
from services.signaling.sip.auth import Algorithm, DigestFailure, DigestServer, FailureKind
from services.signaling.sip.errors import SipParseError
from services.signaling.sip.limits import ParseLimits
from services.signaling.sip.message import Request, Response, make_response
from services.signaling.sip.transaction import (
    Action,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    Terminated,
    TimedOut,
    Timers,
    TransactionLayer,
    Transmit,
    TransportFailed,
)
from services.signaling.sip.uas_checks import check_request
from services.signaling.sip.uri import SipUri
from services.signaling.transport.connection import ConnectionLimits
from services.signaling.transport.flow import Flow, TransportKind
from services.signaling.transport.layer import Listener, TransportLayer, TransportUnavailable
from shared.events import AgentPresence, AgentPresenceData, EventEnvelope, PresenceState
from shared.logging import get_logger
from shared.records import AgentRecord
from shared.service import PortInUse, is_address_in_use, package_version
from shared.settings import SignalingSettings

log = get_logger("echodesk.signaling.sip")

REGISTRATIONS = Gauge("echodesk_sip_registrations", "Registered agent contacts")
AUTH_FAILURES = Counter("echodesk_sip_auth_failures_total", "Digest authentication failures", ["kind"])
DROPPED = Counter("echodesk_sip_requests_dropped_total", "Requests dropped by abuse protection", ["verdict"])
REQUESTS = Counter("echodesk_sip_requests_total", "SIP requests handled", ["method", "status"])

#: Methods this element processes today; others get 405 with Allow (RFC 3261 8.2.1).
METHODS = ("REGISTER", "OPTIONS", "ACK", "CANCEL")
#: Option tags we implement: RFC 5626 outbound, RFC 3327 path, RFC 4028 timer.
EXTENSIONS = ("outbound", "path", "timer")
#: SDP, and the two DTMF-in-INFO bodies SIP.js and desk phones send (b2bua/dtmf_info.py).
ACCEPTED_CONTENT_TYPES = ("application/sdp", "application/dtmf-relay", "application/dtmf")
SUPPORTED = ("Supported", ", ".join(EXTENSIONS))
CAPABILITIES = (("Allow", ", ".join(METHODS)), ("Accept", ", ".join(ACCEPTED_CONTENT_TYPES)), SUPPORTED)
HOUSEKEEPING_S = 30.0
#: Allocations between young-generation collections while the stack runs (CPython's default: 700).
#: Each message allocates a few hundred short-lived containers while every transaction of the last
#: 32 s (Timer J) stays alive, and at the default the cyclic collector, which frees nothing here
#: that reference counting does not, took more CPU than the SIP work itself (bench/sip_stack_path.py
#: prints its share). Older generations keep their default ratios.
GC_YOUNG_THRESHOLD = 20_000


#: Called with (client transaction, response or None on timeout/transport failure).
ResponseHandler = Callable[[ClientTransaction, Response | None], None]
#: Handles a request the stack does not answer itself (INVITE, BYE, ...). The transaction is None for
#: an ACK to a 2xx, which has none (RFC 3261 17.2.1).
RequestHandler = Callable[[ServerTransaction | None, Request, Flow, float], None]
#: Handles a response that matched no transaction (a 2xx retransmission: the dialog re-ACKs it).
StrayResponseHandler = Callable[[Response, Flow, float], None]


def aor_of(agent: AgentRecord) -> str:
    """The registrar's address-of-record key of an agent: unique across tenants."""
    return f"{agent.tenant_id}/{agent.agent_id}"


@dataclass
class _Registered:
    record: AgentRecord
    bindings: int


class SipStack:
    def __init__(
        self,
        settings: SignalingSettings,
        directory: AgentDirectory,
        publish: Callable[[EventEnvelope], None],
        *,
        guard: SourceGuard | None = None,
        server_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.publish = publish
        self.guard = guard or SourceGuard(
            GuardPolicy(
                rate_per_s=settings.sip_rate_per_source,
                burst=settings.sip_burst_per_source,
                failures_to_ban=settings.sip_failures_to_ban,
                ban_s=settings.sip_ban_s,
                trusted=tuple(n.strip() for n in settings.sip_trusted_networks.split(",") if n.strip()),
            )
        )
        self.transactions = TransactionLayer(Timers(settings.sip_t1, settings.sip_t2, settings.sip_t4))
        self.registrar = Registrar(
            RegistrarPolicy(
                min_expires=settings.sip_min_expires,
                max_expires=settings.sip_max_expires,
                default_expires=settings.sip_default_expires,
            )
        )
        self.transport = TransportLayer(
            self,
            limits=ParseLimits(max_message_bytes=settings.sip_max_message_bytes),
            conn_limits=ConnectionLimits(idle_timeout_s=settings.sip_idle_timeout_s),
            ws_path=settings.sip_ws_path,
            server_tls=server_tls,
            max_connections=settings.sip_max_connections,
            max_connections_per_ip=settings.sip_max_connections_per_ip,
        )
        self._secret = (settings.sip_nonce_secret or secrets.token_hex(32)).encode()
        self._digest: dict[tuple[str, bool], DigestServer] = {}
        self._algorithms = _digest_algorithms(settings.sip_digest_algorithms)
        self._agents: dict[str, _Registered] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None
        self._housekeeping_at = 0.0
        self._depth = 0
        self._collector_tuned = False
        self._requests: dict[tuple[str, int], Any] = {}
        self._handlers: dict[str, RequestHandler] = {}
        self._stray: StrayResponseHandler | None = None
        self._flow_handlers: list[Callable[[Flow, list[Binding]], None]] = []
        self._binding_handlers: list[Callable[[Binding, Binding | None], None]] = []
        self._methods: tuple[str, ...] = METHODS
        #: Bodies a method takes instead of ACCEPTED_CONTENT_TYPES (MESSAGE: text, RFC 3428).
        self._accepted: dict[str, tuple[str, ...]] = {}
        self._capabilities_headers: tuple[tuple[str, str], ...] = CAPABILITIES
        self.server_header = f"EchoDesk-Voice/{package_version()}"

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        listeners = [
            Listener(TransportKind.UDP, s.sip_host, s.sip_udp_port, "sip_udp_port"),
            Listener(TransportKind.TCP, s.sip_host, s.sip_tcp_port, "sip_tcp_port"),
            Listener(TransportKind.WS, s.sip_host, s.sip_ws_port, "sip_ws_port"),
        ]
        if self.transport.server_tls is not None:
            listeners += [
                Listener(TransportKind.TLS, s.sip_host, s.sip_tls_port, "sip_tls_port"),
                Listener(TransportKind.WSS, s.sip_host, s.sip_wss_port, "sip_wss_port"),
            ]
        else:
            log.warning("TLS and WSS are off: set ECHODESK_SIGNALING_TLS_CERT_FILE and _KEY_FILE")
        for listener in listeners:
            try:
                await self.transport.listen(listener)
            except OSError as exc:
                await self.transport.close()
                if is_address_in_use(exc):
                    raise PortInUse(SignalingSettings, listener.setting, listener.port) from exc
                raise
        self._housekeeping_at = self._now() + HOUSEKEEPING_S
        self._arm()
        if not self._collector_tuned:
            self._collector_tuned = True
            _collector.started()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._collector_tuned:
            self._collector_tuned = False
            _collector.stopped()
        await self.transport.close()

    # --- transport callbacks (Endpoint) ------------------------------------------------------

    def message_received(self, message: Request | Response, flow: Flow) -> None:
        now = self._now()
        if isinstance(message, Response):
            self._run(self.transactions.receive_response(message, flow, now), now)
            return
        verdict = self.guard.check(flow.remote[0], message.headers.get("User-Agent"), now)
        if verdict is not Verdict.ALLOW:
            # Scanners, floods and banned sources get silence, not an answer to learn from.
            DROPPED.labels(verdict.value).inc()
            return
        self._run(self.transactions.receive_request(message, _response_flow(message, flow), now), now)

    def flow_closed(self, flow: Flow) -> None:
        gone = self.registrar.flow_closed(flow)
        self._bindings_gone(gone)
        for handler in self._flow_handlers:
            handler(flow, gone)

    def on_flow_closed(self, handler: Callable[[Flow, list[Binding]], None]) -> None:
        """Be told when a connection closes, with the registrations it carried (the calls on it
        must end or wait for the agent to come back, never leak)."""
        self._flow_handlers.append(handler)

    def on_binding_added(self, handler: Callable[[Binding, Binding | None], None]) -> None:
        """Be told of every new registration, with the one of the same RFC 5626 instance it
        replaced (an agent back on a new connection while the old one is not known closed yet)."""
        self._binding_handlers.append(handler)

    # --- extension points (calls) ---------------------------------------------------------------

    def handle(self, method: str, handler: RequestHandler) -> None:
        """Hand requests of ``method`` to ``handler`` (after the RFC 3261 8.2 checks)."""
        self._handlers[method] = handler
        if method not in self._methods:
            self._methods = (*self._methods, method)
        self._capabilities_headers = (
            ("Allow", ", ".join(self._methods)),
            ("Accept", ", ".join(ACCEPTED_CONTENT_TYPES)),
            SUPPORTED,
        )

    def accept(self, method: str, content_types: tuple[str, ...]) -> None:
        """Requests of ``method`` carry these bodies, not SDP and DTMF: others get 415 with them in
        Accept (RFC 3261 8.2.3)."""
        self._accepted[method] = content_types

    def on_stray_response(self, handler: StrayResponseHandler) -> None:
        self._stray = handler

    def respond(self, txn: ServerTransaction, response: Response) -> None:
        """Send a response a handler built on the request's server transaction."""
        if response.headers.get("Server") is None:
            response.headers.add("Server", self.server_header)
        self._count(txn.request.method, response.status_code)
        now = self._now()
        self._run(self.transactions.respond(txn, response, now), now)

    def send_ack(self, request: Request, flow: Flow) -> None:
        """An ACK for a 2xx goes out on its own, without a transaction (RFC 3261 17.1.1.3)."""
        try:
            self.transport.send(flow, request.encode())
        except TransportUnavailable as exc:
            log.info("ACK not sent", flow=str(flow), error=str(exc))

    # --- sending requests (trunks, calls) ----------------------------------------------------

    def send_request(self, request: Request, flow: Flow, on_response: ResponseHandler) -> ClientTransaction:
        now = self._now()
        txn, actions = self.transactions.send_request(request, flow, now)
        txn.owner = on_response
        self._run(actions, now)
        return txn

    # --- actions -----------------------------------------------------------------------------

    def _run(self, actions: list[Action], now: float) -> None:
        # Actions can start nested runs (a request handler responds); the timer is armed once, when
        # the outermost run is done.
        self._depth += 1
        try:
            self._run_queue(actions, now)
        finally:
            self._depth -= 1
        if not self._depth:
            self._arm()

    def _run_queue(self, actions: list[Action], now: float) -> None:
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            if isinstance(action, Transmit):
                try:
                    self.transport.send(action.destination, action.data)  # type: ignore[arg-type]
                except TransportUnavailable as exc:
                    log.info("send failed", flow=str(action.destination), error=str(exc))
                    if action.transaction is not None:
                        queue.extend(self.transactions.transport_failed(action.transaction))
            elif isinstance(action, RequestReceived):
                if action.transaction is not None:
                    self._on_request(action.transaction, action.request, action.destination, now)  # type: ignore[arg-type]
                elif (ack_handler := self._handlers.get("ACK")) is not None:
                    ack_handler(None, action.request, action.destination, now)  # type: ignore[arg-type]
            elif isinstance(action, ResponseReceived):
                if action.transaction is not None:
                    if callable(action.transaction.owner):
                        action.transaction.owner(action.transaction, action.response)
                elif self._stray is not None:
                    self._stray(action.response, action.destination, now)  # type: ignore[arg-type]
            elif isinstance(action, TimedOut | TransportFailed):
                txn = action.transaction
                if isinstance(txn, ClientTransaction) and callable(txn.owner):
                    txn.owner(txn, None)
            elif isinstance(action, Terminated):
                pass

    def _respond(
        self,
        txn: ServerTransaction,
        request: Request,
        status: int,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        response = make_response(
            request, status, reason, to_tag=txn.to_tag, headers=(("Server", self.server_header), *headers)
        )
        self._count(request.method, status)
        now = self._now()
        self._run(self.transactions.respond(txn, response, now), now)

    # --- requests ----------------------------------------------------------------------------

    def _on_request(self, txn: ServerTransaction, request: Request, flow: Flow, now: float) -> None:
        rejection = check_request(
            request,
            supported_methods=self._methods,
            supported_extensions=EXTENSIONS,
            accepted_content_types=self._accepted.get(request.method, ACCEPTED_CONTENT_TYPES),
        )
        if rejection is not None:
            self._count(request.method, rejection.status_code)
            rejection.headers.add("Server", self.server_header)
            self._run(self.transactions.respond(txn, rejection, now), now)
            return
        method = request.method
        handler = self._handlers.get(method)
        if handler is not None:
            handler(txn, request, flow, now)
        elif method == "REGISTER":
            self._on_register(txn, request, flow, now)
        elif method == "OPTIONS":
            self._respond(txn, request, 200, headers=self._capabilities_headers)
        elif method == "CANCEL":
            # Nothing here to cancel (RFC 3261 9.2).
            self._respond(txn, request, 481, "Call/Transaction Does Not Exist")

    def _count(self, method: str, status: int) -> None:
        # labels() costs more than the increment: keep each (method, status) child once resolved.
        key = (method, status)
        counter = self._requests.get(key)
        if counter is None:
            if len(self._requests) >= 1024:
                self._requests.clear()  # methods are tokens from outside: keep the table bounded
            counter = self._requests[key] = REQUESTS.labels(method, str(status))
        counter.inc()

    def authenticate(
        self, txn: ServerTransaction, request: Request, flow: Flow, now: float, *, domain: str
    ) -> AgentRecord | None:
        """The agent behind ``request``'s digest credentials, or None after answering it (RFC 3261 22).

        REGISTER is challenged with 401 (WWW-Authenticate), any other request with 407
        (Proxy-Authenticate) as a proxy would (22.3): SIP.js answers both.
        """
        proxy = request.method != "REGISTER"
        ip = flow.remote[0]
        digest = self._digest_for(domain, proxy=proxy)
        authorization = request.headers.get("Proxy-Authorization" if proxy else "Authorization")
        if authorization is None:
            self._challenge(txn, request, digest, now, ip)
            return None

        def lookup(username: str, algorithm: Algorithm) -> str | None:
            agent = self.directory.find(domain, username)
            if agent is None:
                return None
            return agent.ha1_sha256 if algorithm.base is Algorithm.SHA256 else agent.ha1_md5

        result = digest.verify(authorization, request.method, now, lookup, source=ip)
        if isinstance(result, DigestFailure):
            AUTH_FAILURES.labels(result.kind.value).inc()
            if result.kind is FailureKind.MALFORMED:
                header = "Proxy-Authorization" if proxy else "Authorization"
                self._respond(txn, request, 400, f"Bad {header} header: {result.reason}"[:120])
            elif result.kind is FailureKind.STALE_NONCE:
                self._challenge(txn, request, digest, now, ip, stale=True)
            else:
                if result.kind in (FailureKind.BAD_CREDENTIALS, FailureKind.UNKNOWN_USER):
                    banned = self.guard.auth_failed(ip, now)
                    log.info(
                        "authentication refused",
                        method=request.method,
                        source=str(flow),
                        user=result.username,
                        why=result.kind.value,
                        banned=banned,
                    )
                    if banned:
                        # RFC 3261 21.4.3: the credentials were tried too often; stop challenging.
                        self._respond(txn, request, 403, "Forbidden: too many failed attempts")
                        return None
                self._challenge(txn, request, digest, now, ip)
            return None
        agent = self.directory.find(domain, result.username)
        if agent is None:
            self._challenge(txn, request, digest, now, ip)
            return None
        self.guard.auth_succeeded(ip, now)
        return agent

    def _on_register(self, txn: ServerTransaction, request: Request, flow: Flow, now: float) -> None:
        to_uri = request.to.uri
        if not isinstance(to_uri, SipUri) or not to_uri.user:
            self._respond(txn, request, 404, "Not Found")
            return
        agent = self.authenticate(txn, request, flow, now, domain=to_uri.host.lower())
        if agent is None:
            return
        if agent.sip_username != to_uri.user:
            # RFC 3261 10.3 step 3: the authenticated user may only bind its own address.
            self._respond(txn, request, 403, "Authenticated user does not own this address")
            return
        aor = aor_of(agent)
        # The binding keeps the flow it came on: the connection, or the UDP source (its NAT binding),
        # never the Contact's private address (PEERS.md: the cause of one-way audio).
        outcome = self.registrar.register(request, aor, flow, now)
        if isinstance(outcome, Refused):
            self._respond(txn, request, outcome.status, outcome.reason, outcome.headers)
            return
        headers: list[tuple[str, str]] = [
            (
                "Contact",
                str(b.contact.with_params(b.contact.params.with_param("expires", str(b.remaining(now))))),
            )
            for b in outcome.bindings
        ]
        if outcome.outbound:
            headers.append(("Require", "outbound"))  # RFC 5626 6: the registrar supports outbound
        headers.append(SUPPORTED)
        self._respond(txn, request, 200, headers=tuple(headers))
        if outcome.added or outcome.removed:
            self._presence(aor, agent, outcome.bindings)
        for binding in outcome.added:
            replaced = next((old for old in outcome.removed if old.key == binding.key), None)
            for handler in self._binding_handlers:
                handler(binding, replaced)

    def _challenge(
        self,
        txn: ServerTransaction,
        request: Request,
        digest: DigestServer,
        now: float,
        ip: str,
        *,
        stale: bool = False,
    ) -> None:
        values = digest.challenges(now, stale=stale, source=ip)
        reason = "Proxy Authentication Required" if digest.status_code == 407 else "Unauthorized"
        headers = tuple((digest.challenge_header, v) for v in values)
        self._respond(txn, request, digest.status_code, reason, headers)

    def _digest_for(self, realm: str, *, proxy: bool = False) -> DigestServer:
        server = self._digest.get((realm, proxy))
        if server is None:
            server = DigestServer(
                realm,
                self._secret,
                nonce_lifetime=self.settings.sip_nonce_lifetime_s,
                algorithms=self._algorithms,
                proxy=proxy,
            )
            self._digest[(realm, proxy)] = server
        return server

    # --- presence ----------------------------------------------------------------------------

    def _bindings_gone(self, gone: list[Binding]) -> None:
        if not gone:
            return
        now = self._now()
        for aor in {b.aor for b in gone}:
            known = self._agents.get(aor)
            if known is not None:
                self._presence(aor, known.record, self.registrar.bindings(aor, now))

    def _presence(self, aor: str, agent: AgentRecord, bindings: tuple[Binding, ...]) -> None:
        self._agents[aor] = _Registered(agent, len(bindings))
        REGISTRATIONS.set(len(self.registrar))
        latest = max(bindings, key=lambda b: b.expires_at, default=None)
        data = AgentPresenceData(
            state=PresenceState.REGISTERED if bindings else PresenceState.UNREGISTERED,
            contacts=len(bindings),
            transport=latest.flow.transport.value if latest else None,
            source=str(latest.flow).split(":", 1)[1] if latest else None,
            user_agent=latest.user_agent[:200] if latest and latest.user_agent else None,
        )
        if not bindings:
            del self._agents[aor]
        self.publish(
            AgentPresence(
                tenant_id=agent.tenant_id, agent_id=agent.agent_id, source=self.server_header, data=data
            )
        )

    def bindings_of(self, agent: AgentRecord, now: float) -> tuple[Binding, ...]:
        """The agent's registered contacts, each with the flow to reach it over."""
        return self.registrar.bindings(aor_of(agent), now)

    def agent_removed(self, agent: AgentRecord) -> None:
        """The api deleted or disabled an agent: its registrations end now."""
        self._bindings_gone(self.registrar.remove_aor(aor_of(agent)))

    # --- time --------------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _arm(self) -> None:
        deadlines = [
            d
            for d in (
                self.transactions.next_deadline(),
                self.registrar.next_deadline(),
                self._housekeeping_at,
            )
            if d is not None
        ]
        if not deadlines:
            return
        when = min(deadlines)
        if self._armed_for is not None and self._armed_for <= when and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = when
        self._timer = asyncio.get_running_loop().call_at(when, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._armed_for = None
        now = self._now()
        actions = self.transactions.expire(now)
        self._bindings_gone(self.registrar.expire(now))
        if now >= self._housekeeping_at:
            for digest in self._digest.values():
                digest.forget_expired(now)
            self.guard.sweep(now)
            self._housekeeping_at = now + HOUSEKEEPING_S
        self._run(actions, now)


class _CollectorTuning:
    """Raises the young-generation threshold while any stack of the process runs (see
    GC_YOUNG_THRESHOLD), and puts back what was there when the last one stops."""

    def __init__(self) -> None:
        self._running = 0
        self._saved: tuple[int, int, int] | None = None

    def started(self) -> None:
        self._running += 1
        if self._running == 1:
            young, middle, old = self._saved = gc.get_threshold()
            if 0 < young < GC_YOUNG_THRESHOLD:
                gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)

    def stopped(self) -> None:
        self._running -= 1
        if self._running == 0 and self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None


_collector = _CollectorTuning()


def _digest_algorithms(text: str) -> tuple[Algorithm, ...]:
    algorithms = []
    for token in (t.strip() for t in text.split(",") if t.strip()):
        algorithm = Algorithm.from_token(token)
        if algorithm is None or not algorithm.available:
            raise ValueError(
                f"unknown digest algorithm {token!r} in ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS"
            )
        algorithms.append(algorithm)
    if not algorithms:
        raise ValueError("ECHODESK_SIGNALING_SIP_DIGEST_ALGORITHMS names no algorithm")
    return tuple(algorithms)


def _response_flow(request: Request, flow: Flow) -> Flow:
    """Where responses to ``request`` go (RFC 3261 18.2.2, RFC 3581 4).

    Connections: back on the same connection. UDP: to the source address when the client asked
    for rport (NAT); otherwise to the received address and the port in Via's sent-by.
    """
    if flow.reliable:
        return flow
    try:
        via = request.via
    except SipParseError:
        return flow
    if via.rport_requested:
        return flow
    port = via.port or 5060
    if port == flow.remote[1]:
        return flow
    return Flow(flow.transport, (flow.remote[0], port), flow.local, None)
