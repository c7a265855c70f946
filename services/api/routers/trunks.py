"""``/v1/trunks``: the tenant's carriers. One of them is the default, always (when there is any):
the first trunk becomes the default, ``set-default`` moves it, and deleting the default hands it
to the next trunk. The database enforces that there is never more than one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.db import Tenant, Trunk, TurnCredential
from services.api.db.base import is_id
from services.api.deps import Reader, Session, Settings, Writer, config_changed
from services.api.errors import Conflict, Unavailable, invalid
from services.api.schemas.trunks import NULLABLE, TrunkCreate, TrunkOut, TrunkUpdate
from shared.numbers import NumberError, NumberKind, normalize
from shared.settings import ApiSettings

router = APIRouter(prefix="/v1/trunks", tags=["trunks"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such trunk in the caller's tenant"}}


def trunk_out(trunk: Trunk) -> TrunkOut:
    return TrunkOut(
        id=trunk.id,
        name=trunk.name,
        sip_server=trunk.sip_server,
        sip_port=trunk.sip_port,
        transport=trunk.transport,
        websocket_path=trunk.websocket_path,
        username=trunk.username,
        auth_username=trunk.auth_username,
        has_password=trunk.password_sealed is not None,
        realm=trunk.realm,
        domain=trunk.domain,
        outbound_proxy=trunk.outbound_proxy,
        stun_servers=list(trunk.stun_servers),
        turn_server=trunk.turn_server,
        turn_username=trunk.turn_username,
        has_turn_password=trunk.turn_password_sealed is not None,
        turn_credential=trunk.turn_credential,
        is_active=trunk.is_active,
        is_default=trunk.is_default,
        max_concurrent_calls=trunk.max_concurrent_calls,
        default_region=trunk.default_region,
        dids=list(trunk.dids),
        allowed_prefixes=list(trunk.allowed_prefixes),
        registers=trunk.registers,
        expires_s=trunk.expires_s,
        keepalive_s=trunk.keepalive_s,
        created_at=trunk.created_at,
        updated_at=trunk.updated_at,
        published=trunk.published,
    )


async def _lock_tenant(session: AsyncSession, tenant_id: str) -> Tenant:
    """Serialize a tenant's trunk changes (PostgreSQL: the tenant row's lock; SQLite serializes
    writers anyway), so moving the default never trips over a concurrent move."""
    tenant = await session.scalar(select(Tenant).where(Tenant.id == tenant_id).with_for_update())
    if tenant is None:  # the key's tenant was deleted under it
        raise Conflict("the tenant of this API key no longer exists")
    return tenant


async def _find(session: AsyncSession, tenant_id: str, trunk_id: str) -> Trunk:
    trunk = None
    if is_id(trunk_id):
        trunk = await session.scalar(select(Trunk).where(Trunk.tenant_id == tenant_id, Trunk.id == trunk_id))
    if trunk is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trunk {trunk_id}")
    return trunk


async def _default(session: AsyncSession, tenant_id: str) -> Trunk | None:
    return await session.scalar(select(Trunk).where(Trunk.tenant_id == tenant_id, Trunk.is_default))


async def _make_default(session: AsyncSession, trunk: Trunk) -> None:
    current = await _default(session, trunk.tenant_id)
    if current is not None and current is not trunk:
        current.is_default = False
        # The old default is written first: the partial unique index allows one at a time.
        await session.flush()
    trunk.is_default = True


async def _name_is_free(session: AsyncSession, tenant_id: str, name: str, trunk_id: str | None) -> None:
    taken = await session.scalar(
        select(Trunk.id).where(Trunk.tenant_id == tenant_id, Trunk.name == name, Trunk.id != (trunk_id or ""))
    )
    if taken is not None:
        raise Conflict(f"another trunk is already named {name!r}", field="name")


def _dids(raw: list[str], region: str) -> list[str]:
    """Each DID in E.164 (shared.numbers), in order, without repeats; a 422 names the bad one."""
    result: list[str] = []
    for index, text in enumerate(raw):
        try:
            number = normalize(text, region)
        except NumberError as exc:
            raise invalid(("body", "dids", index), exc.reason, text) from None
        if number.kind in (NumberKind.EXTENSION, NumberKind.SERVICE_CODE):
            raise invalid(("body", "dids", index), "an extension or service code, not a phone number", text)
        if not number.valid:
            raise invalid(
                ("body", "dids", index), f"{number.number} is not a valid number in its numbering plan", text
            )
        if number.number not in result:
            result.append(number.number)
    return result


def _secret_key(settings: ApiSettings) -> str:
    if not settings.secret_key:
        raise Unavailable(
            "ECHODESK_SECRET_KEY is not set on the api, so passwords cannot be stored sealed; "
            "set it (the same value as on signaling) and try again"
        )
    return settings.secret_key


def _check_turn(trunk: Trunk) -> None:
    if trunk.turn_credential is TurnCredential.SHARED_SECRET and trunk.turn_password_sealed is None:
        raise invalid(("body", "turn_password"), "turn_credential shared_secret needs the secret here")


@router.get("")
async def list_trunks(session: Session, principal: Reader) -> list[TrunkOut]:
    trunks = await session.scalars(
        select(Trunk).where(Trunk.tenant_id == principal.tenant_id).order_by(Trunk.name, Trunk.id)
    )
    return [trunk_out(t) for t in trunks]


@router.post("", status_code=status.HTTP_201_CREATED, responses={409: {"description": "Name in use"}})
async def create_trunk(
    body: TrunkCreate, request: Request, session: Session, principal: Writer, settings: Settings
) -> TrunkOut:
    dids = _dids(body.dids, body.default_region)
    await _lock_tenant(session, principal.tenant_id)
    await _name_is_free(session, principal.tenant_id, body.name, None)
    fields = body.model_dump(exclude={"password", "turn_password", "is_default", "dids"})
    trunk = Trunk(tenant_id=principal.tenant_id, is_default=False, dids=dids, **fields)
    if body.password is not None:
        trunk.set_password(body.password.get_secret_value(), _secret_key(settings))
    if body.turn_password is not None:
        trunk.set_turn_password(body.turn_password.get_secret_value(), _secret_key(settings))
    _check_turn(trunk)
    session.add(trunk)
    if body.is_default or await _default(session, principal.tenant_id) is None:
        await _make_default(session, trunk)
    await session.commit()
    config_changed(request)
    return trunk_out(trunk)


@router.get("/{trunk_id}", responses=_NOT_FOUND)
async def get_trunk(trunk_id: str, session: Session, principal: Reader) -> TrunkOut:
    return trunk_out(await _find(session, principal.tenant_id, trunk_id))


@router.patch("/{trunk_id}", responses={**_NOT_FOUND, 409: {"description": "Name in use"}})
async def update_trunk(
    trunk_id: str,
    body: TrunkUpdate,
    request: Request,
    session: Session,
    principal: Writer,
    settings: Settings,
) -> TrunkOut:
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    for name, value in changes.items():
        if value is None and name not in NULLABLE:
            raise invalid(("body", name), "may not be null")
    await _lock_tenant(session, principal.tenant_id)
    trunk = await _find(session, principal.tenant_id, trunk_id)
    if "name" in changes:
        await _name_is_free(session, principal.tenant_id, changes["name"], trunk.id)
    if "dids" in changes:
        changes["dids"] = _dids(changes["dids"], changes.get("default_region") or trunk.default_region)
    if "password" in changes:
        secret = changes.pop("password")
        if secret is None:
            trunk.password_sealed = None
        else:
            trunk.set_password(secret.get_secret_value(), _secret_key(settings))
    if "turn_password" in changes:
        secret = changes.pop("turn_password")
        if secret is None:
            trunk.turn_password_sealed = None
        else:
            trunk.set_turn_password(secret.get_secret_value(), _secret_key(settings))
    make_default = changes.pop("is_default", None)
    if make_default is False and trunk.is_default:
        raise invalid(
            ("body", "is_default"),
            "a tenant always has one default trunk: make another trunk the default instead",
            False,
        )
    for name, value in changes.items():
        setattr(trunk, name, value)
    _check_turn(trunk)
    if make_default:
        await _make_default(session, trunk)
    await session.commit()
    config_changed(request)
    return trunk_out(trunk)


@router.delete("/{trunk_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_trunk(trunk_id: str, request: Request, session: Session, principal: Writer) -> Response:
    await _lock_tenant(session, principal.tenant_id)
    trunk = await _find(session, principal.tenant_id, trunk_id)
    was_default = trunk.is_default
    await session.delete(trunk)
    await session.flush()
    if was_default:
        # The default passes to the next trunk: active ones first, then the oldest.
        successor = await session.scalar(
            select(Trunk)
            .where(Trunk.tenant_id == principal.tenant_id)
            .order_by(Trunk.is_active.desc(), Trunk.created_at, Trunk.id)
            .limit(1)
        )
        if successor is not None:
            successor.is_default = True
    await session.commit()
    config_changed(request)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{trunk_id}/set-default", responses=_NOT_FOUND)
async def set_default_trunk(trunk_id: str, request: Request, session: Session, principal: Writer) -> TrunkOut:
    """Make this trunk the tenant's default (the previous default stops being it)."""
    await _lock_tenant(session, principal.tenant_id)
    trunk = await _find(session, principal.tenant_id, trunk_id)
    if not trunk.is_default:
        await _make_default(session, trunk)
        await session.commit()
        config_changed(request)
    return trunk_out(trunk)
