"""Job health: for each scheduled job, its last run, its failure streak and when it runs next.

Read by the operator panel (everything) and the tenant admin area (`for_tenant_admins`:
job-level status only, since job_run has no tenant column and an error text can
name another tenant).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg

# Per job: its last run, and how many failed runs came after its last ok one.
STATUS = """
SELECT j.job, r.started_at, r.finished_at, r.outcome, r.error,
       (SELECT count(*) FROM job_run f
         WHERE f.job = j.job AND f.outcome = 'failed'
           AND f.id > coalesce((SELECT max(id) FROM job_run o WHERE o.job = j.job AND o.outcome = 'ok'), 0)
       ) AS failure_streak,
       (SELECT count(*) FROM job_alert a WHERE a.job = j.job AND a.sent_at IS NULL) AS alerts_unsent
  FROM unnest($1::text[]) AS j (job)
  LEFT JOIN LATERAL (SELECT * FROM job_run WHERE job = j.job ORDER BY started_at DESC, id DESC LIMIT 1) r ON true
"""


@dataclass(frozen=True)
class JobHealth:
    job: str
    every: timedelta
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None          # None: never run yet
    error: str | None
    failure_streak: int
    overdue: bool = False        # no run started for two rounds: the scheduler may be stopped everywhere
    alerts_unsent: int = 0       # alert mails no operator has received yet (app.jobs.alerts retries them)

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.started_at if self.finished_at and self.started_at else None

    @property
    def next_run(self) -> datetime | None:
        """When the scheduler runs it next: a round after the last start (None: at its first round)."""
        return self.started_at + self.every if self.started_at else None

    @property
    def failing(self) -> bool:
        return self.failure_streak > 0


async def job_health(conn: asyncpg.Connection | asyncpg.Pool, jobs, now: datetime | None = None) -> list[JobHealth]:
    """The health of `jobs` (app.jobs.Job), in their order, as of `now`."""
    now = now or datetime.now(timezone.utc)
    every = {job.name: job.every for job in jobs}
    rows = await conn.fetch(STATUS, list(every))
    return [JobHealth(job=r["job"], every=every[r["job"]], started_at=r["started_at"], finished_at=r["finished_at"],
                      outcome=r["outcome"], error=r["error"], failure_streak=r["failure_streak"],
                      overdue=r["started_at"] is not None and now > r["started_at"] + 2 * every[r["job"]],
                      alerts_unsent=r["alerts_unsent"])
            for r in rows]


def for_tenant_admins(health: JobHealth) -> JobHealth:
    """Without the error text (it may name other tenants: tenant_by_tenant reports the first failing one) or
    the operators' alert mail."""
    return JobHealth(job=health.job, every=health.every, started_at=health.started_at, finished_at=health.finished_at,
                     outcome=health.outcome, error=None, failure_streak=health.failure_streak, overdue=health.overdue)
