"""Background jobs: run in-process on a schedule, one instance at a time, on the record.

Every run takes a PostgreSQL advisory lock named after the job, so with several
app instances only one runs it; the others skip that round. The lock is held
in a transaction open for the whole run, so behind pgbouncer in transaction
pooling it stays on one server connection: a running job occupies one of
pgbouncer's server connections, and its pool needs room for every job that
can run at once (seven) besides the requests. Each run is a `job_run` row
(sql/0007_jobs.sql): 'running', then 'ok' with what the work reports, or
'failed' with the error. Jobs that touch tenant data go tenant by tenant
(`tenant_by_tenant`, `for_each_tenant`), each tenant in its own
`app.db.tenant_transaction`. The work gets the pool, the job's clock `now`
(what is due is decided by it, so tests pass their own) and the settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable, Callable
from uuid import UUID

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from quart import Quart

from app.audit import anchor
from app.config import Settings
from app.jobs import alerts, exception_govern, outbox, prune, watch
from app.jobs.tenant_export import export_tenant

log = logging.getLogger(__name__)

# Two-key advisory locks live apart from one-key ones (the migration lock), so
# no job name can hash onto another lock of ours.
JOB_LOCKS = 0x4A4F4253  # "JOBS"

Work = Callable[[asyncpg.Pool, datetime, Settings], Awaitable[dict[str, Any] | None]]
# The work of a job for one tenant; `tenant_by_tenant` makes a Work of it.
TenantWork = Callable[[asyncpg.Pool, UUID, datetime, Settings], Awaitable[dict[str, int] | None]]


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    work: Work


class TenantsFailed(RuntimeError):
    pass


def tenant_by_tenant(work: TenantWork) -> Work:
    """Do `work` for every tenant, adding up the counts it reports.

    A tenant whose work fails does not hold up the others; the run fails after
    all of them, naming how many failed and the first error.
    """

    async def each_tenant(pool: asyncpg.Pool, now: datetime, settings: Settings) -> dict[str, int]:
        totals: Counter = Counter()
        failures = []
        async for tenant_id in for_each_tenant(pool):
            try:
                totals.update(await work(pool, tenant_id, now, settings) or {})
            except Exception as exc:
                log.exception("%s failed for tenant %s", work.__qualname__, tenant_id)
                failures.append(f"tenant {tenant_id}: {type(exc).__name__}: {exc}")
        if failures:
            raise TenantsFailed(f"{len(failures)} tenant(s) failed, first {failures[0]}")
        return dict(totals)

    return each_tenant


async def watch_jobs(pool: asyncpg.Pool, now: datetime, settings: Settings) -> dict[str, Any]:
    """The job-watch job: every job of JOBS looked at from outside (app.jobs.watch)."""
    return await watch.watch(pool, now, settings, JOBS, JOB_LOCKS)


JOBS: list[Job] = [
    Job("prune-throttle", timedelta(hours=1), prune.prune_throttle),
    # Dates are whole days: a quarter of an hour after midnight (UTC) at the latest.
    Job("exception-lifecycle", timedelta(minutes=15), tenant_by_tenant(exception_govern.lifecycle)),
    Job("exception-reminders", timedelta(hours=1), tenant_by_tenant(exception_govern.reminders)),
    Job("mail-outbox", timedelta(minutes=1), tenant_by_tenant(outbox.deliver)),
    Job("audit-anchor", timedelta(hours=1), tenant_by_tenant(anchor.anchor_tenant)),
    # Stuck and dead runs, overdue jobs, alert mail not yet received: what no run of theirs can report.
    Job("job-watch", timedelta(minutes=5), watch_jobs),
    Job("tenant-export", timedelta(minutes=1), tenant_by_tenant(export_tenant)),
]


async def run_job(pool: asyncpg.Pool, name: str, work: Work, *, settings: Settings,
                  now: datetime | None = None) -> int | None:
    """Run `work` once under the job's lock; the job_run id, or None when another instance holds the lock."""
    now = now or datetime.now(timezone.utc)
    # Transaction-level, in a transaction kept open on its own connection for
    # the whole run: the lock lasts exactly as long as the run and dies with the
    # connection if it breaks. Behind pgbouncer in transaction pooling only an
    # open transaction keeps a server connection to itself; a session lock
    # would be let go from whichever server came next, unlocking nothing, and
    # stay held for good. The run's records go through the pool, so they are
    # seen at once, not when the lock's transaction ends.
    async with pool.acquire() as lock_conn, lock_conn.transaction():
        if not await lock_conn.fetchval("SELECT pg_try_advisory_xact_lock($1, hashtext($2))", JOB_LOCKS, name):
            return None
        run_id = await pool.fetchval("INSERT INTO job_run (job) VALUES ($1) RETURNING id", name)
        try:
            detail = await work(pool, now, settings)
            await finish(pool, run_id, "ok", detail=json.dumps(detail or {}))
        except asyncio.CancelledError:
            await finish(pool, run_id, "failed", error="cancelled: the app stopped during the run")
            raise
        except Exception as exc:
            # The exception text, never the arguments or the environment
            # (the settings hold the SMTP password).
            log.exception("job %s failed (run %s)", name, run_id)
            await finish(pool, run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        async with pool.acquire() as conn:
            await alert(conn, settings, name, run_id)
        return run_id


async def finish(conn: asyncpg.Connection | asyncpg.Pool, run_id: int, outcome: str, *,
                 detail: str = "{}", error: str | None = None) -> None:
    await conn.execute(
        "UPDATE job_run SET finished_at = clock_timestamp(), outcome = $2, detail = $3::jsonb, error = $4"
        " WHERE id = $1",
        run_id, outcome, detail, error,
    )


async def alert(conn: asyncpg.Connection, settings: Settings, name: str, run_id: int) -> None:
    """Mail the operators if this run starts or ends a failure streak (app.jobs.alerts), still under the lock."""
    try:
        row = await conn.fetchrow("SELECT outcome, error FROM job_run WHERE id = $1", run_id)
        await alerts.after_run(conn, settings, name, run_id, row["outcome"], row["error"])
    except Exception:
        # The run is on the record whatever happens here; the health page shows it.
        log.exception("could not raise the alert for job %s (run %s)", name, run_id)


async def for_each_tenant(pool: asyncpg.Pool) -> AsyncIterator[UUID]:
    """Every tenant's id, oldest first, but deleted ones; read at once, so no connection is held between tenants."""
    for row in await pool.fetch("SELECT id FROM tenant WHERE deleted_at IS NULL ORDER BY created_at, id"):
        yield row["id"]


def start_scheduler(app: Quart) -> AsyncIOScheduler:
    """Schedule every job in JOBS on the app's pool; call once the pool is open."""
    pool = app.extensions["pool"]
    scheduler = AsyncIOScheduler(timezone=timezone.utc)
    for job in JOBS:
        # One run at a time per instance, and missed rounds collapse into one.
        scheduler.add_job(run_job, "interval", seconds=job.every.total_seconds(), args=(pool, job.name, job.work),
                          kwargs={"settings": app.config["EXCEPTAO"]},
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
