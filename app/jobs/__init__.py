"""Background jobs: run in-process on a schedule, one instance at a time, on the record.

Every run takes a PostgreSQL advisory lock named after the job, so with several
app instances only one runs it; the others skip that round. Each run is a
`job_run` row (sql/0007_jobs.sql): 'running', then 'ok' with what the work
reports, or 'failed' with the error. Jobs that touch tenant data go tenant by
tenant (`for_each_tenant`), each tenant in its own `app.db.tenant_transaction`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable, Callable
from uuid import UUID

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from quart import Quart

from app.jobs import prune

log = logging.getLogger(__name__)

# Two-key advisory locks live apart from one-key ones (the migration lock), so
# no job name can hash onto another lock of ours.
JOB_LOCKS = 0x4A4F4253  # "JOBS"

Work = Callable[[asyncpg.Pool, datetime], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    work: Work


JOBS: list[Job] = [
    Job("prune-throttle", timedelta(hours=1), prune.prune_throttle),
]


async def run_job(pool: asyncpg.Pool, name: str, work: Work, *, now: datetime | None = None) -> int | None:
    """Run `work` once under the job's lock; the job_run id, or None when another instance holds the lock."""
    now = now or datetime.now(timezone.utc)
    async with pool.acquire() as lock_conn:
        # Session-level, on a connection held for the whole run: the lock lasts
        # exactly as long as the run, and dies with the connection if it breaks.
        if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", JOB_LOCKS, name):
            return None
        try:
            run_id = await lock_conn.fetchval("INSERT INTO job_run (job) VALUES ($1) RETURNING id", name)
            try:
                detail = await work(pool, now)
                await finish(lock_conn, run_id, "ok", detail=json.dumps(detail or {}))
            except asyncio.CancelledError:
                await finish(lock_conn, run_id, "failed", error="cancelled: the app stopped during the run")
                raise
            except Exception as exc:
                # The exception text, never the arguments or the environment:
                # work functions receive only the pool and the time.
                log.exception("job %s failed (run %s)", name, run_id)
                await finish(lock_conn, run_id, "failed", error=f"{type(exc).__name__}: {exc}")
            return run_id
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", JOB_LOCKS, name)


async def finish(conn: asyncpg.Connection, run_id: int, outcome: str, *,
                 detail: str = "{}", error: str | None = None) -> None:
    await conn.execute(
        "UPDATE job_run SET finished_at = clock_timestamp(), outcome = $2, detail = $3::jsonb, error = $4"
        " WHERE id = $1",
        run_id, outcome, detail, error,
    )


async def for_each_tenant(pool: asyncpg.Pool) -> AsyncIterator[UUID]:
    """Every tenant's id, oldest first; read at once, so no connection is held between tenants."""
    for row in await pool.fetch("SELECT id FROM tenant ORDER BY created_at, id"):
        yield row["id"]


def start_scheduler(app: Quart) -> AsyncIOScheduler:
    """Schedule every job in JOBS on the app's pool; call once the pool is open."""
    pool = app.extensions["pool"]
    scheduler = AsyncIOScheduler(timezone=timezone.utc)
    for job in JOBS:
        # One run at a time per instance, and missed rounds collapse into one.
        scheduler.add_job(run_job, "interval", seconds=job.every.total_seconds(), args=(pool, job.name, job.work),
                          id=job.name, name=job.name, max_instances=1, coalesce=True)
    scheduler.start()
    app.extensions["scheduler"] = scheduler
    return scheduler


async def stop_scheduler(app: Quart) -> None:
    """Stop scheduling and cancel runs under way; call before the pool closes."""
    scheduler = app.extensions.pop("scheduler", None)
    if scheduler is not None and scheduler.running:
        scheduler.shutdown(wait=False)
        # AsyncIOScheduler shuts down on its loop's next turn.
        await asyncio.sleep(0)
