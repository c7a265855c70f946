"""Agent bodies. The password is write-only and only its digest hashes are kept."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from services.api.schemas.common import AgentPassword, Body
from shared.events import Token
from shared.records import SipUsername

Extension = Annotated[str, Field(pattern=r"^[0-9]{2,8}$", examples=["100"])]
DisplayName = Annotated[str, Field(min_length=1, max_length=128, examples=["Nino"])]
RingGroups = Annotated[list[Token], Field(max_length=32, examples=[["support"]])]
Calls = Annotated[int, Field(ge=0, le=100)]


class AgentCreate(Body):
    extension: Extension
    sip_username: SipUsername | None = Field(
        None, description="What the phone registers as; default: extension"
    )
    password: AgentPassword = Field(description="Write-only; only the digest hashes (HA1) are kept")
    display_name: DisplayName | None = None
    ring_groups: RingGroups = Field(default_factory=list)
    enabled: bool = True
    max_concurrent_calls: Calls = 2


class AgentUpdate(Body):
    """Only the fields present change. A new ``sip_username`` needs the ``password`` again: the
    stored hashes are of username, realm and password together."""

    extension: Extension | None = None
    sip_username: SipUsername | None = None
    password: AgentPassword | None = None
    display_name: DisplayName | None = None
    ring_groups: RingGroups | None = None
    enabled: bool | None = None
    max_concurrent_calls: Calls | None = None


NULLABLE = frozenset({"display_name"})


class AgentOut(BaseModel):
    id: str
    extension: str
    sip_username: str
    display_name: str | None
    ring_groups: list[str]
    enabled: bool
    max_concurrent_calls: int
    uri: str = Field(description="The address of record the phone registers, sip:<user>@<tenant domain>")
    created_at: datetime
    updated_at: datetime
    published: bool = Field(description="Whether signaling already has this version (NATS KV)")


class IceServer(BaseModel):
    """One entry of RTCConfiguration.iceServers (W3C WebRTC 4.2.1)."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class WebRtcConfig(BaseModel):
    """What SIP.js needs to register this agent and place calls.

    The SIP password is not part of it: the softphone asks the agent for it (the api keeps only
    digest hashes and could not return it). TURN credentials are included because the browser
    must present them; with a trunk's ``turn_credential`` = ``shared_secret`` they are short-lived.
    """

    agent_id: str
    ws_server: str = Field(description="SIP over secure WebSocket URL (transportOptions.server)")
    uri: str = Field(description="The agent's address of record (UserAgentOptions.uri)")
    authorization_username: str = Field(description="Digest user (UserAgentOptions.authorizationUsername)")
    realm: str = Field(description="Digest realm the password is checked in: the tenant's SIP domain")
    display_name: str | None
    extension: str
    ice_servers: list[IceServer] = Field(
        description="STUN and TURN servers from the tenant's default trunk (peerConnectionConfiguration)"
    )
    ice_servers_expire_at: datetime | None = Field(
        None, description="When short-lived TURN credentials expire; ask again before then"
    )
    trunk_id: str | None = Field(None, description="The default trunk the ICE servers come from")
