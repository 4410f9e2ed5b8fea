"""Deleting a tenant after its retention period (DPA 9.2), keeping only the pseudonymised audit rows (9.3).

Runs as the administrator connection (`exceptao tenant delete`), in two steps
so that a run stopped midway is simply run again:

1. The start, committed at once: the tenant is marked deleted, which makes it
   unreachable (its host answers 404, jobs skip it), tenant_deletion records
   when and by whom, and so does the tenant's chain. Then it waits for the job runs that may have
   begun before that.
2. One transaction: every identity in audit_pii pseudonymised
   (app.audit.erasure), every row of every other tenant table deleted,
   referencing tables first and the data keys last, the objects those rows
   named removed from the store, the name replaced, the counts written into
   the record and an event appended to the tenant's chain. The objects are
   removed before the commit: should it fail, the rows come back naming
   objects already gone, and the next run removes them again (removing an
   absent object does nothing). Two runs at once queue on the tenant's row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

import asyncpg

from app.audit import AuditAction, Target, record
from app.audit.erasure import pseudonymise_everyone
from app.storage import ObjectStore
from app.tenant_deletion.catalogue import KEPT, count_rows, tables_to_empty
from app.tenant_deletion.subscription import DeletionRefused, TenantRow, allowed_from, tenant_row, when

DELETED_NAME = "Deleted tenant"
BASIS = ("DPA 9.2 and 9.3: the tenant's retention period is over; its audit log records are kept with every "
         "actor's identity pseudonymised, and all other data of the tenant is deleted.")
AUDIT = ("audit_log", "audit_anchor", "audit_pii")


@dataclass(frozen=True)
class Deletion:
    """The record of a deletion: counts only."""

    tenant_id: UUID
    slug: str
    ended_at: datetime
    started_at: datetime
    started_by: str
    finished_at: datetime | None
    rows: dict[str, int] | None
    objects: int | None
    kept: dict[str, int] | None
    already: bool = False   # finished by an earlier run: this one changed nothing

    def as_json(self) -> dict:
        return {"tenant": self.slug, "id": str(self.tenant_id), "ended_at": self.ended_at.isoformat(),
                "started_at": self.started_at.isoformat(), "started_by": self.started_by,
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "deleted": {"rows": self.rows, "objects": self.objects}, "kept": self.kept,
                "already_deleted": self.already}


async def _record(admin: asyncpg.Connection, tenant: TenantRow, *, already: bool = False) -> Deletion | None:
    row = await admin.fetchrow(
        "SELECT ended_at, started_at, started_by, finished_at, rows, objects, kept FROM tenant_deletion"
        " WHERE tenant_id = $1", tenant.id)
    if row is None:
        return None
    counts = {k: json.loads(row[k]) if row[k] is not None else None for k in ("rows", "kept")}
    return Deletion(tenant.id, tenant.slug, **{**dict(row), **counts}, already=already)


def _check_retention(tenant: TenantRow, now: datetime) -> None:
    if tenant.ended_at is None:
        raise DeletionRefused(
            f"tenant {tenant.slug} has not ended: set the end of its subscription first "
            f"(exceptao tenant end {tenant.slug}); it can be deleted 30 days after that")
    if now <= allowed_from(tenant.ended_at):
        raise DeletionRefused(
            f"tenant {tenant.slug} ended on {when(tenant.ended_at)}; its data is kept for 30 days after the end "
            f"(DPA 9.1), so it can be deleted from {when(allowed_from(tenant.ended_at))}")


@dataclass(frozen=True)
class Removal:
    """What removing a tenant's data did, before its commit (or its rollback, for a dry run)."""

    rows: dict[str, int]
    objects: list[str]
    pseudonymised: int


async def _remove_data(admin: asyncpg.Connection, tenant: TenantRow) -> Removal:
    """Pseudonymise audit_pii, then empty every other tenant table, in the caller's transaction; objects stay."""
    pseudonymised = await pseudonymise_everyone(admin, tenant.id, basis=BASIS)
    if await admin.fetchval("SELECT count(*) FROM audit_pii WHERE tenant_id = $1 AND salt IS NOT NULL", tenant.id):
        raise RuntimeError("audit_pii still holds identities after pseudonymisation; nothing was deleted")
    rows, objects = await _empty_tables(admin, tenant.id)
    return Removal(rows, objects, pseudonymised)


async def _record_deletion(admin: asyncpg.Connection, tenant: TenantRow, removal: Removal, actor: str) -> dict:
    """Append the deletion to the tenant's chain (counts only); what is kept, its own event included."""
    # The chain's last word on the tenant. It joins the chain at commit, after the pseudonymisation's event.
    await record(admin, AuditAction.TENANT_DELETE, actor=actor, target=Target("tenant", str(tenant.id)),
                 data={"rows": removal.rows, "objects": len(removal.objects),
                       "audit_pii_pseudonymised": removal.pseudonymised,
                       "ended_at": tenant.ended_at.isoformat() if tenant.ended_at else None})
    kept = {name: await count_rows(admin, tenant.id, name) for name in AUDIT}
    # Events recorded in this transaction wait in audit_pending until its commit moves them into the chain.
    kept["audit_log"] += await count_rows(admin, tenant.id, "audit_pending")
    return {**kept, "audit_pii_pseudonymised": removal.pseudonymised}


