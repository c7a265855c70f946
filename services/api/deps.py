"""FastAPI dependencies: the database session, the caller (API key) and what the app was given."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import keys
from services.api.db import ApiKey, Database
from services.api.db.base import utcnow
from services.api.publishing import ConfigPublisher
from shared.settings import ApiSettings

#: ``last_used_at`` is written at most this often per key, so reads stay reads.
LAST_USED_GRANULARITY = timedelta(minutes=5)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer edk_...`. Admins create them at /v1/api-keys.",
)


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_session(db: Annotated[Database, Depends(get_database)]) -> AsyncIterator[AsyncSession]:
    async with db.sessions() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]
Settings = Annotated[ApiSettings, Depends(get_settings)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant's API key and what it may do."""

    tenant_id: str
    key_id: str
    scopes: frozenset[keys.Scope]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(
    session: Session,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("an API key is required: Authorization: Bearer <key>")
    parsed = keys.parse_token(credentials.credentials)
    key = await session.get(ApiKey, parsed.key_id) if parsed is not None else None
    if parsed is None or not keys.matches(key, parsed.token) or key is None:
        raise _unauthorized("invalid API key")
    now = utcnow()
    refused = keys.usable(key, now)
    if refused is not None:
        raise _unauthorized(refused)
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_GRANULARITY:
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
        await session.commit()
    return Principal(tenant_id=key.tenant_id, key_id=key.id, scopes=keys.granted(key.scopes))


def require(scope: keys.Scope) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets the caller through when its key holds ``scope``."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if scope not in principal.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key lacks the '{scope}' scope")
        return principal

    return check


Reader = Annotated[Principal, Depends(require(keys.Scope.READ))]
Writer = Annotated[Principal, Depends(require(keys.Scope.WRITE))]
Admin = Annotated[Principal, Depends(require(keys.Scope.ADMIN))]


def config_changed(request: Request) -> None:
    """Tell the KV publisher that trunks or agents changed (it reads what changed from the DB)."""
    publisher: ConfigPublisher | None = getattr(request.app.state, "publisher", None)
    if publisher is not None:
        publisher.kick()
