"""The runtime connection pool and the tenant transaction every request runs in."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator
from uuid import UUID

import asyncpg

from app.config import Settings


async def open_pool(settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.runtime_database_url,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        statement_cache_size=settings.statement_cache,
        server_settings={"application_name": "exceptao"},
    )


@asynccontextmanager
async def tenant_transaction(
    pool: asyncpg.Pool, tenant_id: UUID, *, isolation: str = "read_committed", readonly: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """One transaction scoped to one tenant.

    The tenant is set transaction-locally (set_config(..., true)), so it ends
    with the transaction and is safe behind pgbouncer in transaction pooling.
    """
    async with pool.acquire() as conn:
        async with conn.transaction(isolation=isolation, readonly=readonly):
            await set_tenant(conn, tenant_id)
            yield conn


async def set_tenant(conn: asyncpg.Connection, tenant_id: UUID) -> None:
    await conn.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant_id))


# Tables with a tenant_id column that lack ENABLE + FORCE ROW LEVEL SECURITY
# or a policy comparing tenant_id with the current tenant.
UNPROTECTED_TENANT_TABLES = """
SELECT c.relname::text AS table_name,
       c.relrowsecurity AS rls_enabled,
       c.relforcerowsecurity AS rls_forced,
       EXISTS (
           SELECT FROM pg_policy p
            WHERE p.polrelid = c.oid
              AND p.polcmd = '*'
              AND pg_get_expr(p.polqual, p.polrelid) LIKE '%tenant_id%'
              AND pg_get_expr(p.polqual, p.polrelid) LIKE '%app_current_tenant()%'
       ) AS has_policy
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%'
   AND EXISTS (SELECT FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
 ORDER BY 1
"""


async def unprotected_tenant_tables(conn: asyncpg.Connection) -> list[str]:
    """Names of tenant tables the database does not isolate, with what each lacks."""
    problems = []
    for row in await conn.fetch(UNPROTECTED_TENANT_TABLES):
        missing = [
            what
            for what, ok in (
                ("ENABLE ROW LEVEL SECURITY", row["rls_enabled"]),
                ("FORCE ROW LEVEL SECURITY", row["rls_forced"]),
                ("a tenant_id = app_current_tenant() policy", row["has_policy"]),
            )
            if not ok
        ]
        if missing:
            problems.append(f"{row['table_name']}: lacks {', '.join(missing)}")
    return problems
