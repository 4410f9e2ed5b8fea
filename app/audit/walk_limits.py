"""How often a chain may be recomputed at length, by anyone who may ask for a verdict.

Anyone may ask for a tenant's verdict (GET /api/audit/verify) and an audit
reader may ask on the Audit trail page, and a long walk costs the app's one
process about 5 s of CPU per million rows (bench/README.md), time in which it
serves no other tenant. So a long walk is counted: one that recomputes more
than LONG_WALK rows, which is every full walk (?full=1) of a chain that size,
and the default walk too when the chain has no usable anchor or has grown far
past it. Short walks stay unlimited, whatever was asked for: they cost less than
a page view.

Each long walk counts against the asker (a client address, or a signed-in
person) for that tenant and against the tenant from all askers together. An
auditor who needs more walks checks an audit bundle offline.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from app.accounts import throttle
from app.audit.anchor_check import authority, latest_and_usable
from app.db import tenant_transaction

# About 0.3 s of one CPU at the bench's 166,000 rows/s.
LONG_WALK = 50_000
PER_ASKER = throttle.Limit("verify-long-asker", 6, 3600)
PER_TENANT = throttle.Limit("verify-long-tenant", 30, 3600)
TOO_MANY = ("This chain was recomputed at length too often in the last hour: a walk of more than {long_walk:,} rows "
            "is allowed {per_asker} times an hour to each asker and {per_tenant} times to the tenant in all. "
            "It is long when every row is asked for (full=1) or when the chain has no usable anchor or many rows "
            "after it; the check from a recent anchor is not limited. To check every row more often, export an "
            "audit bundle and verify it offline.").format(long_walk=LONG_WALK, per_asker=PER_ASKER.hits,
                                                          per_tenant=PER_TENANT.hits)
RETRY_AFTER = PER_ASKER.seconds


async def rows_to_walk(pool: asyncpg.Pool, tenant_id: UUID, settings, *, full: bool) -> int:
    """How many rows verify_tenant(..., full=full) would recompute now."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        end = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM audit_log WHERE tenant_id = $1", tenant_id)
        if full:
            return end
        _, usable = await latest_and_usable(conn, tenant_id, authority(settings))
    return end - usable.seq if usable is not None else end


async def walk_allowed(pool: asyncpg.Pool, settings, tenant_id: UUID, *, full: bool, asker: object) -> bool:
    """Whether this walk may run now; a long one is counted against `asker` and the tenant."""
    if await rows_to_walk(pool, tenant_id, settings, full=full) <= LONG_WALK:
        return True
    key = settings.secret_key
    return (await throttle.allow(pool, key, PER_ASKER, asker, tenant_id)
            and await throttle.allow(pool, key, PER_TENANT, tenant_id))
