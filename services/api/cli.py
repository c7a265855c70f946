"""``echodesk api migrate``, ``create-tenant`` and ``create-key``: what an operator does to the
database without the api (in production, where no development tenant is bootstrapped, or when every
admin key of a tenant is lost)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.api.db import Database, Tenant
from services.api.db.migrate import current_revision, upgrade
from services.api.keys import Scope, issue
from services.api.tenancy import create_tenant
from shared.settings import ApiSettings


def main(args: argparse.Namespace) -> int:
    settings = ApiSettings()
    if args.api_command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.api_command == "create-tenant":
        return asyncio.run(_create_tenant(settings, args.name, args.sip_domain, args.region))
    if args.api_command == "create-key":
        return asyncio.run(_create_key(settings, args.sip_domain, args.name, Scope(args.scope)))
    raise ValueError(f"unknown api command {args.api_command}")


async def _migrate(settings: ApiSettings) -> int:
    db = Database(settings.database_url)
    try:
        await upgrade(db)
        print(f"{db.describe()} is at revision {await current_revision(db)}")
    finally:
        await db.dispose()
    return 0


async def _create_tenant(settings: ApiSettings, name: str, sip_domain: str, region: str) -> int:
    db = Database(settings.database_url)
    try:
        await upgrade(db)
        async with db.sessions() as session:
            try:
                tenant, token = await create_tenant(
                    session, name=name, sip_domain=sip_domain, default_region=region
                )
                await session.commit()
            except ValueError as exc:
                print(f"echodesk api create-tenant: {str(exc).splitlines()[0]}", file=sys.stderr)
                return 2
            except IntegrityError:
                print(f"echodesk api create-tenant: SIP domain {sip_domain} has a tenant", file=sys.stderr)
                return 1
    finally:
        await db.dispose()
    print(f"tenant {tenant.id} ({tenant.name}), SIP domain {tenant.sip_domain}")
    print(f"admin API key (shown once, store it now): {token}")
    return 0


async def _create_key(settings: ApiSettings, sip_domain: str, name: str, scope: Scope) -> int:
    db = Database(settings.database_url)
    try:
        await upgrade(db)
        async with db.sessions() as session:
            tenant = await session.scalar(
                select(Tenant).where(Tenant.sip_domain == sip_domain.strip().lower())
            )
            if tenant is None:
                print(f"echodesk api create-key: no tenant has SIP domain {sip_domain}", file=sys.stderr)
                return 1
            _key, token = issue(session, tenant_id=tenant.id, name=name, scopes=[scope])
            await session.commit()
    finally:
        await db.dispose()
    print(f"{scope} API key of tenant {tenant.id} ({tenant.name}), shown once, store it now: {token}")
    return 0
