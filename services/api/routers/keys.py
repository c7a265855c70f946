"""``/v1/api-keys``: an admin creates and revokes the tenant's keys. A key is shown once."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy import select

from services.api import keys
from services.api.db import ApiKey
from services.api.db.base import is_id, utcnow
from services.api.deps import Admin, Session
from services.api.errors import Conflict
from services.api.schemas.tenants import ApiKeyCreate, ApiKeyCreated, ApiKeyOut

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


def key_out(key: ApiKey) -> ApiKeyOut:
    now = utcnow()
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        scopes=[keys.Scope(s) for s in key.scopes if s in keys.Scope.__members__.values()],
        prefix=keys.display_prefix(key),
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
        active=keys.usable(key, now) is None,
    )


@router.get("")
async def list_keys(session: Session, principal: Admin) -> list[ApiKeyOut]:
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.tenant_id == principal.tenant_id).order_by(ApiKey.created_at, ApiKey.id)
    )
    return [key_out(k) for k in rows]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_key(body: ApiKeyCreate, session: Session, principal: Admin) -> ApiKeyCreated:
    key, token = keys.issue(
        session, tenant_id=principal.tenant_id, name=body.name, scopes=body.scopes, expires_at=body.expires_at
    )
    await session.commit()
    return ApiKeyCreated(**key_out(key).model_dump(), key=token)


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such key"}, 409: {"description": "The last admin key"}},
)
async def revoke_key(key_id: str, session: Session, principal: Admin) -> Response:
    """Revoke a key at once. The tenant's last active admin key cannot be revoked (nobody could
    manage keys afterwards); create another admin key first."""
    key = None
    if is_id(key_id):
        key = await session.scalar(
            select(ApiKey).where(ApiKey.tenant_id == principal.tenant_id, ApiKey.id == key_id)
        )
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id}")
    if key.revoked_at is None:
        now = utcnow()
        if keys.Scope.ADMIN in keys.granted(key.scopes):
            admins = await session.scalars(
                select(ApiKey).where(ApiKey.tenant_id == principal.tenant_id, ApiKey.revoked_at.is_(None))
            )
            others = [
                k
                for k in admins
                if k.id != key.id
                and keys.Scope.ADMIN in keys.granted(k.scopes)
                and keys.usable(k, now) is None
            ]
            if not others:
                raise Conflict("this is the tenant's last admin key; create another admin key first")
        key.revoked_at = now
        await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
