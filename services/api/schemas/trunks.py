"""Trunk bodies. Passwords are write-only: a response says whether one is set, never what it is."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, model_validator

from services.api.db import TurnCredential
from services.api.schemas.common import Body, Region, Secret
from shared.records import TrunkTransport

_HOST = r"(?:[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])"
_PORT = r"(?::[0-9]{1,5})?"

Name = Annotated[str, Field(min_length=1, max_length=128, examples=["Magti"])]
Host = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9.\-]{1,253}$",
        examples=["sip.example.ge"],
        description="Host name or IPv4 address of the carrier's SIP server",
    ),
]
Port = Annotated[int, Field(ge=1, le=65535, examples=[5060])]
WebSocketPath = Annotated[str, Field(pattern=r"^/[A-Za-z0-9._~!$&'()*+,;=:@/%\-]{0,254}$", examples=["/ws"])]
Username = Annotated[str, Field(max_length=128)]
Realm = Annotated[str, Field(min_length=1, max_length=255)]
OutboundProxy = Annotated[
    str,
    Field(
        pattern=rf"^(?:sips?:)?{_HOST}{_PORT}(?:;[A-Za-z0-9=.\-]+)*$",
        max_length=255,
        examples=["sip:proxy.example.ge:5060;transport=tcp"],
    ),
]
StunUrl = Annotated[
    str,
    Field(pattern=rf"^stuns?:{_HOST}{_PORT}$", max_length=255, examples=["stun:stun.l.google.com:19302"]),
]
TurnUrl = Annotated[
    str,
    Field(
        pattern=rf"^turns?:{_HOST}{_PORT}(?:\?transport=(?:udp|tcp))?$",
        max_length=255,
        examples=["turn:turn.example.ge:3478?transport=udp"],
    ),
]
Did = Annotated[str, Field(min_length=1, max_length=64, examples=["+99532200000"])]
Prefix = Annotated[
    str, Field(pattern=r"^\+[0-9]{1,15}$", examples=["+995"], description="E.164 prefix, with its '+'")
]
Calls = Annotated[int, Field(ge=0, le=10000)]
Expires = Annotated[int, Field(ge=60, le=86400)]
Keepalive = Annotated[float, Field(ge=5, le=3600)]


class _Seed(Body):
    @model_validator(mode="before")
    @classmethod
    def _single_stun_server(cls, data: Any) -> Any:
        """The old product's form had one ``stun_server``; it is taken as a list of one."""
        if isinstance(data, dict) and "stun_server" in data and "stun_servers" not in data:
            data = dict(data)
            single = data.pop("stun_server")
            data["stun_servers"] = [] if single is None else [single]
        return data


class TrunkCreate(_Seed):
    name: Name
    sip_server: Host
    sip_port: Port | None = Field(None, description="None: the transport's default (5060, 5061 for TLS)")
    transport: TrunkTransport = TrunkTransport.UDP
    websocket_path: WebSocketPath | None = Field(None, description="HTTP path of a ws/wss carrier")
    username: Username = Field("", description="User part of the registration; empty: IP authentication")
    auth_username: Username | None = Field(None, description="Digest user when it differs from username")
    password: Secret | None = Field(None, description="Write-only; stored sealed, never returned")
    realm: Realm | None = None
    domain: Host | None = Field(None, description="Domain of the address of record, if not sip_server")
    outbound_proxy: OutboundProxy | None = None
    stun_servers: list[StunUrl] = Field(default_factory=list, max_length=10)
    turn_server: TurnUrl | None = None
    turn_username: Username | None = None
    turn_password: Secret | None = Field(None, description="Write-only; stored sealed, never returned")
    turn_credential: TurnCredential = Field(
        TurnCredential.PASSWORD,
        description="password: turn_password is handed to softphones; shared_secret: it is the TURN "
        "server's REST secret and softphones get short-lived credentials made from it",
    )
    is_active: bool = True
    is_default: bool = Field(False, description="The tenant's first trunk is its default whatever this says")
    max_concurrent_calls: Calls = 30
    default_region: Region = "GE"
    dids: list[Did] = Field(
        default_factory=list, max_length=1000, description="Numbers this trunk receives calls for (E.164)"
    )
    allowed_prefixes: list[Prefix] = Field(
        default_factory=list, max_length=200, description="E.164 prefixes it may call; empty: no limit"
    )
    registers: bool = True
    expires_s: Expires = 3600
    keepalive_s: Keepalive = 30.0


class TrunkUpdate(_Seed):
    """Only the fields present change; ``null`` clears an optional field (a password too)."""

    name: Name | None = None
    sip_server: Host | None = None
    sip_port: Port | None = None
    transport: TrunkTransport | None = None
    websocket_path: WebSocketPath | None = None
    username: Username | None = None
    auth_username: Username | None = None
    password: Secret | None = None
    realm: Realm | None = None
    domain: Host | None = None
    outbound_proxy: OutboundProxy | None = None
    stun_servers: list[StunUrl] | None = Field(None, max_length=10)
    turn_server: TurnUrl | None = None
    turn_username: Username | None = None
    turn_password: Secret | None = None
    turn_credential: TurnCredential | None = None
    is_active: bool | None = None
    is_default: bool | None = None
    max_concurrent_calls: Calls | None = None
    default_region: Region | None = None
    dids: list[Did] | None = Field(None, max_length=1000)
    allowed_prefixes: list[Prefix] | None = Field(None, max_length=200)
    registers: bool | None = None
    expires_s: Expires | None = None
    keepalive_s: Keepalive | None = None


#: Fields of TrunkUpdate that may be set to null (the others are required columns).
NULLABLE = frozenset(
    {
        "sip_port",
        "websocket_path",
        "auth_username",
        "password",
        "realm",
        "domain",
        "outbound_proxy",
        "turn_server",
        "turn_username",
        "turn_password",
    }
)


class TrunkOut(BaseModel):
    id: str
    name: str
    sip_server: str
    sip_port: int | None
    transport: TrunkTransport
    websocket_path: str | None
    username: str
    auth_username: str | None
    has_password: bool
    realm: str | None
    domain: str | None
    outbound_proxy: str | None
    stun_servers: list[str]
    turn_server: str | None
    turn_username: str | None
    has_turn_password: bool
    turn_credential: TurnCredential
    is_active: bool
    is_default: bool
    max_concurrent_calls: int
    default_region: str
    dids: list[str]
    allowed_prefixes: list[str]
    registers: bool
    expires_s: int
    keepalive_s: float
    created_at: datetime
    updated_at: datetime
    published: bool = Field(description="Whether signaling already has this version (NATS KV)")
