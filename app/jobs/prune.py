"""Prune the sign-in throttle's counters once they can no longer matter.

`rate_limit` and `signin_guard` (sql/0004_accounts.sql, app/accounts/throttle.py)
gain a row for every client address and account name that knocks; without
pruning they grow for ever. Both are platform data, so this job works on them
directly rather than tenant by tenant.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from app.accounts import throttle
from app.config import Settings

# Every limit the throttle defines, so a longer window added there is never cut short here.
LONGEST_WINDOW = timedelta(seconds=max(v.seconds for v in vars(throttle).values() if isinstance(v, throttle.Limit)))
RATE_LIMIT_KEEP = timedelta(days=1)
SIGNIN_GUARD_KEEP = timedelta(days=30)


async def prune_throttle(pool: asyncpg.Pool, now: datetime, settings: Settings) -> dict[str, int]:
    """Delete rate-limit windows that ended over a day ago and failure counts untouched for 30 days."""
    async with pool.acquire() as conn:
        rate_limits = await conn.fetchval(
            "WITH gone AS (DELETE FROM rate_limit WHERE window_start < $1 RETURNING 1) SELECT count(*) FROM gone",
            now - RATE_LIMIT_KEEP - LONGEST_WINDOW,
        )
        # A lock still in force is kept whatever its age.
        signin_guards = await conn.fetchval(
            "WITH gone AS (DELETE FROM signin_guard WHERE updated_at < $1 AND not_before < $2 RETURNING 1)"
            " SELECT count(*) FROM gone",
            now - SIGNIN_GUARD_KEEP, now,
        )
    return {"rate_limit": rate_limits, "signin_guard": signin_guards}
