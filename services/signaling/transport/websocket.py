"""SIP over WebSocket (RFC 7118): the browsers' transport.

The HTTP upgrade must ask for the ``sip`` subprotocol on the configured path (RFC 7118 4); each
WebSocket message then carries exactly one SIP message (RFC 7118 5), so no Content-Length framing.
wsproto does the WebSocket protocol, sans-I/O; this class only moves its bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from services.signaling.sip.limits import ParseLimits
from services.signaling.transport.connection import Connection, ConnectionLimits
from services.signaling.transport.endpoint import Endpoint
from services.signaling.transport.flow import TransportKind
from services.signaling.transport.inbound import deliver
from shared.logging import get_logger

log = get_logger("echodesk.signaling.transport")

SUBPROTOCOL = "sip"
#: RFC 6455 7.4.1: 1009 "message too big".
_TOO_BIG = 1009


class WebSocketConnection(Connection):
    kind = TransportKind.WS

    def __init__(
        self,
        endpoint: Endpoint,
        limits: ParseLimits,
        conn_limits: ConnectionLimits,
        on_open: Callable[[Connection], bool],
        on_close: Callable[[Connection], None],
        *,
        path: str,
    ) -> None:
        super().__init__(endpoint, limits, conn_limits, on_open, on_close)
        self.path = path
        self.ws = WSConnection(ConnectionType.SERVER)
        self.upgraded = False
        self._parts: list[bytes] = []
        self._size = 0

    def opened(self) -> None:
        # The SIP flow exists once the upgrade is accepted, not when TCP connects.
        return None

    def data_received(self, data: bytes) -> None:
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                self._handle(event)
        except (LocalProtocolError, RemoteProtocolError) as exc:
            log.info("websocket protocol error", flow=str(self.flow), error=str(exc))
            self.close()

    def eof_received(self) -> bool | None:
        self.ws.receive_data(None)
        return None

    def _handle(self, event: Event) -> None:
        if isinstance(event, Request):
            self._upgrade(event)
        elif isinstance(event, TextMessage | BytesMessage):
            chunk = event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)
            self._size += len(chunk)
            if self._size > self.limits.max_message_bytes:
                self._close(_TOO_BIG, "SIP message too large")
                return
            self._parts.append(chunk)
            if event.message_finished:
                message = b"".join(self._parts)
                self._parts.clear()
                self._size = 0
                self.message_seen()
                assert self.flow is not None
                deliver(message, self.flow, self.endpoint, self.limits, self.send_message)
        elif isinstance(event, Ping):
            self.message_seen()
            self.write(self.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if self.ws.state.name not in ("CLOSED", "LOCAL_CLOSING"):
                self.write(self.ws.send(event.response()))
            self.close()

    def _upgrade(self, request: Request) -> None:
        path = request.target.split("?", 1)[0]
        if path != self.path:
            self._refuse(404, f"no SIP WebSocket at {path}; use {self.path}")
            return
        if SUBPROTOCOL not in request.subprotocols:
            # RFC 7118 4: the client must ask for "sip"; without it we cannot know it speaks SIP.
            self._refuse(400, 'the WebSocket subprotocol "sip" is required (RFC 7118)')
            return
        self.write(self.ws.send(AcceptConnection(subprotocol=SUBPROTOCOL)))
        self.upgraded = True
        super().opened()

    def _refuse(self, status: int, reason: str) -> None:
        log.info("websocket upgrade refused", flow=str(self.flow), status=status, reason=reason)
        body = reason.encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        self.write(self.ws.send(RejectConnection(status_code=status, headers=headers, has_body=True)))
        self.write(self.ws.send(RejectData(data=body, body_finished=True)))
        self.close()

    def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(LocalProtocolError):
            self.write(self.ws.send(CloseConnection(code=code, reason=reason)))
        self.close()

    def send_message(self, data: bytes) -> bool:
        if not self.upgraded:
            return False
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self.write(self.ws.send(BytesMessage(data=data)))
        # Text frames: SIP is UTF-8 text, and that is what SIP.js and JsSIP expect to receive.
        return self.write(self.ws.send(TextMessage(data=text)))


class SecureWebSocketConnection(WebSocketConnection):
    kind = TransportKind.WSS
