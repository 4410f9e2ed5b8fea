"""The end of a tenant's subscription, from which its retention period runs (DPA 9.1).

For RETENTION after the end the controller may still export everything, so the
tenant stays as it was; deletion (app.tenant_deletion.deletion) is refused
until the period is over. An end set by mistake is undone with `--undo`, but
not once a deletion has started. Both are recorded in the tenant's chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID

import asyncpg

from app.audit import AuditAction, Target, record
from app.db import set_tenant
from app.tenants import SLUG

RETENTION = timedelta(days=30)


class DeletionRefused(ValueError):
    """What the administrator asked for cannot be done; the message says why."""


@dataclass(frozen=True)
class TenantRow:
    id: UUID
    slug: str
    ended_at: datetime | None
    deleted_at: datetime | None


def allowed_from(ended_at: datetime) -> datetime:
    """The first moment a tenant that ended at `ended_at` may be deleted."""
    return ended_at + RETENTION


def when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


async def tenant_row(admin: asyncpg.Connection, slug: str, *, lock: bool = True) -> TenantRow:
    """The tenant named `slug`, deleted or not, made the transaction's tenant.

    With `lock`, its row is locked until the caller's transaction ends, so two
    administrators acting on one tenant at once act one after the other.
    """
    slug = (slug or "").strip().lower()
    query = "SELECT id, slug, ended_at, deleted_at FROM tenant WHERE slug = $1" + (" FOR UPDATE" if lock else "")
    row = await admin.fetchrow(query, slug) if SLUG.match(slug) else None
    if row is None:
        raise DeletionRefused(f"there is no tenant {slug!r}")
    await set_tenant(admin, row["id"])
    return TenantRow(**row)


async def end_subscription(admin: asyncpg.Connection, slug: str, *, at: datetime, actor: str) -> TenantRow:
    """Set when the tenant's subscription ended (or ends); recorded with the date deletion becomes possible."""
    if at.tzinfo is None:
        raise ValueError("the end of a subscription needs a time zone")
    async with admin.transaction():
        tenant = await tenant_row(admin, slug)
        if tenant.deleted_at is not None:
            raise DeletionRefused(f"tenant {tenant.slug} is deleted")
        await admin.execute("UPDATE tenant SET ended_at = $2 WHERE id = $1", tenant.id, at)
        await record(admin, AuditAction.TENANT_END, actor=actor, target=Target("tenant", str(tenant.id)),
                     data={"ended_at": at.isoformat(), "deletion_allowed_from": allowed_from(at).isoformat()})
    return TenantRow(tenant.id, tenant.slug, at, None)


async def resume_subscription(admin: asyncpg.Connection, slug: str, *, actor: str) -> TenantRow:
    """Undo the end of the subscription: the tenant goes on, and no deletion can start."""
    async with admin.transaction():
        tenant = await tenant_row(admin, slug)
        if tenant.deleted_at is not None:
            raise DeletionRefused(f"tenant {tenant.slug} is deleted: its end can no longer be undone")
        if tenant.ended_at is None:
            raise DeletionRefused(f"tenant {tenant.slug} has not ended: there is nothing to undo")
        await admin.execute("UPDATE tenant SET ended_at = NULL WHERE id = $1", tenant.id)
        await record(admin, AuditAction.TENANT_RESUME, actor=actor, target=Target("tenant", str(tenant.id)),
                     data={"ended_at": None, "was_ended_at": tenant.ended_at.isoformat()})
    return TenantRow(tenant.id, tenant.slug, None, None)
