"""Personal API tokens: `Authorization: Bearer exo_pat_…` on the JSON API.

A token carries a subset of its owner's capabilities, chosen when it is made,
and works in the scope its owner worked in then. On every use it is narrowed
again to what the owner holds now, so a token never outlives a capability its
owner lost. Only SHA-256 of the token is stored; it is shown once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from app.access import Access
from app.access.catalogue import unknown

PREFIX = "exo_pat_"
MAX_DAYS = 365
DEFAULT_DAYS = 90


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class ApiToken:
    id: UUID
    user_id: UUID
    name: str
    hint: str
    capabilities: list[str]
    scope_unit_id: UUID | None
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def as_json(self) -> dict:
        """What an audit event or the API says of a token: never the token itself."""
        return {"id": str(self.id), "name": self.name, "hint": self.hint, "capabilities": sorted(self.capabilities),
                "scope_unit_id": str(self.scope_unit_id) if self.scope_unit_id else None,
                "expires_at": self.expires_at.isoformat()}


_COLUMNS = "id, user_id, name, hint, capabilities, scope_unit_id, created_at, expires_at, last_used_at, revoked_at"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_request(owner: Access, name: str, capabilities: list[str], days: int) -> list[str]:
    """What is wrong with a token request, in words for the form (empty when it can be made)."""
    problems = []
    if not 1 <= len(name.strip()) <= 100:
        problems.append("Give the token a name of 1 to 100 characters, so you can tell it apart later.")
    if not capabilities:
        problems.append("Choose at least one capability.")
    if bad := unknown(capabilities):
        problems.append(f"Unknown capabilities: {', '.join(bad)}.")
    if beyond := sorted(set(capabilities) - owner.capabilities - set(unknown(capabilities))):
        problems.append(f"A token cannot hold what you do not hold here: {', '.join(beyond)}.")
    if not 1 <= days <= MAX_DAYS:
        problems.append(f"A token expires after 1 to {MAX_DAYS} days.")
    return problems


async def create(conn: asyncpg.Connection, tenant_id: UUID, owner: Access, name: str, capabilities: list[str],
                 days: int) -> tuple[str, ApiToken]:
    """A new token for `owner`; the clear token is returned once and never stored."""
    if problems := check_request(owner, name, capabilities, days):
        raise TokenError(" ".join(problems))
    token = PREFIX + secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        f"""
        INSERT INTO api_token (tenant_id, user_id, name, token_hash, hint, capabilities, scope_unit_id, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(days => $8))
        RETURNING {_COLUMNS}
        """,
        tenant_id, owner.user_id, name.strip(), _hash(token), token[: len(PREFIX) + 4], sorted(set(capabilities)),
        owner.scope.unit_id, days,
    )
    return token, ApiToken(**row)


async def of_user(conn: asyncpg.Connection, user_id: UUID) -> list[ApiToken]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM api_token WHERE user_id = $1 ORDER BY revoked_at IS NOT NULL, created_at DESC",
        user_id)
    return [ApiToken(**r) for r in rows]


async def revoke(conn: asyncpg.Connection, user_id: UUID, token_id: UUID) -> ApiToken | None:
    row = await conn.fetchrow(
        f"UPDATE api_token SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL"
        f" RETURNING {_COLUMNS}",
        token_id, user_id)
    return ApiToken(**row) if row else None


async def use(conn: asyncpg.Connection, token: str) -> ApiToken | None:
    """The live token, with its use recorded; None when unknown, revoked or expired."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    row = await conn.fetchrow(
        f"""
        UPDATE api_token SET last_used_at = now()
         WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
        RETURNING {_COLUMNS}
        """,
        _hash(token))
    return ApiToken(**row) if row else None
