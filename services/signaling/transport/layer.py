"""All SIP transports of one signaling instance: listeners, the connection table, and sending.

The core sends on a :class:`Flow`: a UDP flow goes out of the socket the request came in on, a
connection flow over that very connection (a browser behind NAT is reachable no other way,
RFC 5626). Requests towards carriers open (and then reuse) connections with :meth:`connect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter as Tally
from dataclasses import dataclass, field
from functools import partial

from prometheus_client import Gauge

from services.signaling.sip.limits import ParseLimits
from services.signaling.transport.connection import Connection, ConnectionLimits
from services.signaling.transport.endpoint import Endpoint
from services.signaling.transport.flow import Flow, TransportKind
from services.signaling.transport.stream import StreamConnection, TlsConnection
from services.signaling.transport.udp import UdpTransport
from services.signaling.transport.websocket import SecureWebSocketConnection, WebSocketConnection
from shared.logging import get_logger

log = get_logger("echodesk.signaling.transport")

CONNECTIONS = Gauge("echodesk_sip_connections", "Open SIP connections", ["transport"])


class TransportUnavailable(Exception):
    """A message could not be handed to the network (RFC 3261 17.1.4 transport error)."""


@dataclass(frozen=True)
class Listener:
    kind: TransportKind
    host: str
    port: int
    #: Setting that moves this port, named in the one-line error when it is taken.
    setting: str


@dataclass
class TransportLayer:
    endpoint: Endpoint
    limits: ParseLimits = field(default_factory=ParseLimits)
    conn_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    ws_path: str = "/ws"
    server_tls: ssl.SSLContext | None = None
    client_tls: ssl.SSLContext | None = None
    max_connections: int = 10000
    max_connections_per_ip: int = 100

    def __post_init__(self) -> None:
        self._udp: dict[tuple[str, int], UdpTransport] = {}
        self._servers: list[asyncio.Server] = []
        self._connections: dict[int, Connection] = {}
        self._per_ip: Tally[str] = Tally()
        #: Outgoing connections by (transport, host, port), reused for later requests (RFC 3261 18.1).
        self._outgoing: dict[tuple[TransportKind, str, int], Connection] = {}
        self.bound: dict[TransportKind, tuple[str, int]] = {}

    # --- listening -------------------------------------------------------------------------

    async def listen(self, listener: Listener) -> tuple[str, int]:
        """Start one listener; raises OSError (EADDRINUSE...) for the caller to report."""
        loop = asyncio.get_running_loop()
        kind = listener.kind
        if kind is TransportKind.UDP:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: UdpTransport(self.endpoint, self.limits),
                local_addr=(listener.host, listener.port),
            )
            sockname = transport.get_extra_info("sockname")
            address = (sockname[0], sockname[1])
            protocol.local = address
            self._udp[address] = protocol
        else:
            tls = self.server_tls if kind.secure else None
            if kind.secure and tls is None:
                raise ValueError(f"{kind.value} needs a TLS certificate")
            server = await loop.create_server(
                partial(self._protocol_for, kind), listener.host, listener.port, ssl=tls, reuse_address=True
            )
            self._servers.append(server)
            sockname = server.sockets[0].getsockname()
            address = (sockname[0], sockname[1])
        self.bound[kind] = address
        log.info("listening", transport=kind.value, address=f"{address[0]}:{address[1]}")
        return address

    def _protocol_for(self, kind: TransportKind) -> Connection:
        args = (self.endpoint, self.limits, self.conn_limits, self._opened, self._closed)
        if kind is TransportKind.TCP:
            return StreamConnection(*args)
        if kind is TransportKind.TLS:
            return TlsConnection(*args)
        if kind is TransportKind.WS:
            return WebSocketConnection(*args, path=self.ws_path)
        return SecureWebSocketConnection(*args, path=self.ws_path)

    def _opened(self, connection: Connection) -> bool:
        assert connection.flow is not None
        ip = connection.flow.remote[0]
        if len(self._connections) >= self.max_connections or self._per_ip[ip] >= self.max_connections_per_ip:
            log.warning("connection refused: limit reached", flow=str(connection.flow))
            return False
        self._connections[connection.id] = connection
        self._per_ip[ip] += 1
        CONNECTIONS.labels(connection.kind.value).inc()
        return True

    def _closed(self, connection: Connection) -> None:
        if self._connections.pop(connection.id, None) is None:
            return
        assert connection.flow is not None
        ip = connection.flow.remote[0]
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
        CONNECTIONS.labels(connection.kind.value).dec()
        for key, outgoing in list(self._outgoing.items()):
            if outgoing is connection:
                del self._outgoing[key]
        self.endpoint.flow_closed(connection.flow)

    # --- sending ---------------------------------------------------------------------------

    def send(self, flow: Flow, data: bytes) -> None:
        """Send on ``flow``; raises :class:`TransportUnavailable` when it is gone."""
        if flow.connection_id is None:
            udp = self._udp.get(flow.local) or next(iter(self._udp.values()), None)
            if udp is None or not udp.sendto(data, flow.remote):
                raise TransportUnavailable(f"no UDP socket for {flow}")
            return
        connection = self._connections.get(flow.connection_id)
        if connection is None or not connection.send_message(data):
            raise TransportUnavailable(f"connection {flow} is closed")

    def send_udp(self, remote: tuple[str, int], data: bytes) -> Flow:
        """Send a datagram from our (first) UDP listener; returns the flow it went on."""
        udp = next(iter(self._udp.values()), None)
        if udp is None or not udp.sendto(data, remote):
            raise TransportUnavailable("no UDP listener")
        return Flow(TransportKind.UDP, remote, udp.local)

    async def connect(self, kind: TransportKind, host: str, port: int, *, timeout: float = 5.0) -> Flow:
        """A flow to ``host:port`` over TCP or TLS, reusing an open connection when there is one."""
        if kind is TransportKind.UDP:
            udp = next(iter(self._udp.values()), None)
            if udp is None:
                raise TransportUnavailable("no UDP listener")
            return Flow(TransportKind.UDP, (host, port), udp.local)
        if kind not in (TransportKind.TCP, TransportKind.TLS):
            raise TransportUnavailable(f"outgoing {kind.value} connections are not supported")
        key = (kind, host, port)
        existing = self._outgoing.get(key)
        if existing is not None and existing.flow is not None and existing.transport is not None:
            return existing.flow
        loop = asyncio.get_running_loop()
        tls = (self.client_tls or ssl.create_default_context()) if kind.secure else None
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await loop.create_connection(
                    partial(self._protocol_for, kind),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
                await protocol.ready
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise TransportUnavailable(f"cannot connect to {kind.value}:{host}:{port}: {exc}") from exc
        assert protocol.flow is not None
        self._outgoing[key] = protocol
        return protocol.flow

    def connection(self, flow: Flow) -> Connection | None:
        return None if flow.connection_id is None else self._connections.get(flow.connection_id)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # --- stopping --------------------------------------------------------------------------

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self._connections.values()):
            connection.close()
        for udp in self._udp.values():
            if udp.transport is not None:
                udp.transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


__all__ = ["Listener", "TransportLayer", "TransportUnavailable"]
