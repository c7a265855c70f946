"""Where webhooks may be sent: never to the api's own neighbourhood (SSRF).

A subscription's URL is a request the api makes on a tenant's behalf from inside the deployment:
without a guard, ``http://169.254.169.254/`` reads the cloud's instance metadata (credentials),
``http://10.0.0.5:8222/`` a NATS monitor, ``http://localhost:8000/`` the api itself. So a host
that resolves to a loopback, link-local (metadata), private, shared (CGNAT), multicast, reserved or
unspecified address is refused, unless ``ECHODESK_API_WEBHOOK_ALLOW_PRIVATE_TARGETS`` says the
helpdesk lives on the private network.

The check is made when a URL is saved (a 422 naming ``url``) and again before every delivery, on
the addresses the delivery then connects to: a name that resolved to a public address when it was
saved and to ``127.0.0.1`` now (DNS rebinding) is refused at delivery too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Resolves a host name to its addresses (tests give their own; the default asks the system).
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

#: How long a name may take to resolve before the URL is refused (s).
RESOLVE_TIMEOUT_S = 5.0

#: Cloud instance metadata services, named so a refusal says what the address is.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task credentials
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
}


class TargetRefused(Exception):
    """The URL's host is not one webhooks may reach; the message says which address and why."""


@dataclass(frozen=True)
class Target:
    """A URL checked for sending: its host and port and the addresses it may be sent to."""

    host: str
    port: int
    addresses: list[IPAddress]


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is no place for a webhook, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1 (RFC 4291 2.5.5.2)
    if address in _METADATA:
        return "a cloud metadata service"
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified (this host)"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "not a public address"  # shared (100.64/10, RFC 6598), documentation, reserved
    return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None  # a name (or a numeric form only a resolver reads, as 0x7f000001)


async def _addresses(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            addresses = await resolver(host, port)
    except (OSError, UnicodeError, TimeoutError) as exc:
        raise TargetRefused(f"host {host} does not resolve ({exc or type(exc).__name__})") from None
    if not addresses:
        raise TargetRefused(f"host {host} does not resolve")
    return addresses


async def check_url(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> Target:
    """The addresses ``url`` may be sent to; :class:`TargetRefused` when any is not allowed.

    Every address the name resolves to must pass, not just one: a client may connect to any of
    them, and a rebinding name answers with a mix."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None or parts.scheme not in ("http", "https"):
        raise TargetRefused("must be an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("has a port that is not a number from 0 to 65535") from None
    addresses = await _addresses(host, port, resolver)
    if not allow_private:
        for address in addresses:
            why = refusal(address)
            if why is not None:
                literal = _literal(host) is not None
                shown = host if literal else f"{host} resolves to {address}"
                raise TargetRefused(
                    f"{shown}, {why}: webhooks go to public addresses only "
                    "(ECHODESK_API_WEBHOOK_ALLOW_PRIVATE_TARGETS allows private ones)"
                )
    return Target(host, port, addresses)


__all__ = ["Resolver", "Target", "TargetRefused", "check_url", "refusal", "system_resolver"]
