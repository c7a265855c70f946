"""Who is online and whether each trunk is registered, from signaling's ``agent.presence`` and
``trunk.registration`` events (taken in by the call log's consumers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import and_, select

from services.api.db import Agent, AgentPresenceRow, Trunk, TrunkRegistrationRow
from services.api.db.base import is_id
from services.api.deps import Reader, Session
from services.api.schemas.presence import AgentPresenceOut, TrunkRegistrationOut

router = APIRouter(prefix="/v1", tags=["presence"])


def _presence(agent: Agent, row: AgentPresenceRow | None) -> AgentPresenceOut:
    if row is None:
        return AgentPresenceOut(
            agent_id=agent.id,
            extension=agent.extension,
            state="unregistered",
            contacts=0,
            transport=None,
            source=None,
            user_agent=None,
            changed_at=None,
        )
    return AgentPresenceOut(
        agent_id=agent.id,
        extension=agent.extension,
        state="registered" if row.state == "registered" else "unregistered",
        contacts=row.contacts,
        transport=row.transport,
        source=row.source,
        user_agent=row.user_agent,
        changed_at=row.changed_at,
    )


def _joined() -> Any:
    return select(Agent, AgentPresenceRow).outerjoin(
        AgentPresenceRow,
        and_(AgentPresenceRow.tenant_id == Agent.tenant_id, AgentPresenceRow.agent_id == Agent.id),
    )


@router.get("/presence")
async def list_presence(session: Session, principal: Reader) -> list[AgentPresenceOut]:
    """Every agent of the tenant and whether its phones are registered, by extension."""
    rows = await session.execute(
        _joined().where(Agent.tenant_id == principal.tenant_id).order_by(Agent.extension)
    )
    return [_presence(agent, row) for agent, row in rows]


@router.get("/agents/{agent_id}/presence", responses={404: {"description": "No such agent"}})
async def get_presence(agent_id: str, session: Session, principal: Reader) -> AgentPresenceOut:
    found = (
        (
            await session.execute(
                _joined().where(Agent.tenant_id == principal.tenant_id, Agent.id == agent_id)
            )
        ).one_or_none()
        if is_id(agent_id)
        else None
    )
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no agent {agent_id}")
    agent, row = found
    return _presence(agent, row)


@router.get("/trunks/{trunk_id}/registration", responses={404: {"description": "No such trunk"}})
async def get_registration(trunk_id: str, session: Session, principal: Reader) -> TrunkRegistrationOut:
    """The trunk's registration with its carrier, as signaling last reported it."""
    trunk = (
        await session.scalar(
            select(Trunk).where(Trunk.tenant_id == principal.tenant_id, Trunk.id == trunk_id)
        )
        if is_id(trunk_id)
        else None
    )
    if trunk is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trunk {trunk_id}")
    row = await session.get(TrunkRegistrationRow, (principal.tenant_id, trunk.id))
    if row is None:
        return TrunkRegistrationOut(
            trunk_id=trunk.id,
            state="unknown",
            registrar=None,
            sip_status=None,
            reason=None,
            expires_s=None,
            retry_in_s=None,
            changed_at=None,
        )
    return TrunkRegistrationOut(
        trunk_id=trunk.id,
        state=row.state,
        registrar=row.registrar,
        sip_status=row.sip_status,
        reason=row.reason,
        expires_s=row.expires_s,
        retry_in_s=row.retry_in_s,
        changed_at=row.changed_at,
    )
