"""The tenant_export rows (sql/0020_tenant_export.sql): asked for, claimed, moved along, finished, listed.

Each function takes a connection in the tenant's transaction; the caller
owns it. Every change of state is recorded in the chain in that transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from app.audit import AuditAction, Target, record
from app.audit.events import system_actor, user_actor

KEEP = timedelta(days=7)       # how long a finished archive can be downloaded
JOB = "tenant-export"
STEPS = {"tables": "Writing the tables", "evidence": "Decrypting evidence files", "audit": "Adding the audit bundle",
         "storing": "Encrypting and storing the archive"}


@dataclass(frozen=True)
class Export:
    id: UUID
    requested_by: UUID
    requester_name: str
    requested_at: datetime
    state: str
    progress: dict
    object_key: str | None
    size: int | None
    sha256: bytes | None
    chain_seq: int | None
    chain_hash: bytes | None
    error: str | None
    finished_at: datetime | None
    expires_at: datetime | None

    @property
    def working(self) -> bool:
        return self.state in ("queued", "running")

    def downloadable(self, now: datetime) -> bool:
        return self.state == "done" and self.object_key is not None and self.expires_at > now

    @property
    def step(self) -> str:
        return STEPS.get(self.progress.get("step", ""), "Waiting for the export job")

    @property
    def percent(self) -> int:
        total = self.progress.get("total") or 0
        return min(100, self.progress.get("done", 0) * 100 // total) if total else 0


_SELECT = """
SELECT x.id, x.requested_by, coalesce(u.display_name, 'someone') AS requester_name, x.requested_at, x.state,
       x.progress, x.object_key, x.size, x.sha256, x.chain_seq, x.chain_hash, x.error, x.finished_at, x.expires_at
  FROM tenant_export x
  LEFT JOIN app_user u ON u.id = x.requested_by
"""


def _export(row: asyncpg.Record) -> Export:
    values = dict(row)
    values["progress"] = json.loads(values["progress"])
    for name in ("sha256", "chain_hash"):
        values[name] = bytes(values[name]) if values[name] is not None else None
    return Export(**values)


async def request_export(conn: asyncpg.Connection, user_id: UUID) -> UUID:
    """Queue an export of the current tenant for the tenant-export job."""
    export_id = await conn.fetchval(
        "INSERT INTO tenant_export (tenant_id, requested_by) VALUES (app_current_tenant(), $1) RETURNING id", user_id)
    await record(conn, AuditAction.TENANT_EXPORT_REQUEST, actor=user_actor(user_id),
                 target=Target("tenant_export", str(export_id)))
    return export_id


async def recent(conn: asyncpg.Connection, limit: int = 20) -> list[Export]:
    return [_export(r) for r in await conn.fetch(_SELECT + " ORDER BY x.requested_at DESC LIMIT $1", limit)]


async def get_export(conn: asyncpg.Connection, export_id: UUID) -> Export | None:
    row = await conn.fetchrow(_SELECT + " WHERE x.id = $1", export_id)
    return _export(row) if row else None


async def fail_interrupted(conn: asyncpg.Connection) -> int:
    """Exports left 'running' by a run that died. Called under the job's lock, so none of them is still running."""
    ids = await conn.fetch("UPDATE tenant_export SET state = 'failed', finished_at = clock_timestamp(),"
                           " error = 'interrupted: the export job stopped before it finished; ask again'"
                           " WHERE state = 'running' RETURNING id")
    for row in ids:
        await record(conn, AuditAction.TENANT_EXPORT_FAIL, actor=system_actor(JOB),
                     target=Target("tenant_export", str(row["id"])), data={"reason": "interrupted"})
    return len(ids)


async def has_work(conn: asyncpg.Connection, now: datetime) -> bool:
    """Whether an export waits to be made, or a finished archive to be deleted."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT FROM tenant_export WHERE state = 'queued')"
        " OR EXISTS (SELECT FROM tenant_export WHERE state = 'done' AND object_key IS NOT NULL AND expires_at <= $1)",
        now)


async def claim_next(conn: asyncpg.Connection) -> UUID | None:
    """The oldest queued export, now 'running'; None when none waits (or another transaction holds it)."""
    export_id = await conn.fetchval("SELECT id FROM tenant_export WHERE state = 'queued'"
                                    " ORDER BY requested_at, id LIMIT 1 FOR UPDATE SKIP LOCKED")
    if export_id is None:
        return None
    await conn.execute("UPDATE tenant_export SET state = 'running', started_at = clock_timestamp(),"
                       " progress = '{\"step\": \"tables\", \"done\": 0, \"total\": 0}' WHERE id = $1", export_id)
    await record(conn, AuditAction.TENANT_EXPORT_START, actor=system_actor(JOB),
                 target=Target("tenant_export", str(export_id)))
    return export_id


async def set_progress(conn: asyncpg.Connection, export_id: UUID, step: str, done: int, total: int) -> None:
    # Progress is not a change of state worth a chain entry: it is shown while the job runs, then overwritten.
    await conn.execute("UPDATE tenant_export SET progress = $2::jsonb WHERE id = $1 AND state = 'running'",
                       export_id, json.dumps({"step": step, "done": done, "total": total}))


async def finish(conn: asyncpg.Connection, export_id: UUID, *, object_key: str, size: int, sha256: bytes,
                 chain_seq: int, chain_hash: bytes | None, now: datetime) -> None:
    await conn.execute(
        "UPDATE tenant_export SET state = 'done', finished_at = clock_timestamp(), object_key = $2, size = $3,"
        " sha256 = $4, chain_seq = $5, chain_hash = $6, expires_at = $7,"
        " progress = jsonb_set(progress, '{done}', progress -> 'total') WHERE id = $1",
        export_id, object_key, size, sha256, chain_seq, chain_hash, now + KEEP)
    await record(conn, AuditAction.TENANT_EXPORT_DONE, actor=system_actor(JOB),
                 target=Target("tenant_export", str(export_id)),
                 data={"size": size, "sha256": sha256.hex(), "chain_seq": chain_seq})


async def fail(conn: asyncpg.Connection, export_id: UUID, error: str) -> None:
    await conn.execute("UPDATE tenant_export SET state = 'failed', finished_at = clock_timestamp(), error = $2"
                       " WHERE id = $1", export_id, error[:1000])
    await record(conn, AuditAction.TENANT_EXPORT_FAIL, actor=system_actor(JOB),
                 target=Target("tenant_export", str(export_id)), data={"reason": "error"})


async def expired(conn: asyncpg.Connection, now: datetime) -> list[tuple[UUID, str]]:
    """Finished archives past their expiry whose object is still stored: (export id, object key)."""
    return [(r["id"], r["object_key"]) for r in await conn.fetch(
        "SELECT id, object_key FROM tenant_export WHERE state = 'done' AND object_key IS NOT NULL"
        " AND expires_at <= $1 FOR UPDATE SKIP LOCKED", now)]


async def forget_object(conn: asyncpg.Connection, export_id: UUID) -> None:
    await conn.execute("UPDATE tenant_export SET object_key = NULL WHERE id = $1", export_id)
    await record(conn, AuditAction.TENANT_EXPORT_EXPIRE, actor=system_actor(JOB),
                 target=Target("tenant_export", str(export_id)))


async def record_download(conn: asyncpg.Connection, user_id: UUID, export: Export) -> None:
    await record(conn, AuditAction.TENANT_EXPORT_DOWNLOAD, actor=user_actor(user_id),
                 target=Target("tenant_export", str(export.id)),
                 data={"size": export.size, "sha256": export.sha256.hex()})
