"""The UDP ports of RTP legs: even RTP ports with RTCP on the next odd one (RFC 3550 section 11).

Ports are handed out round robin over the configured range, so a port just released is the last to
come back (late packets of an ended call do not reach the next one). A port another process holds is
skipped: binding is the only test of that which does not race.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
from collections.abc import Callable
from typing import TypeVar

from shared.service import is_address_in_use

P = TypeVar("P", bound=asyncio.DatagramProtocol)
R = TypeVar("R", bound=asyncio.DatagramProtocol)


class PortsExhausted(Exception):
    """Every even port of the range is in use (by us or by others)."""


class PortRange:
    """Even ports of ``[low, high]`` whose odd successor is in the range too."""

    def __init__(self, low: int, high: int) -> None:
        first = low + (low & 1)
        if not 0 < first < high <= 65535:
            raise ValueError(f"RTP port range {low}-{high} holds no even port with an odd one after it")
        self.low = first
        self.high = high
        self.count = (high - first + 1) // 2
        self.in_use: set[int] = set()
        self._next = 0

    async def bind(
        self, host: str, rtp: Callable[[], P], rtcp: Callable[[], R]
    ) -> tuple[int, asyncio.DatagramTransport, P, asyncio.DatagramTransport, R]:
        """Bind an RTP and an RTCP socket on the next free pair; raises :class:`PortsExhausted`."""
        loop = asyncio.get_running_loop()
        family = _family(host)
        for _ in range(self.count):
            port = self.low + 2 * self._next
            self._next = (self._next + 1) % self.count
            if port in self.in_use:
                continue
            try:
                rtp_socket = _bound(family, host, port)
            except OSError as exc:
                if is_address_in_use(exc):
                    continue
                raise
            try:
                rtcp_socket = _bound(family, host, port + 1)
            except OSError as exc:
                rtp_socket.close()
                if is_address_in_use(exc):
                    continue
                raise
            rtp_transport, rtp_protocol = await loop.create_datagram_endpoint(rtp, sock=rtp_socket)
            rtcp_transport, rtcp_protocol = await loop.create_datagram_endpoint(rtcp, sock=rtcp_socket)
            self.in_use.add(port)
            return port, rtp_transport, rtp_protocol, rtcp_transport, rtcp_protocol
        raise PortsExhausted(f"no free RTP port pair in {self.low}-{self.high}")

    def release(self, port: int) -> None:
        with contextlib.suppress(KeyError):
            self.in_use.remove(port)


@functools.lru_cache(maxsize=16)
def _family(host: str) -> socket.AddressFamily:
    """The address family of the bind address (a setting: a name is resolved once, not per leg)."""
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host.strip("[]")).version == 6 else socket.AF_INET
    except ValueError:
        return socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][0]


def _bound(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port``.

    Binding it here and handing it to the loop (``sock=``) costs about half of
    ``create_datagram_endpoint(local_addr=...)``, which resolves the address again for every socket
    of every leg, and a taken port fails here, before the loop holds anything of it.
    """
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    return sock


__all__ = ["PortRange", "PortsExhausted"]
