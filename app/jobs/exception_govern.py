"""The scheduled side of governing exceptions (app/exceptions/govern.py), one tenant transaction each.

"exception-lifecycle" activates, marks expiring soon and expires; "exception-
reminders" makes the 90/60/30-day reminders, whose mail the outbox job sends.
The job's clock (`now`) decides what is due, so tests move it by passing `now`.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from app.config import Settings
from app.db import tenant_transaction
from app.exceptions import govern


async def lifecycle(pool: asyncpg.Pool, tenant_id: UUID, now: datetime, settings: Settings) -> dict[str, int]:
    async with tenant_transaction(pool, tenant_id) as conn:
        return dict(await govern.follow_calendar(conn, govern.utc_day(now)))


async def reminders(pool: asyncpg.Pool, tenant_id: UUID, now: datetime, settings: Settings) -> dict[str, int]:
    async with tenant_transaction(pool, tenant_id) as conn:
        slug = await conn.fetchval("SELECT slug FROM tenant WHERE id = $1", tenant_id)
        return dict(await govern.send_reminders(
            conn, govern.utc_day(now), lambda exception_id: settings.site_url(slug, f"/exceptions/{exception_id}")))
