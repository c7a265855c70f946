"""SIP over TCP and TLS (RFC 3261 18.3): messages framed by Content-Length on a byte stream."""

from __future__ import annotations

from services.signaling.sip.framing import FramingError, KeepAlivePing, MessageFrame, StreamFramer
from services.signaling.transport.connection import Connection
from services.signaling.transport.flow import TransportKind
from services.signaling.transport.inbound import deliver, reject

_PONG = b"\r\n"


class StreamConnection(Connection):
    kind = TransportKind.TCP
    _framer: StreamFramer | None = None

    def data_received(self, data: bytes) -> None:
        if self._framer is None:
            self._framer = StreamFramer(self.limits)
        assert self.flow is not None
        for event in self._framer.feed(data):
            if isinstance(event, MessageFrame):
                self.message_seen()
                deliver(event.data, self.flow, self.endpoint, self.limits, self.write)
            elif isinstance(event, KeepAlivePing):
                # RFC 5626 3.5.1: answer a double-CRLF ping with a single CRLF pong.
                self.message_seen()
                self.write(_PONG)
            elif isinstance(event, FramingError):
                # The stream cannot be framed any more: answer if we can, then close (RFC 3261 18.3).
                reject(event.error, self.flow, self.write)
                self.close()

    def eof_received(self) -> bool | None:
        return None


class TlsConnection(StreamConnection):
    kind = TransportKind.TLS
