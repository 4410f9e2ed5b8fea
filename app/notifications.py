"""In-app notifications: what the app tells one user (sql/0010_exception_govern.sql).

Reminders before an exception ends (app/exceptions/govern.py) make them; the
screens show them. Every function takes a connection inside the caller's
tenant transaction (`app.db.tenant_transaction`), and the screens pass the
signed-in user's id, so a user only ever reads or marks their own:

    await unread_count(conn, user_id) -> int
    await recent(conn, user_id, limit=20, unread_only=False) -> list[Notification]   # newest first
    await mark_read(conn, user_id, ids=None) -> int      # ids=None: all of theirs; returns how many changed

A notification's text is complete in itself and names the exception, never a
person; `exception_id` links to the exception it is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable
from uuid import UUID

import asyncpg

KINDS = ("reminder",)


@dataclass(frozen=True)
class Notification:
    id: UUID
    kind: str
    text: str
    exception_id: UUID | None
    created_at: datetime
    read_at: datetime | None

    @property
    def unread(self) -> bool:
        return self.read_at is None


async def notify(conn: asyncpg.Connection, user_id: UUID, kind: str, text: str,
                 *, exception_id: UUID | None = None) -> UUID:
    """A new unread notification for `user_id` in the current tenant."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    return await conn.fetchval(
        "INSERT INTO notification (tenant_id, user_id, exception_id, kind, text)"
        " VALUES (app_current_tenant(), $1, $2, $3, $4) RETURNING id",
        user_id, exception_id, kind, text)


async def unread_count(conn: asyncpg.Connection, user_id: UUID) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM notification WHERE user_id = $1 AND read_at IS NULL", user_id)


async def recent(conn: asyncpg.Connection, user_id: UUID, *, limit: int = 20,
                 unread_only: bool = False) -> list[Notification]:
    """The user's latest notifications, newest first (at most `limit`, 1 to 200)."""
    limit = max(1, min(int(limit), 200))
    rows = await conn.fetch(
        "SELECT id, kind, text, exception_id, created_at, read_at FROM notification"
        " WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL)"
        " ORDER BY created_at DESC, id LIMIT $3",
        user_id, unread_only, limit)
    return [Notification(**dict(r)) for r in rows]


async def mark_read(conn: asyncpg.Connection, user_id: UUID, ids: Iterable[UUID] | None = None) -> int:
    """Mark the user's notifications read: those in `ids` (others' ids are ignored), or all of them."""
    status = await conn.execute(
        "UPDATE notification SET read_at = clock_timestamp()"
        " WHERE user_id = $1 AND read_at IS NULL AND ($2::uuid[] IS NULL OR id = ANY($2::uuid[]))",
        user_id, None if ids is None else list(ids))
    return int(status.split()[-1])
