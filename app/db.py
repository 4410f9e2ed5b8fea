"""The runtime connection pool and the tenant transaction every request runs in."""

from __future__ import annotations

from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import AsyncIterator
from uuid import UUID

import asyncpg

from app.config import Settings


async def open_pool(settings: Settings, dsn: str | None = None, *, name: str = "exceptao") -> asyncpg.Pool:
    """The runtime pool (the app role), or with `dsn` another role's pool sized alike."""
    return await asyncpg.create_pool(
        dsn or settings.runtime_database_url,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        statement_cache_size=settings.statement_cache,
        server_settings={"application_name": name},
    )


# The org unit a site-bound request works in. The guard hook sets it once the
# user's access is known; every tenant transaction of that request then runs
# under it, so a view cannot forget to narrow a site-bound user's rows.
current_org_unit: ContextVar[UUID | None] = ContextVar("current_org_unit", default=None)


@asynccontextmanager
async def tenant_transaction(
    pool: asyncpg.Pool, tenant_id: UUID, *, isolation: str = "read_committed", readonly: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """One transaction scoped to one tenant, and to the request's org unit when it has one.

    Both are set transaction-locally (set_config(..., true)), so they end with
    the transaction and are safe behind pgbouncer in transaction pooling.
    """
    async with pool.acquire() as conn:
        async with conn.transaction(isolation=isolation, readonly=readonly):
            await set_tenant(conn, tenant_id, current_org_unit.get())
            yield conn


async def set_tenant(conn: asyncpg.Connection, tenant_id: UUID, org_unit_id: UUID | None = None) -> None:
    await conn.execute(
        "SELECT set_config('app.current_tenant_id', $1, true), set_config('app.current_org_unit_id', $2, true)",
        str(tenant_id), str(org_unit_id) if org_unit_id else "",
    )


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


# Tables with an org_unit_id column that lack the restrictive org-unit policy
# (sql/0005_access.sql: scope_by_org_unit).
UNSCOPED_ORG_UNIT_TABLES = """
SELECT c.relname::text AS table_name
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND EXISTS (SELECT FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'org_unit_id' AND NOT a.attisdropped)
   AND NOT EXISTS (
           SELECT FROM pg_policy p
            WHERE p.polrelid = c.oid AND NOT p.polpermissive AND p.polcmd = '*'
              AND pg_get_expr(p.polqual, p.polrelid) LIKE '%org_unit_subtree(app_current_org_unit())%'
              AND pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%org_unit_subtree(app_current_org_unit())%')
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
    for row in await conn.fetch(UNSCOPED_ORG_UNIT_TABLES):
        problems.append(f"{row['table_name']}: has org_unit_id but lacks the org_unit_scope policy")
    return problems