async def plan_deletion(admin: asyncpg.Connection, slug: str, *, actor: str, now: datetime) -> dict:
    """What `delete_tenant` would remove and keep, as JSON; changes nothing.

    Exact because it is the deletion itself, rehearsed in a transaction that is
    always rolled back, with the objects only listed. The rows it deletes stay
    locked meanwhile, for the second or so it takes.
    """
    rehearsal = admin.transaction()
    await rehearsal.start()
    try:
        tenant = await tenant_row(admin, slug)
        done = await _record(admin, tenant)
        removal = await _remove_data(admin, tenant)
        kept = await _record_deletion(admin, tenant, removal, actor)
        if done is None:
            kept["audit_log"] += 1   # the event of the deletion's start, which a run commits first
    finally:
        await rehearsal.rollback()
    allowed = tenant.ended_at is not None and now > allowed_from(tenant.ended_at)
    return {
        "dry_run": True,
        "tenant": tenant.slug, "id": str(tenant.id),
        "ended_at": tenant.ended_at.isoformat() if tenant.ended_at else None,
        "deletion_allowed_from": allowed_from(tenant.ended_at).isoformat() if tenant.ended_at else None,
        "allowed_now": allowed or (done is not None and done.finished_at is None),
        "already_deleted": done is not None and done.finished_at is not None,
        "delete": {
            "rows": removal.rows,
            "objects": {"count": len(removal.objects), "names": removal.objects},
            "mail_queue": removal.rows.get("mail_outbox", 0),
            "notifications": removal.rows.get("notification", 0),
            "data_keys": removal.rows.get("tenant_key", 0),
        },
        "keep": {
            **kept,
            "tenant": "the row stays, marked deleted, its name replaced; the slug is never reused",
            "tenant_deletion": KEPT["tenant_deletion"],
        },
    }


async def _start(admin: asyncpg.Connection, slug: str, *, actor: str, now: datetime) -> tuple[TenantRow, Deletion]:
    async with admin.transaction():
        tenant = await tenant_row(admin, slug)
        started = await _record(admin, tenant)
        if started is None:
            _check_retention(tenant, now)
            await admin.execute("INSERT INTO tenant_deletion (tenant_id, ended_at, started_by) VALUES ($1, $2, $3)",
                                tenant.id, tenant.ended_at, actor)
            await admin.execute("UPDATE tenant SET deleted_at = $2 WHERE id = $1", tenant.id, now)
            await record(admin, AuditAction.TENANT_DELETE_START, actor=actor, target=Target("tenant", str(tenant.id)),
                         data={"ended_at": tenant.ended_at.isoformat()})
            started = await _record(admin, tenant)
    return tenant, started


async def _after_running_jobs(admin: asyncpg.Connection) -> None:
    """Wait for the job runs under way, which may have begun before the tenant was marked deleted.

    Each run holds its job's advisory lock throughout (app.jobs.run_job), and
    later runs skip deleted tenants: once every lock has been taken and let go,
    no job is writing the tenant's rows or objects (an export's archive, say).
    """
    from app.jobs import JOB_LOCKS, JOBS

    for job in JOBS:
        await admin.execute("SELECT pg_advisory_lock($1, hashtext($2))", JOB_LOCKS, job.name)
        await admin.execute("SELECT pg_advisory_unlock($1, hashtext($2))", JOB_LOCKS, job.name)


async def delete_tenant(admin: asyncpg.Connection, store: ObjectStore, slug: str, *, actor: str,
                        now: datetime) -> Deletion:
    """Delete the tenant's data, keep its pseudonymised chain; DeletionRefused before the retention period is over.

    Safe to run again: a finished deletion is returned as it was recorded
    (`already`), an unfinished one is carried on.
    """
    tenant, started = await _start(admin, slug, actor=actor, now=now)
    if started.finished_at is not None:
        return replace(started, already=True)
    await _after_running_jobs(admin)
    async with admin.transaction():
        tenant = await tenant_row(admin, slug)   # a second run at once waits here, then finds it finished
        done = await _record(admin, tenant, already=True)
        if done.finished_at is not None:
            return done
        removal = await _remove_data(admin, tenant)
        await _remove_objects(store, removal.objects)
        await admin.execute("UPDATE tenant SET name = $2, audit_public = false WHERE id = $1",
                            tenant.id, DELETED_NAME)
        kept = await _record_deletion(admin, tenant, removal, actor)
        await admin.execute(
            "UPDATE tenant_deletion SET finished_at = clock_timestamp(), rows = $2::jsonb, objects = $3,"
            " kept = $4::jsonb WHERE tenant_id = $1",
            tenant.id, _json(removal.rows), len(removal.objects), _json(kept))
        return await _record(admin, tenant)


async def _empty_tables(admin: asyncpg.Connection, tenant_id: UUID) -> tuple[dict[str, int], list[str]]:
    """Delete the tenant's rows of every table to empty; the objects the deleted rows named."""
    rows: dict[str, int] = {}
    objects: list[str] = []
    for table in await tables_to_empty(admin):
        if table.object_columns:
            # RETURNING, not a SELECT before: a row committed meanwhile is deleted with its object named.
            deleted = await admin.fetch(
                f"DELETE FROM {table.quoted} WHERE tenant_id = $1 RETURNING {', '.join(table.object_columns)}",
                tenant_id)
            rows[table.name] = len(deleted)
            objects += [name for row in deleted for name in row.values() if name is not None]
        else:
            status = await admin.execute(f"DELETE FROM {table.quoted} WHERE tenant_id = $1", tenant_id)
            rows[table.name] = int(status.split()[-1])
    return rows, objects


class StoreFailed(RuntimeError):
    """Removing an object failed: the transaction rolled back, the tenant stays marked deleted; run it again."""


async def _remove_objects(store: ObjectStore, names: list[str]) -> None:
    for name in names:
        try:
            await store.delete(name)
        except Exception as exc:   # local: OSError; S3: botocore's errors. Names are opaque, safe to show.
            raise StoreFailed(f"the object store did not remove {name}: {type(exc).__name__}: {exc}") from exc


def _json(value: dict) -> str:
    return json.dumps(value)
