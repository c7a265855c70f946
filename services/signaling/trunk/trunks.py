"""Every trunk's registration with its carrier and its keep-alive, run on the event loop.

The trunks come from the api's KV bucket ``trunks``; a change there re-registers the trunk at once,
without a restart. Each trunk's sans-I/O :class:`RegistrationClient` decides what to send and
when; this class resolves the carrier's address, sends through the SIP stack, feeds the answers
back, drives the clients' timers, and publishes a ``trunk.registration`` event on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable

from pydantic import ValidationError

from services.signaling.sip.auth import DigestClient
from services.signaling.sip.message import Request, Response
from services.signaling.sip.transaction import ClientTransaction
from services.signaling.stack import SipStack
from services.signaling.transport.flow import Flow, TransportKind
from services.signaling.transport.layer import TransportUnavailable
from services.signaling.trunk.registration import (
    RegistrationClient,
    SendRequest,
    TrunkConfig,
    TrunkStatus,
)
from shared.events import EventEnvelope, TrunkRegistration, TrunkRegistrationData, TrunkState
from shared.logging import get_logger
from shared.records import TrunkRecord, TrunkTransport
from shared.sealing import SealError, unseal
from shared.settings import SignalingSettings

log = get_logger("echodesk.signaling.trunks")

_CLIENT_TRANSPORTS = {
    TrunkTransport.UDP: TransportKind.UDP,
    TrunkTransport.TCP: TransportKind.TCP,
    TrunkTransport.TLS: TransportKind.TLS,
}


class Trunks:
    def __init__(
        self, stack: SipStack, settings: SignalingSettings, publish: Callable[[EventEnvelope], None]
    ) -> None:
        self.stack = stack
        self.settings = settings
        self.publish = publish
        self._records: dict[str, TrunkRecord] = {}
        #: The last record of every trunk ever seen, so a deleted trunk's last events still name it.
        self._identity: dict[str, TrunkRecord] = {}
        self._clients: dict[str, RegistrationClient] = {}
        #: The carrier's addresses per trunk: what an inbound call's source is matched against.
        self._addresses: dict[str, frozenset[str]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set while stopping, once every trunk's un-REGISTER got its answer.
        self._stopped: asyncio.Event | None = None

    # --- configuration ----------------------------------------------------------------------

    def apply(self, key: str, value: bytes | None) -> None:
        """One change of the KV bucket ``trunks`` (None: the trunk was deleted)."""
        now = self._now()
        record: TrunkRecord | None = None
        if value is not None:
            try:
                record = TrunkRecord.model_validate_json(value)
            except ValidationError as exc:
                log.error("invalid trunk record ignored", key=key, error=str(exc).splitlines()[0])
                return
        client = self._clients.get(key)
        if record is None or not record.is_active:
            self._records.pop(key, None)
            self._addresses.pop(key, None)
            if client is not None:
                self._run(key, client.stop(now))
            return
        self._records[key] = record
        self._identity[key] = record
        self._learn_addresses(key, record)
        try:
            config = self._config(record)
        except (ValueError, SealError) as exc:
            self._report(
                record, TrunkStatus(TrunkState.FAILED, record.sip_server, None, str(exc), None, None)
            )
            if client is not None:
                self._run(key, client.stop(now))
            return
        if client is None or client.finished:
            client = RegistrationClient(config)
            self._clients[key] = client
            self._run(key, client.start(now))
        else:
            self._run(key, client.reconfigure(config, now))

    def _config(self, record: TrunkRecord) -> TrunkConfig:
        transport = _CLIENT_TRANSPORTS.get(record.transport)
        if transport is None:
            raise ValueError(
                f"registering over {record.transport.value} is not supported; use udp, tcp or tls"
            )
        password = None
        if record.password_sealed is not None:
            if not self.settings.secret_key:
                raise SealError("the trunk has a password but ECHODESK_SECRET_KEY is not set")
            password = unseal(record.password_sealed, self.settings.secret_key)
        host = self.contact_host(record.sip_server)
        port = self.stack.transport.bound.get(transport, ("", 5060))[1]
        user = record.username or "echodesk"
        contact = f"sip:{user}@{host}:{port}" + (
            "" if transport is TransportKind.UDP else f";transport={transport}"
        )
        return TrunkConfig(
            trunk_id=record.trunk_id,
            registrar_host=record.sip_server,
            registrar_port=record.sip_port,
            transport=transport.value,  # type: ignore[arg-type]
            contact=contact,
            register=record.registers and bool(record.username),
            aor_user=record.username,
            aor_domain=record.domain or record.sip_server,
            auth_username=record.auth_username or record.username,
            password=password,
            realm=record.realm,
            expires_s=record.expires_s,
            keepalive_s=record.keepalive_s,
            user_agent=self.stack.server_header,
        )

    def contact_host(self, carrier: str) -> str:
        """The address carriers reach us at: the configured public one, else the local address the
        kernel would use towards the carrier (a UDP connect sends nothing)."""
        if self.settings.sip_public_host:
            return self.settings.sip_public_host
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((carrier, 5060))
                host: str = probe.getsockname()[0]
                return host
        except OSError:
            return "127.0.0.1"

    # --- for calls ------------------------------------------------------------------------------

    def active(self) -> list[TrunkRecord]:
        """The active trunks, for the dial plan."""
        return list(self._records.values())

    def carriers_at(self, flow: Flow) -> list[TrunkRecord]:
        """The trunks whose carrier a request on ``flow`` comes from: its address is the carrier's
        and, over UDP, so is its port (a carrier sends from its SIP port, RFC 3261 18.2.1; a
        connection's source port is ephemeral). Never anybody else: an unknown source is no carrier,
        and nor is a WebSocket (RFC 7118 is how browsers speak SIP; carriers use UDP, TCP or TLS), so a
        browser on the carrier's host is still an agent."""
        if flow.transport in (TransportKind.WS, TransportKind.WSS):
            return []
        host, port = flow.remote
        found: list[TrunkRecord] = []
        for key, record in self._records.items():
            if host not in self._addresses.get(key, ()):
                continue
            if flow.transport is TransportKind.UDP and port != (record.sip_port or 5060):
                continue
            found.append(record)
        return found

    def _learn_addresses(self, key: str, record: TrunkRecord) -> None:
        host = record.sip_server
        try:
            self._addresses[key] = frozenset({str(ipaddress.ip_address(host))})
            return
        except ValueError:
            pass

        async def resolve() -> None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.warning("carrier address unknown", trunk=record.trunk_id, error=str(exc))
                return
            if self._records.get(key) is record:
                self._addresses[key] = frozenset(str(info[4][0]) for info in infos)

        task = asyncio.ensure_future(resolve())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def credentials(self, record: TrunkRecord) -> DigestClient | None:
        """The trunk's digest credentials for answering a carrier's challenge to a call."""
        if record.password_sealed is None or not self.settings.secret_key:
            return None
        username = record.auth_username or record.username
        return DigestClient(username, password=unseal(record.password_sealed, self.settings.secret_key))

    async def flow_to(self, record: TrunkRecord) -> Flow:
        """The flow calls to this trunk's carrier go out on (a UDP path or a reused connection)."""
        kind = _CLIENT_TRANSPORTS.get(record.transport)
        if kind is None:
            raise TransportUnavailable(f"calls over {record.transport.value} are not supported")
        port = record.sip_port or (5061 if kind is TransportKind.TLS else 5060)
        return await self._open(kind, record.sip_server, port)

    async def _open(self, kind: TransportKind, host: str, port: int) -> Flow:
        """A flow to a carrier: UDP needs an address, connections resolve the name themselves."""
        address = await self._resolve(host) if kind is TransportKind.UDP else host
        return await self.stack.transport.connect(kind, address, port)

    # --- actions ----------------------------------------------------------------------------

    def _run(self, key: str, actions: list[SendRequest | TrunkStatus]) -> None:
        client = self._clients.get(key)
        for action in actions:
            if isinstance(action, SendRequest):
                task = asyncio.create_task(self._send(key, action))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif (record := self._identity.get(key)) is not None:
                self._report(record, action)
        if client is not None and client.finished and key not in self._records:
            del self._clients[key]
        if self._stopped is not None and not self._clients:
            self._stopped.set()
        self._arm()

    def _report(self, record: TrunkRecord, status: TrunkStatus) -> None:
        data: TrunkRegistrationData = status.data()
        log.info(
            "trunk state",
            trunk=record.trunk_id,
            state=data.state.value,
            sip_status=data.sip_status,
            reason=data.reason,
        )
        self.publish(
            TrunkRegistration(
                tenant_id=record.tenant_id,
                trunk_id=record.trunk_id,
                source=self.stack.server_header,
                data=data,
            )
        )

    async def _send(self, key: str, action: SendRequest) -> None:
        client = self._clients.get(key)
        if client is None:
            return
        kind = TransportKind(action.transport)
        try:
            flow = await self._open(kind, action.host, action.port)
        except (TransportUnavailable, OSError) as exc:
            self._run(key, client.on_transport_error(action.request, self._now(), str(exc)))
            return

        def on_response(_txn: ClientTransaction, response: Response | None) -> None:
            self._answer(key, client, action.request, response)

        self.stack.send_request(action.request, flow, on_response)

    def _answer(
        self, key: str, client: RegistrationClient, request: Request, response: Response | None
    ) -> None:
        if self._clients.get(key) is not client:
            return  # a late answer for a client that was replaced
        now = self._now()
        if response is None:
            self._run(key, client.on_timeout(request, now))
        else:
            self._run(key, client.on_response(response, now))

    @staticmethod
    async def _resolve(host: str) -> str:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM
        )
        if not infos:
            raise OSError(f"cannot resolve {host}")
        return str(infos[0][4][0])

    # --- time -------------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _arm(self) -> None:
        deadlines = [d for c in self._clients.values() if (d := c.next_deadline()) is not None]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadlines:
            self._timer = asyncio.get_running_loop().call_at(min(deadlines), self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self._now()
        for key, client in list(self._clients.items()):
            deadline = client.next_deadline()
            if deadline is not None and deadline <= now:
                self._run(key, client.on_timer(now))
        self._arm()

    async def stop(self) -> None:
        """Un-register every trunk (RFC 3261 10.2.2) and give the carriers a moment to answer."""
        now = self._now()
        for key, client in list(self._clients.items()):
            self._records.pop(key, None)
            self._run(key, client.stop(now))
        if self._clients:
            self._stopped = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._stopped.wait()
        if self._timer is not None:
            self._timer.cancel()

    @property
    def count(self) -> int:
        return len(self._clients)
