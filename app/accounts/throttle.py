"""Rate limits and the growing delay after failed sign-ins, kept in PostgreSQL so
every instance counts together.

What is counted (a client address, an account name) is stored only as an HMAC
under the application key: the tables hold no address or email in clear.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg


@dataclass(frozen=True)
class Limit:
    name: str
    hits: int
    seconds: int


# Per client address and per account, for each door an attacker can knock on.
SIGNIN_PER_ADDRESS = Limit("signin-address", 30, 300)
SIGNIN_PER_ACCOUNT = Limit("signin-account", 10, 300)
FACTOR_PER_ACCOUNT = Limit("factor-account", 10, 300)
RESET_PER_ADDRESS = Limit("reset-address", 10, 900)
RESET_PER_ACCOUNT = Limit("reset-account", 3, 900)

# Failed sign-ins for one account name: free for the first FREE_FAILURES, then
# the next attempt must wait 2, 4, 8 ... seconds, and from LOCK_AFTER failures on
# the account name is locked for LOCK_MINUTES.
FREE_FAILURES = 3
LOCK_AFTER = 10
LOCK_MINUTES = 15


def bucket(key: bytes, *parts: object) -> bytes:
    return hmac.new(key, "\x1f".join(str(p) for p in parts).encode(), hashlib.sha256).digest()


async def allow(conn: asyncpg.Connection | asyncpg.Pool, key: bytes, limit: Limit, *who: object) -> bool:
    """Count one attempt in the current window; False once the window's limit is passed."""
    hits = await conn.fetchval(
        """
        INSERT INTO rate_limit AS r (bucket, window_start, hits) VALUES ($1, now(), 1)
        ON CONFLICT (bucket) DO UPDATE SET
            hits = CASE WHEN r.window_start <= now() - make_interval(secs => $2) THEN 1 ELSE r.hits + 1 END,
            window_start = CASE WHEN r.window_start <= now() - make_interval(secs => $2)
                                THEN now() ELSE r.window_start END
        RETURNING hits
        """,
        bucket(key, limit.name, *who), float(limit.seconds),
    )
    return hits <= limit.hits


async def signin_wait(conn: asyncpg.Connection | asyncpg.Pool, key: bytes, *account: object) -> datetime | None:
    """When the account name may next try, if that is in the future."""
    return await conn.fetchval(
        "SELECT not_before FROM signin_guard WHERE bucket = $1 AND not_before > now()",
        bucket(key, "signin-failures", *account),
    )


async def signin_failed(conn: asyncpg.Connection | asyncpg.Pool, key: bytes, *account: object) -> int:
    """Count a failure; the number of failures in a row, this one included."""
    return await conn.fetchval(
        """
        INSERT INTO signin_guard AS g (bucket, failures, not_before) VALUES ($1, 1, now())
        ON CONFLICT (bucket) DO UPDATE SET
            failures = g.failures + 1,
            not_before = now() + CASE
                WHEN g.failures + 1 >= $2 THEN make_interval(mins => $3)
                WHEN g.failures + 1 > $4 THEN make_interval(secs => 2 ^ (g.failures + 1 - $4))
                ELSE interval '0' END,
            updated_at = now()
        RETURNING failures
        """,
        bucket(key, "signin-failures", *account), LOCK_AFTER, LOCK_MINUTES, FREE_FAILURES,
    )


async def signin_succeeded(conn: asyncpg.Connection | asyncpg.Pool, key: bytes, *account: object) -> None:
    await conn.execute("DELETE FROM signin_guard WHERE bucket = $1", bucket(key, "signin-failures", *account))


def wait_words(until: datetime, now: datetime) -> str:
    seconds = max(1, int((until - now) / timedelta(seconds=1)) + 1)
    return f"{seconds} seconds" if seconds < 120 else f"{(seconds + 59) // 60} minutes"
