"""SIP over UDP (RFC 3261 18): one datagram, one message."""

from __future__ import annotations

import asyncio
from typing import cast

from services.signaling.sip.limits import ParseLimits
from services.signaling.transport.endpoint import Endpoint
from services.signaling.transport.flow import Flow, TransportKind
from services.signaling.transport.inbound import deliver


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(self, endpoint: Endpoint, limits: ParseLimits) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("0.0.0.0", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport, so no isinstance here.
        self.transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local = (sockname[0], sockname[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # Keep-alives over UDP are CRLFs (or STUN, RFC 5626 4.4.1); neither carries a message.
        if not data.strip(b"\r\n"):
            return
        remote = (addr[0], addr[1])  # IPv6 adds flowinfo and scope id: keep host and port
        flow = Flow(TransportKind.UDP, remote, self.local)
        deliver(data, flow, self.endpoint, self.limits, lambda out: self.sendto(out, remote))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: the transaction layer times out instead.
        return None

    def sendto(self, data: bytes, remote: tuple[str, int]) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.sendto(data, remote)
        return True
