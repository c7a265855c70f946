"""Creating tenants: by an operator (``echodesk api create-tenant``) and, in development, the one
the run command starts with (a tenant, an admin key and agents 100 and 101, printed once)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import keys
from services.api.db import Agent, Database, Tenant
from shared.logging import get_logger
from shared.numbers import is_valid_region
from shared.records import SipDomain
from shared.settings import ApiSettings, Environment

log = get_logger("echodesk.api")

DEV_TENANT_NAME = "Development"
DEV_SIP_DOMAIN = "dev.echodesk.local"
DEV_EXTENSIONS = ("100", "101")

_DOMAIN = TypeAdapter(SipDomain)


@dataclass(frozen=True)
class DevAgent:
    extension: str
    sip_username: str
    password: str


@dataclass(frozen=True)
class DevCredentials:
    tenant_id: str
    sip_domain: str
    api_key: str
    agents: tuple[DevAgent, ...]


async def create_tenant(
    session: AsyncSession, *, name: str, sip_domain: str, default_region: str = "GE"
) -> tuple[Tenant, str]:
    """A tenant and its first admin API key (the token is returned once, never stored)."""
    try:
        domain = _DOMAIN.validate_python(sip_domain.strip().lower())
    except ValidationError:
        raise ValueError(f"{sip_domain!r} is not a SIP domain (letters, digits, dots and dashes)") from None
    region = default_region.upper()
    if not is_valid_region(region):
        raise ValueError(f"{default_region!r} is not a region phone numbers are known for")
    tenant = Tenant(name=name, sip_domain=domain, default_region=region)
    session.add(tenant)
    await session.flush()
    _key, token = keys.issue(session, tenant_id=tenant.id, name="admin", scopes=[keys.Scope.ADMIN])
    return tenant, token


async def bootstrap_development(db: Database, settings: ApiSettings) -> DevCredentials | None:
    """In development, an empty database gets a tenant to try things with; None otherwise."""
    if settings.environment is not Environment.DEVELOPMENT:
        return None
    async with db.sessions() as session:
        if await session.scalar(select(Tenant.id).limit(1)) is not None:
            return None
        tenant, token = await create_tenant(session, name=DEV_TENANT_NAME, sip_domain=DEV_SIP_DOMAIN)
        agents = []
        for extension in DEV_EXTENSIONS:
            password = secrets.token_urlsafe(12)
            agent = Agent(tenant_id=tenant.id, extension=extension, display_name=f"Agent {extension}")
            agent.set_credentials(domain=tenant.sip_domain, sip_username=extension, password=password)
            session.add(agent)
            agents.append(DevAgent(extension, extension, password))
        try:
            await session.commit()
        except IntegrityError:  # another api instance bootstrapped the same database first
            return None
    credentials = DevCredentials(tenant.id, tenant.sip_domain, token, tuple(agents))
    _announce(credentials, settings)
    return credentials


def _announce(credentials: DevCredentials, settings: ApiSettings) -> None:
    # Printed once, here: the database keeps only hashes, so these cannot be shown again.
    log.warning(
        "development tenant created; its credentials are shown only now",
        tenant_id=credentials.tenant_id,
        sip_domain=credentials.sip_domain,
    )
    log.warning("development admin API key", api_key=credentials.api_key, header="Authorization: Bearer")
    for agent in credentials.agents:
        log.warning(
            "development agent",
            extension=agent.extension,
            uri=f"sip:{agent.sip_username}@{credentials.sip_domain}",
            password=agent.password,
            server=settings.public_sip_wss_url,
        )
