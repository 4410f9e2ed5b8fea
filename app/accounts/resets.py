"""Password reset tokens: random, single-use, valid 30 minutes, stored as SHA-256 only."""

from __future__ import annotations

import hashlib
import secrets
from uuid import UUID

import asyncpg

VALID_MINUTES = 30
INVITE_MINUTES = 72 * 60


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue(conn: asyncpg.Connection, tenant_id: UUID, user_id: UUID, *, minutes: int = VALID_MINUTES) -> str:
    """A link token; an invitation lives longer (INVITE_MINUTES) than a reset."""
    token = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO password_reset (tenant_id, token_hash, user_id, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(mins => $4))",
        tenant_id, _hash(token), user_id, minutes,
    )
    return token


async def holder(conn: asyncpg.Connection, token: str) -> UUID | None:
    """The user a live token belongs to (not when that user has been disabled since)."""
    if len(token) > 100:
        return None
    return await conn.fetchval(
        "SELECT r.user_id FROM password_reset r JOIN app_user u ON u.id = r.user_id"
        " WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > now() AND u.disabled_at IS NULL",
        _hash(token))


async def redeem(conn: asyncpg.Connection, token: str) -> UUID | None:
    """Use the token once; the user it was for, or None if it is used, expired or unknown.

    Every other live token of that user is used up with it.
    """
    user_id = await conn.fetchval(
        "UPDATE password_reset SET used_at = now()"
        " WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id",
        _hash(token))
    if user_id is not None:
        await conn.execute("UPDATE password_reset SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", user_id)
    return user_id
