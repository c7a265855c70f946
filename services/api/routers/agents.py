"""``/v1/agents``: the people who take calls, and what their softphone needs to register."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.db import Agent, Tenant, Trunk, TurnCredential
from services.api.db.base import is_id, utcnow
from services.api.deps import Reader, Session, Settings, Writer, config_changed
from services.api.errors import Conflict, Unavailable, invalid
from services.api.schemas.agents import (
    NULLABLE,
    AgentCreate,
    AgentOut,
    AgentUpdate,
    IceServer,
    WebRtcConfig,
)
from shared.sealing import SealError, unseal
from shared.settings import ApiSettings

router = APIRouter(prefix="/v1/agents", tags=["agents"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such agent in the caller's tenant"}}


def agent_out(agent: Agent, domain: str) -> AgentOut:
    return AgentOut(
        id=agent.id,
        extension=agent.extension,
        sip_username=agent.sip_username,
        display_name=agent.display_name,
        ring_groups=list(agent.ring_groups),
        enabled=agent.enabled,
        max_concurrent_calls=agent.max_concurrent_calls,
        uri=f"sip:{agent.sip_username}@{domain}",
        created_at=agent.created_at,
        updated_at=agent.updated_at,
        published=agent.published,
    )


async def _tenant(session: AsyncSession, tenant_id: str) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise Conflict("the tenant of this API key no longer exists")
    return tenant


async def _find(session: AsyncSession, tenant_id: str, agent_id: str) -> Agent:
    agent = None
    if is_id(agent_id):
        agent = await session.scalar(select(Agent).where(Agent.tenant_id == tenant_id, Agent.id == agent_id))
    if agent is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no agent {agent_id}")
    return agent


async def _free(session: AsyncSession, tenant_id: str, field: str, value: str, agent_id: str | None) -> None:
    column = Agent.extension if field == "extension" else Agent.sip_username
    taken = await session.scalar(
        select(Agent.id).where(Agent.tenant_id == tenant_id, column == value, Agent.id != (agent_id or ""))
    )
    if taken is not None:
        raise Conflict(f"{field} {value} belongs to another agent", field=field)


def _unique(groups: list[str]) -> list[str]:
    return list(dict.fromkeys(groups))


@router.get("")
async def list_agents(session: Session, principal: Reader) -> list[AgentOut]:
    tenant = await _tenant(session, principal.tenant_id)
    agents = await session.scalars(
        select(Agent).where(Agent.tenant_id == tenant.id).order_by(Agent.extension, Agent.id)
    )
    return [agent_out(a, tenant.sip_domain) for a in agents]


@router.post("", status_code=status.HTTP_201_CREATED, responses={409: {"description": "Extension in use"}})
async def create_agent(body: AgentCreate, request: Request, session: Session, principal: Writer) -> AgentOut:
    tenant = await _tenant(session, principal.tenant_id)
    sip_username = body.sip_username or body.extension
    await _free(session, tenant.id, "extension", body.extension, None)
    await _free(session, tenant.id, "sip_username", sip_username, None)
    agent = Agent(
        tenant_id=tenant.id,
        extension=body.extension,
        display_name=body.display_name,
        ring_groups=_unique(body.ring_groups),
        enabled=body.enabled,
        max_concurrent_calls=body.max_concurrent_calls,
    )
    agent.set_credentials(
        domain=tenant.sip_domain, sip_username=sip_username, password=body.password.get_secret_value()
    )
    session.add(agent)
    await session.commit()
    config_changed(request)
    return agent_out(agent, tenant.sip_domain)


@router.get("/{agent_id}", responses=_NOT_FOUND)
async def get_agent(agent_id: str, session: Session, principal: Reader) -> AgentOut:
    tenant = await _tenant(session, principal.tenant_id)
    return agent_out(await _find(session, tenant.id, agent_id), tenant.sip_domain)


@router.patch("/{agent_id}", responses={**_NOT_FOUND, 409: {"description": "Extension in use"}})
async def update_agent(
    agent_id: str, body: AgentUpdate, request: Request, session: Session, principal: Writer
) -> AgentOut:
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    for name, value in changes.items():
        if value is None and name not in NULLABLE:
            raise invalid(("body", name), "may not be null")
    tenant = await _tenant(session, principal.tenant_id)
    agent = await _find(session, tenant.id, agent_id)
    password = changes.pop("password", None)
    sip_username = changes.pop("sip_username", agent.sip_username)
    if sip_username != agent.sip_username:
        await _free(session, tenant.id, "sip_username", sip_username, agent.id)
        if password is None:
            raise invalid(
                ("body", "password"),
                "required when sip_username changes: the stored digest hashes include the username",
            )
    if "extension" in changes:
        await _free(session, tenant.id, "extension", changes["extension"], agent.id)
    if "ring_groups" in changes:
        changes["ring_groups"] = _unique(changes["ring_groups"])
    for name, value in changes.items():
        setattr(agent, name, value)
    if password is not None:
        agent.set_credentials(
            domain=tenant.sip_domain, sip_username=sip_username, password=password.get_secret_value()
        )
    await session.commit()
    config_changed(request)
    return agent_out(agent, tenant.sip_domain)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_agent(agent_id: str, request: Request, session: Session, principal: Writer) -> Response:
    agent = await _find(session, principal.tenant_id, agent_id)
    await session.delete(agent)
    await session.commit()
    config_changed(request)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{agent_id}/webrtc-config",
    responses={**_NOT_FOUND, 409: {"description": "The agent is disabled"}},
)
async def webrtc_config(
    agent_id: str, session: Session, principal: Reader, settings: Settings
) -> WebRtcConfig:
    """What SIP.js needs for this agent. The SIP password is not included: the softphone asks the
    agent for it (only its digest hashes are stored)."""
    tenant = await _tenant(session, principal.tenant_id)
    agent = await _find(session, tenant.id, agent_id)
    if not agent.enabled:
        raise Conflict(f"agent {agent.id} is disabled")
    trunk = await session.scalar(select(Trunk).where(Trunk.tenant_id == tenant.id, Trunk.is_default))
    ice_servers, expires_at = ([], None) if trunk is None else _ice_servers(trunk, agent, settings)
    return WebRtcConfig(
        agent_id=agent.id,
        ws_server=settings.public_sip_wss_url,
        uri=f"sip:{agent.sip_username}@{tenant.sip_domain}",
        authorization_username=agent.sip_username,
        realm=tenant.sip_domain,
        display_name=agent.display_name,
        extension=agent.extension,
        ice_servers=ice_servers,
        ice_servers_expire_at=expires_at,
        trunk_id=None if trunk is None else trunk.id,
    )


def _ice_servers(trunk: Trunk, agent: Agent, settings: ApiSettings) -> tuple[list[IceServer], Any]:
    servers = [IceServer(urls=[url]) for url in trunk.stun_servers]
    if trunk.turn_server is None:
        return servers, None
    secret = _turn_secret(trunk, settings)
    if trunk.turn_credential is TurnCredential.SHARED_SECRET and secret is not None:
        # TURN REST API (draft-uberti-behave-turn-rest-00 2.2, coturn's use-auth-secret):
        # username "<expiry>:<user>", credential base64(HMAC-SHA1(secret, username)).
        expires_at = (utcnow() + timedelta(seconds=settings.turn_credential_ttl_s)).replace(microsecond=0)
        username = f"{int(expires_at.timestamp())}:{agent.id}"
        credential = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest())
        servers.append(IceServer(urls=[trunk.turn_server], username=username, credential=credential.decode()))
        return servers, expires_at
    servers.append(IceServer(urls=[trunk.turn_server], username=trunk.turn_username, credential=secret))
    return servers, None


def _turn_secret(trunk: Trunk, settings: ApiSettings) -> str | None:
    if trunk.turn_password_sealed is None:
        return None
    if not settings.secret_key:
        raise Unavailable("ECHODESK_SECRET_KEY is not set on the api: the TURN password cannot be opened")
    try:
        return unseal(trunk.turn_password_sealed, settings.secret_key)
    except SealError as exc:
        raise Unavailable(f"the TURN password of trunk {trunk.id} cannot be opened: {exc}") from exc
