"""Configuration records the api writes to NATS KV and the other services read (buckets ``agents``,
``trunks``, ``tenants``). The api owns them; the others only watch. Keys are built here and nowhere
else."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from shared.events import E164, ContractModel, Token

_HEX32 = r"^[0-9a-f]{32}$"
_HEX64 = r"^[0-9a-f]{64}$"
#: SIP user part characters that are also safe in a KV key (RFC 3261 25.1 unreserved, minus a few).
SipUsername = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.!~*'()+\-]{1,64}$")]
SipDomain = Annotated[str, Field(pattern=r"^[A-Za-z0-9.\-]{1,253}$")]


class TrunkTransport(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"
    WS = "ws"
    WSS = "wss"


class AgentRecord(ContractModel):
    """An agent's SIP identity: what the registrar challenges against. Never a clear password:
    only the digest HA1 values (RFC 7616 3.4.2), which are useless at another realm."""

    tenant_id: Token
    agent_id: Token
    extension: str = Field(pattern=r"^[0-9]{2,8}$")
    sip_username: SipUsername
    #: The tenant's SIP domain; also the digest realm agents authenticate in.
    domain: SipDomain
    ha1_md5: str = Field(pattern=_HEX32)
    ha1_sha256: str = Field(pattern=_HEX64)
    display_name: str | None = Field(default=None, max_length=128)
    ring_groups: tuple[Token, ...] = ()
    enabled: bool = True
    max_concurrent_calls: int = Field(default=2, ge=0, le=100)


def digest_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """HA1 = H(username ":" realm ":" password) (RFC 7616 3.4.2), what the registrar stores."""
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]
    return hashlib.new(name, f"{username}:{realm}:{password}".encode()).hexdigest()


def agent_record(
    *,
    tenant_id: str,
    agent_id: str,
    extension: str,
    sip_username: str,
    domain: str,
    password: str,
    display_name: str | None = None,
    ring_groups: tuple[str, ...] = (),
) -> AgentRecord:
    """An agent record from a clear password, which is hashed here and not kept."""
    return AgentRecord(
        tenant_id=tenant_id,
        agent_id=agent_id,
        extension=extension,
        sip_username=sip_username,
        domain=domain.lower(),
        ha1_md5=digest_ha1(sip_username, domain.lower(), password, "MD5"),
        ha1_sha256=digest_ha1(sip_username, domain.lower(), password, "SHA-256"),
        display_name=display_name,
        ring_groups=ring_groups,
    )


class TrunkRecord(ContractModel):
    """A trunk (the old product's "SIP configuration"): how to reach a carrier and what it may do.

    The password travels sealed (:mod:`shared.sealing`) and is opened only by signaling.
    """

    tenant_id: Token
    trunk_id: Token
    name: str = Field(min_length=1, max_length=128)
    sip_server: SipDomain
    sip_port: int | None = Field(default=None, ge=1, le=65535)
    transport: TrunkTransport = TrunkTransport.UDP
    #: User part of the registration's address of record; empty for IP-authenticated trunks.
    username: str = Field(default="", max_length=128)
    auth_username: str | None = Field(default=None, max_length=128)
    password_sealed: str | None = None
    realm: str | None = None
    #: Domain of the address of record when it is not the server's name.
    domain: SipDomain | None = None
    registers: bool = True
    expires_s: int = Field(default=3600, ge=60, le=86400)
    keepalive_s: float = Field(default=30.0, ge=5, le=3600)
    is_active: bool = True
    is_default: bool = False
    default_region: str = Field(default="GE", pattern=r"^[A-Z]{2}$")
    dids: tuple[str, ...] = ()
    #: Calls to this trunk's numbers ring the agents of this group; None rings every agent of the tenant.
    ring_group: Token | None = None
    allowed_prefixes: tuple[str, ...] = ()
    max_concurrent_calls: int = Field(default=30, ge=0)
    #: Where requests to the carrier are sent instead of ``sip_server`` (RFC 3261 8.1.2), as
    #: ``host[:port]`` or a SIP URI; None: straight to the server.
    outbound_proxy: str | None = Field(default=None, max_length=255)
    #: HTTP path of the carrier's WebSocket endpoint for ``ws``/``wss`` trunks (RFC 7118).
    websocket_path: str | None = Field(default=None, max_length=255)


class TenantRecord(ContractModel):
    """A tenant's recording policy: signaling reads whether to record its calls, the recorders how
    long to keep its recordings. A tenant with no record follows the platform's defaults."""

    tenant_id: Token
    #: None: the platform's default (signaling's ``ECHODESK_SIGNALING_RECORD_CALLS``).
    record_calls: bool | None = None
    #: Recordings are deleted this many days after they were stored; None: kept until deleted on request.
    recording_retention_days: int | None = Field(default=None, ge=1, le=36500)


class ContactLink(ContractModel):
    """The helpdesk's own id for one customer's number in a tenant (KV ``contacts``, written by the
    api for an integrator): every later call and message event for that number carries it."""

    tenant_id: Token
    number: E164
    contact_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")


def _safe(part: str) -> str:
    """KV keys allow ``[-/_=.a-zA-Z0-9]``; escape anything else so every key is valid and unique."""
    return re.sub(r"[^A-Za-z0-9_.\-]", lambda m: f"={ord(m.group()):02X}", part)


def agent_key(domain: str, sip_username: str) -> str:
    """KV ``agents`` key: the registrar looks an agent up by the domain and user it registers as."""
    return f"{_safe(domain.lower())}/{_safe(sip_username)}"


def trunk_key(tenant_id: str, trunk_id: str) -> str:
    return f"{_safe(tenant_id)}/{_safe(trunk_id)}"


def tenant_key(tenant_id: str) -> str:
    return _safe(tenant_id)


def contact_key(tenant_id: str, number: str) -> str:
    """KV ``contacts`` key: a tenant's customer number (E.164)."""
    return f"{_safe(tenant_id)}/{_safe(number)}"
