"""Job health as the pages read it: last run, failure streak, next run, and a job that stopped running."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from app.jobs import Job, run_job
from app.jobs.health import for_tenant_admins, job_health


async def failing(pool, now, settings):
    raise ValueError("boom")


async def fine(pool, now, settings):
    return None


async def test_the_streak_counts_failures_since_the_last_ok_run(pool, settings):
    job = Job(f"test-health-{uuid.uuid4().hex[:6]}", timedelta(minutes=5), fine)
    [never] = await job_health(pool, [job])
    assert (never.outcome, never.failure_streak, never.next_run, never.overdue) == (None, 0, None, False)

    for work in (failing, fine, failing, failing):
        await run_job(pool, job.name, work, settings=settings)
    [health] = await job_health(pool, [job])
    assert (health.outcome, health.error, health.failure_streak) == ("failed", "ValueError: boom", 2)
    assert health.next_run == health.started_at + job.every
    assert health.duration is not None and not health.overdue
    assert for_tenant_admins(health).error is None and for_tenant_admins(health).failure_streak == 2


async def test_a_job_with_no_run_for_two_rounds_is_overdue(pool, settings):
    job = Job(f"test-health-{uuid.uuid4().hex[:6]}", timedelta(minutes=5), fine)
    await run_job(pool, job.name, fine, settings=settings)
    later = datetime.now(timezone.utc) + timedelta(minutes=11)
    [health] = await job_health(pool, [job], now=later)
    assert health.overdue and for_tenant_admins(health).overdue
