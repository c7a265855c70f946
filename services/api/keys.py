"""API keys: ``edk_<id>_<secret>``, 256 bits of secret, of which only a SHA-256 is stored.

A key is looked up by its public id and its hash compared in constant time; a fast hash is right
here (unlike for passwords) because the secret is random, not chosen by a person.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.db import ApiKey
from services.api.db.base import utcnow

TOKEN_PREFIX = "edk"
ID_PREFIX = "key_"


class Scope(StrEnum):
    """What a key may do. ``admin`` implies ``write``, which implies ``read``."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


_IMPLIED = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.WRITE: frozenset({Scope.READ, Scope.WRITE}),
    Scope.ADMIN: frozenset(Scope),
}


def granted(scopes: list[str] | tuple[str, ...]) -> frozenset[Scope]:
    """Every scope a key holds, the implied ones included (unknown names are ignored)."""
    result: set[Scope] = set()
    for name in scopes:
        if name in Scope.__members__.values():
            result |= _IMPLIED[Scope(name)]
    return frozenset(result)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ParsedToken:
    key_id: str
    token: str


def parse_token(token: str) -> ParsedToken | None:
    """The key id inside a presented token, or None when it cannot be one of ours."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[2] or len(token) > 200:
        return None
    ident = parts[1]
    if len(ident) != 20 or any(c not in "0123456789abcdef" for c in ident):
        return None
    return ParsedToken(key_id=ID_PREFIX + ident, token=token)


def matches(key: ApiKey | None, token: str) -> bool:
    """Constant-time comparison; compares against a dummy when there is no key, to keep timing flat."""
    expected = key.key_hash if key is not None else "0" * 64
    return hmac.compare_digest(expected, hash_token(token)) and key is not None


def usable(key: ApiKey, now: datetime) -> str | None:
    """Why a key that matched may not be used, or None."""
    if key.revoked_at is not None:
        return "API key revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "API key expired"
    return None


def issue(
    session: AsyncSession,
    *,
    tenant_id: str,
    name: str,
    scopes: list[Scope],
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key (added to the session) and its token, which exists only in this return value."""
    ident = secrets.token_hex(10)
    token = f"{TOKEN_PREFIX}_{ident}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        id=ID_PREFIX + ident,
        tenant_id=tenant_id,
        name=name,
        key_hash=hash_token(token),
        scopes=sorted({s.value for s in scopes}),
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(key)
    return key, token


def display_prefix(key: ApiKey) -> str:
    """What identifies a key to a person without revealing it: ``edk_<id>_...``."""
    return f"{TOKEN_PREFIX}_{key.id.removeprefix(ID_PREFIX)}_..."
