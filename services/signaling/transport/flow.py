"""A flow: the path one message came on, and how to answer it (RFC 5626 3, RFC 3261 18.2.2)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TransportKind(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"
    WS = "ws"
    WSS = "wss"

    @property
    def reliable(self) -> bool:
        """Reliable transports need no retransmissions (RFC 3261 17.1.1.2)."""
        return self is not TransportKind.UDP

    @property
    def secure(self) -> bool:
        return self in (TransportKind.TLS, TransportKind.WSS)

    @property
    def via_token(self) -> str:
        """The transport as Via's sent-protocol names it (RFC 3261 20.42, RFC 7118 5.2)."""
        return self.value.upper()


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a message came from: the transport, both ends, and for connections which one.

    A browser behind NAT can only be reached over the very WebSocket it registered on (PEERS.md),
    so a flow on a connection names the connection; a UDP flow is just the 5-tuple.
    """

    transport: TransportKind
    remote: tuple[str, int]
    local: tuple[str, int]
    connection_id: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport.reliable

    def __str__(self) -> str:
        host, port = self.remote
        shown = f"[{host}]" if ":" in host else host
        return f"{self.transport.value}:{shown}:{port}"
