"""Server-side sessions: a row per sign-in, the cookie holds a random token.

Only SHA-256 of the token is stored, so a database reader cannot take over a
session. A session ends when revoked, after `session_idle_minutes` unused, or
`session_hours` after sign-in. The token changes at sign-in, when a second
factor completes it, and at every step-up: a token seen before sign-in
(session fixation) is never the token of a signed-in session.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from app.config import Settings

PASSWORD = "password"   # stage: a second factor is still owed
FULL = "full"           # signed in


@dataclass(frozen=True)
class Session:
    id: UUID
    user_id: UUID
    stage: str
    methods: list[str]
    created_at: datetime
    last_seen_at: datetime
    factor_at: datetime | None
    scope_unit_id: UUID | None = None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


_COLUMNS = "id, user_id, stage, methods, created_at, last_seen_at, factor_at, scope_unit_id"


async def start(
    conn: asyncpg.Connection, settings: Settings, tenant_id: UUID, user_id: UUID, *,
    stage: str, methods: list[str], factor: bool,
) -> tuple[str, Session]:
    token = new_token()
    row = await conn.fetchrow(
        f"""
        INSERT INTO user_session (tenant_id, user_id, token_hash, stage, methods, expires_at, factor_at)
        VALUES ($1, $2, $3, $4, $5, now() + make_interval(hours => $6), CASE WHEN $7 THEN now() END)
        RETURNING {_COLUMNS}
        """,
        tenant_id, user_id, token_hash(token), stage, methods, settings.session_hours, factor,
    )
    return token, Session(**row)


# A request marks its session as seen only when the mark is older than this:
# marking every page view made each GET a write transaction, a WAL flush at
# its commit. The idle timeout may so end up to this much sooner, never later.
SEEN_EVERY_SECONDS = 60


async def current(conn: asyncpg.Connection, settings: Settings, token: str | None) -> Session | None:
    """The live session of `token`, marked as seen now if its mark is older than SEEN_EVERY_SECONDS; None if it has ended."""
    if not token or len(token) > 100:
        return None
    row = await conn.fetchrow(
        """
        WITH live AS (
            SELECT id, user_id, stage, methods, created_at, last_seen_at, factor_at, scope_unit_id
              FROM user_session
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
               AND last_seen_at > now() - make_interval(mins => $2)
        ), seen AS (
            UPDATE user_session s SET last_seen_at = now() FROM live
             WHERE s.id = live.id AND live.last_seen_at <= now() - make_interval(secs => $3)
            RETURNING s.last_seen_at
        )
        SELECT id, user_id, stage, methods, created_at,
               coalesce((SELECT last_seen_at FROM seen), live.last_seen_at) AS last_seen_at, factor_at, scope_unit_id
          FROM live
        """,
        token_hash(token), settings.session_idle_minutes, float(SEEN_EVERY_SECONDS),
    )
    return Session(**row) if row else None


async def complete(conn: asyncpg.Connection, session: Session, method: str) -> tuple[str, Session]:
    """A second factor was just used: the session is full, its factor time now, its token new."""
    token = new_token()
    row = await conn.fetchrow(
        f"""
        UPDATE user_session
           SET token_hash = $2, stage = 'full', factor_at = now(),
               methods = CASE WHEN $3 = ANY (methods) THEN methods ELSE methods || $3 END
         WHERE id = $1 AND revoked_at IS NULL
        RETURNING {_COLUMNS}
        """,
        session.id, token_hash(token), method,
    )
    return token, Session(**row)


async def promote(conn: asyncpg.Connection, session: Session) -> tuple[str, Session]:
    """Full without a second factor: the one sign-in that may skip enrolment."""
    token = new_token()
    row = await conn.fetchrow(
        f"UPDATE user_session SET token_hash = $2, stage = 'full' WHERE id = $1 RETURNING {_COLUMNS}",
        session.id, token_hash(token),
    )
    return token, Session(**row)


async def set_scope(conn: asyncpg.Connection, session: Session, unit_id: UUID | None) -> Session:
    """Work in another scope: the whole tenant (None) or an org unit (the caller checked it is allowed)."""
    row = await conn.fetchrow(
        f"UPDATE user_session SET scope_unit_id = $2 WHERE id = $1 RETURNING {_COLUMNS}", session.id, unit_id)
    return Session(**row)


async def revoke(conn: asyncpg.Connection, user_id: UUID, session_id: UUID) -> bool:
    done = await conn.execute(
        "UPDATE user_session SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        session_id, user_id,
    )
    return done != "UPDATE 0"


async def revoke_all(conn: asyncpg.Connection, user_id: UUID, *, keep: UUID | None = None) -> int:
    done = await conn.execute(
        "UPDATE user_session SET revoked_at = now()"
        " WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2",
        user_id, keep,
    )
    return int(done.split()[-1])


async def live_sessions(conn: asyncpg.Connection, settings: Settings, user_id: UUID) -> list[Session]:
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM user_session
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
           AND last_seen_at > now() - make_interval(mins => $2)
         ORDER BY last_seen_at DESC
        """,
        user_id, settings.session_idle_minutes,
    )
    return [Session(**r) for r in rows]
