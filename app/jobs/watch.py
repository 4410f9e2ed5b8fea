"""The job-watch job: what a failed run cannot report, because no run finishes.

A job whose run hangs (holding its lock, so no later round starts) or whose
instance died mid-run never reaches run_job's alert. So a separate small job,
every few minutes, looks at all of them from outside:

- a run still 'running' after STUCK_AFTER while nobody holds its job's lock
  (its instance died: the lock died with its connection) is closed as
  failed, saying so, and goes through the failure alert like any failed run,
  so the health page and the streak see it;
- a job that started no run for two rounds (app.jobs.health's overdue mark)
  mails the operators once per episode, and once when it runs again;
- an alert mail no operator received is sent again (app.jobs.alerts).

It is its own job rather than bookkeeping inside run_job because a stuck job
must be noticed by something that does not depend on that job's runs, and a
job of its own shows on the health page like the others. If the scheduler is
stopped everywhere, nothing runs, this included: the health page still marks
every job overdue for whoever looks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app.config import Settings
from app.jobs import alerts
from app.jobs.health import job_health

# Generous: the longest legitimate run (a first anchor walking a big chain) is far shorter.
STUCK_AFTER = timedelta(hours=6)

STUCK_RUNS = """
SELECT id, job, started_at FROM job_run
 WHERE outcome = 'running' AND started_at < $1
 ORDER BY job, id
"""


async def watch(pool: asyncpg.Pool, now: datetime, settings: Settings, jobs, locks: int) -> dict[str, Any]:
    """One round of watching `jobs` (app.jobs.Job) as of `now`; `locks` is the jobs' advisory-lock class."""
    async with pool.acquire() as conn:
        closed = await close_dead_runs(conn, settings, now, locks)
        overdue = await alert_overdue(conn, settings, jobs, now)
        retried = await alerts.retry_unsent(conn, settings, now)
    return {"dead_runs_closed": closed, **overdue, **retried}


async def close_dead_runs(conn: asyncpg.Connection, settings: Settings, now: datetime, locks: int) -> int:
    """Close as failed the runs 'running' since before now - STUCK_AFTER whose job's lock nobody holds."""
    closed = 0
    stuck: dict[str, list] = {}
    for run in await conn.fetch(STUCK_RUNS, now - STUCK_AFTER):
        stuck.setdefault(run["job"], []).append(run)
    for job, runs in stuck.items():
        closing = []
        # Holding the lock ourselves proves no live instance runs the job; a
        # round that starts meanwhile skips, as with any other instance. It is
        # a transaction's, so behind pgbouncer it is taken and let go on the
        # one server connection the transaction keeps (see app.jobs).
        async with conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, hashtext($2))", locks, job):
                continue  # a live run holds it: hanging perhaps, which the overdue alert reports
            for run in runs:
                error = (f"DeadRun: no end recorded {STUCK_AFTER.total_seconds() / 3600:g} h after its start "
                         f"({run['started_at']:%Y-%m-%d %H:%M:%S} UTC) and nobody runs the job: "
                         "its instance stopped during the run (closed by job-watch)")
                if await conn.fetchval(
                        "UPDATE job_run SET finished_at = clock_timestamp(), outcome = 'failed', error = $2"
                        " WHERE id = $1 AND outcome = 'running' RETURNING true", run["id"], error):
                    closing.append((run["id"], error))
        # Mailed once the closing is committed: the alert's claim (its primary key) keeps it to one.
        for run_id, error in closing:
            closed += 1
            await alerts.after_run(conn, settings, job, run_id, "failed", error)
    return closed


async def alert_overdue(conn: asyncpg.Connection, settings: Settings, jobs, now: datetime) -> dict[str, int]:
    """Mail 'overdue' once per episode of a job with no run for two rounds, 'running_again' once after it."""
    counts = {"overdue_alerts": 0, "running_again_alerts": 0}
    for health in await job_health(conn, jobs, now):
        if health.overdue:
            last = await conn.fetchval("SELECT max(id) FROM job_run WHERE job = $1", health.job)
            counts["overdue_alerts"] += await alerts.raise_alert(conn, settings, health.job, last, "overdue", last, now)
    # Episodes told about whose job has started a run since.
    for episode in await conn.fetch(
            "SELECT a.job, a.streak_start, (SELECT min(id) FROM job_run r WHERE r.job = a.job AND r.id > a.streak_start)"
            " AS next_run FROM job_alert a WHERE a.kind = 'overdue' AND a.job = ANY($1::text[])"
            " AND NOT EXISTS (SELECT FROM job_alert b WHERE b.job = a.job AND b.streak_start = a.streak_start"
            "                 AND b.kind = 'running_again')",
            [job.name for job in jobs]):
        if episode["next_run"] is not None:
            counts["running_again_alerts"] += await alerts.raise_alert(
                conn, settings, episode["job"], episode["streak_start"], "running_again", episode["next_run"], now)
    return counts
