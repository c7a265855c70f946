"""What TCP, TLS and WebSocket connections share: identity, limits, idle timeout, closing."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from services.signaling.sip.limits import ParseLimits
from services.signaling.transport.endpoint import Endpoint
from services.signaling.transport.flow import Flow, TransportKind
from shared.logging import get_logger

log = get_logger("echodesk.signaling.transport")

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    #: A connection that has sent no whole message after this long is closed (slow-loris defence).
    first_message_timeout_s: float = 30.0
    #: A connection silent this long is closed; above a registration's life (RFC 5626 keeps flows alive).
    idle_timeout_s: float = 3900.0
    #: A peer that does not read what we send: past this many unsent bytes the connection is dropped.
    max_write_buffer: int = 1 << 20


class Connection(asyncio.Protocol):
    """One accepted or opened connection. Subclasses turn bytes into messages."""

    kind: TransportKind = TransportKind.TCP

    def __init__(
        self,
        endpoint: Endpoint,
        limits: ParseLimits,
        conn_limits: ConnectionLimits,
        on_open: Callable[[Connection], bool],
        on_close: Callable[[Connection], None],
    ) -> None:
        self.id = next(_ids)
        self.endpoint = endpoint
        self.limits = limits
        self.conn_limits = conn_limits
        self._on_open = on_open
        self._on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.flow: Flow | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self._messages = 0
        self._idle: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so this is a cast, not a check.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.flow = Flow(self.kind, (peer[0], peer[1]), (sock[0], sock[1]), self.id)
        if not self._on_open(self):
            self.transport.abort()
            return
        self._arm_idle(self.conn_limits.first_message_timeout_s)
        self.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(str(exc) if exc else "connection closed"))
        self._on_close(self)

    # --- for subclasses ----------------------------------------------------------------------

    def opened(self) -> None:
        """Connection is up (for WebSocket: the TCP/TLS part; the handshake comes next)."""
        if not self.ready.done():
            self.ready.set_result(None)

    def message_seen(self) -> None:
        self._messages += 1
        self._arm_idle(self.conn_limits.idle_timeout_s)

    def write(self, data: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() + len(data) > self.conn_limits.max_write_buffer:
            log.warning("peer not reading, dropping connection", flow=str(self.flow))
            transport.abort()
            return False
        transport.write(data)
        return True

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def send_message(self, data: bytes) -> bool:
        """Send one encoded SIP message on this connection."""
        return self.write(data)

    def _arm_idle(self, seconds: float) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        log.info("closing idle connection", flow=str(self.flow), messages=self._messages)
        self.close()
