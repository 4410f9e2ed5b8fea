"""What operators see of tenants and do to them: the list with chain status, suspend, restore, verify.

Suspending and restoring are recorded in the tenant's own chain, in the same
transaction as the change, with actor operator:<uuid>. Verifying changes no
tenant data: its verdict is kept in tenant_chain_status, platform data.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from app.audit import AuditAction, Pii, Target, record
from app.audit.events import operator_actor
from app.audit.anchor_check import authority
from app.audit.verify import Verdict, verify_chain
from app.config import Settings
from app.db import tenant_transaction
from app.operator.accounts import Operator

LIST_LIMIT = 200
REASON_MAX = 500


@dataclass(frozen=True)
class TenantStatus:
    id: UUID
    slug: str
    name: str
    audit_public: bool
    created_at: datetime
    suspended_at: datetime | None
    ended_at: datetime | None      # end of subscription (app.tenant_deletion)
    deleted_at: datetime | None
    head_seq: int | None
    checked_at: datetime | None
    ok: bool | None
    total_rows: int | None
    broken_at: int | None
    detail: str | None


async def list_tenants(conn: asyncpg.Connection | asyncpg.Pool, search: str = "") -> list[TenantStatus]:
    """Tenants whose slug or name contains `search`, by slug, at most LIST_LIMIT."""
    rows = await conn.fetch(
        """
        SELECT t.id, t.slug, t.name, t.audit_public, t.created_at, t.suspended_at, t.ended_at, t.deleted_at,
               (SELECT l.seq FROM audit_log l WHERE l.tenant_id = t.id ORDER BY l.seq DESC LIMIT 1) AS head_seq,
               s.checked_at, s.ok, s.total_rows, s.broken_at, s.detail
          FROM tenant t LEFT JOIN tenant_chain_status s ON s.tenant_id = t.id
         WHERE $1 = '' OR strpos(t.slug, lower($1)) > 0 OR strpos(lower(t.name), lower($1)) > 0
         ORDER BY t.slug
         LIMIT $2
        """,
        search, LIST_LIMIT,
    )
    return [TenantStatus(**r) for r in rows]


class Change(enum.Enum):
    DONE = "done"
    ALREADY = "already"     # suspended (or active) before this request: nothing changed, nothing recorded
    NO_TENANT = "no_tenant"


async def suspend(pool: asyncpg.Pool, tenant_id: UUID, operator: Operator, reason: str, pii: Pii) -> Change:
    """Suspend the tenant and end its users' sessions; recorded with the reason."""
    async with tenant_transaction(pool, tenant_id) as conn:
        change = await _set_suspended(conn, tenant_id, True)
        if change is Change.DONE:
            revoked = await conn.execute(
                "UPDATE user_session SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL", tenant_id)
            await record(conn, AuditAction.TENANT_SUSPEND, actor=operator_actor(operator.id),
                         target=Target("tenant", str(tenant_id)), pii=pii,
                         data={"reason": reason, "sessions_revoked": int(revoked.split()[-1])})
    return change


async def restore(pool: asyncpg.Pool, tenant_id: UUID, operator: Operator, pii: Pii) -> Change:
    async with tenant_transaction(pool, tenant_id) as conn:
        change = await _set_suspended(conn, tenant_id, False)
        if change is Change.DONE:
            await record(conn, AuditAction.TENANT_RESTORE, actor=operator_actor(operator.id),
                         target=Target("tenant", str(tenant_id)), pii=pii)
    return change


async def _set_suspended(conn: asyncpg.Connection, tenant_id: UUID, suspended: bool) -> Change:
    # Row-locked, so two operators pressing at once make one change and one event. A deleted tenant has
    # nobody left to suspend.
    was = await conn.fetchrow("SELECT suspended_at IS NOT NULL AS suspended FROM tenant"
                              " WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", tenant_id)
    if was is None:
        return Change.NO_TENANT
    if was["suspended"] == suspended:
        return Change.ALREADY
    await conn.execute("UPDATE tenant SET suspended_at = CASE WHEN $2 THEN now() END WHERE id = $1",
                       tenant_id, suspended)
    return Change.DONE


async def verify(pool: asyncpg.Pool, settings: Settings, tenant_id: UUID, operator: Operator) -> Verdict | None:
    """Walk the tenant's chain as the operator role and keep the verdict; None when there is no such tenant."""
    if not await pool.fetchval("SELECT EXISTS (SELECT FROM tenant WHERE id = $1)", tenant_id):
        return None
    verdict = await verify_chain(pool, tenant_id, batch=settings.verify_batch, workers=settings.verify_workers,
                                 dsn=settings.operator_pool_url, authority=authority(settings))
    await pool.execute(
        """
        INSERT INTO tenant_chain_status AS s (tenant_id, checked_at, checked_by, ok, total_rows, broken_at, detail)
        VALUES ($1, now(), $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_id) DO UPDATE SET
            checked_at = now(), checked_by = $2, ok = $3, total_rows = $4, broken_at = $5, detail = $6
        """,
        tenant_id, operator.id, verdict.ok, verdict.total_rows, verdict.broken_at, verdict.reason,
    )
    return verdict
