"""Operator sessions: server-side rows, as tenant sessions (app.accounts.sessions), shorter.

An operator session ends when signed out, after IDLE_MINUTES unused, or
LIFETIME_HOURS after sign-in: the panel can suspend any tenant, so a
forgotten browser must not keep it open for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from app.accounts.sessions import new_token, token_hash
from app.operator.accounts import Operator

IDLE_MINUTES = 30
LIFETIME_HOURS = 8


@dataclass(frozen=True)
class OperatorSession:
    id: UUID
    operator: Operator


async def start(conn: asyncpg.Connection, operator_id: UUID) -> str:
    """A new session; its token, which only the cookie holds."""
    token = new_token()
    await conn.execute(
        "INSERT INTO operator_session (operator_id, token_hash, expires_at)"
        " VALUES ($1, $2, now() + make_interval(hours => $3))",
        operator_id, token_hash(token), LIFETIME_HOURS,
    )
    return token


async def current(conn: asyncpg.Connection, token: str | None) -> OperatorSession | None:
    """The live session of `token` of an operator not disabled, marked as seen now; None otherwise."""
    if not token or len(token) > 100:
        return None
    row = await conn.fetchrow(
        """
        UPDATE operator_session s SET last_seen_at = now()
          FROM operator_account a
         WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
           AND s.last_seen_at > now() - make_interval(mins => $2)
           AND a.id = s.operator_id AND a.disabled_at IS NULL
        RETURNING s.id, a.id AS operator_id, a.email, a.display_name
        """,
        token_hash(token), IDLE_MINUTES,
    )
    if row is None:
        return None
    return OperatorSession(row["id"], Operator(row["operator_id"], row["email"], row["display_name"]))


async def end(conn: asyncpg.Connection, session_id: UUID) -> None:
    await conn.execute(
        "UPDATE operator_session SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", session_id)
