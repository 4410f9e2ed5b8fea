"""The job runner: one run at a time across instances, every run on the record."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from app import create_app
from app.jobs import for_each_tenant, run_job, tenant_by_tenant


async def idle(pool, now, settings):
    """Work that does nothing: shows the lock is free again."""


async def test_one_instance_runs_a_job_while_another_holds_its_lock(pool, admin, settings):
    started, release = asyncio.Event(), asyncio.Event()
    runs = []

    async def work(pool, now, settings):
        runs.append(now)
        started.set()
        await release.wait()
        return {"done": 1}

    first = asyncio.create_task(run_job(pool, "test-overlap", work, settings=settings))
    await started.wait()
    second = await run_job(pool, "test-overlap", work, settings=settings)
    release.set()
    run_id = await first

    assert second is None
    assert len(runs) == 1
    row = await admin.fetchrow("SELECT job, outcome, finished_at, error, detail FROM job_run WHERE id = $1", run_id)
    assert (row["job"], row["outcome"], row["error"], row["detail"]) == ("test-overlap", "ok", None, '{"done": 1}')
    assert row["finished_at"] is not None
    # The lock went with the run: the next one goes ahead.
    assert await run_job(pool, "test-overlap", idle, settings=settings) is not None


async def test_other_jobs_are_not_held_up_by_a_running_one(pool, settings):
    release = asyncio.Event()

    async def slow(pool, now, settings):
        await release.wait()

    first = asyncio.create_task(run_job(pool, "test-slow", slow, settings=settings))
    await asyncio.sleep(0.1)
    assert await run_job(pool, "test-quick", idle, settings=settings) is not None
    release.set()
    assert await first is not None


async def test_a_failed_run_is_recorded_with_its_error(pool, admin, caplog, settings):
    async def work(pool, now, settings):
        raise ValueError("no such table")

    run_id = await run_job(pool, "test-failing", work, settings=settings)

    row = await admin.fetchrow("SELECT outcome, finished_at, error FROM job_run WHERE id = $1", run_id)
    assert row["outcome"] == "failed"
    assert row["finished_at"] is not None
    assert row["error"] == "ValueError: no such table"
    assert "job test-failing failed" in caplog.text
    # Failing did not keep the lock.
    assert await run_job(pool, "test-failing", idle, settings=settings) is not None


async def test_for_each_tenant_yields_every_tenant(pool, make_tenant):
    made = {(await make_tenant()).id for _ in range(2)}
    seen = [tenant_id async for tenant_id in for_each_tenant(pool)]
    assert made <= set(seen)
    assert len(seen) == len(set(seen))


async def test_the_scheduler_starts_and_stops_with_the_app(settings):
    app = create_app(replace(settings, jobs=True))
    async with app.test_app():
        scheduler = app.extensions["scheduler"]
        assert scheduler.running
        assert {job.id for job in scheduler.get_jobs()} == {"prune-throttle", "exception-lifecycle",
                                                             "exception-reminders", "mail-outbox", "audit-anchor",
                                                             "job-watch", "tenant-export"}
    assert not scheduler.running
    assert "scheduler" not in app.extensions


async def test_no_scheduler_with_jobs_off(settings):
    app = create_app(replace(settings, jobs=False))
    async with app.test_app():
        assert "scheduler" not in app.extensions


async def test_a_run_cut_short_is_recorded_as_failed(pool, admin, settings):
    started = asyncio.Event()

    async def work(pool, now, settings):
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(run_job(pool, "test-cut-short", work, settings=settings))
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    row = await admin.fetchrow("SELECT outcome, error FROM job_run WHERE job = 'test-cut-short'")
    assert row["outcome"] == "failed"
    assert row["error"].startswith("cancelled")
    assert await run_job(pool, "test-cut-short", idle, settings=settings) is not None


async def test_a_tenant_whose_work_fails_does_not_hold_up_the_others(pool, admin, make_tenant, settings):
    broken, fine = await make_tenant(), await make_tenant()
    done = []

    async def work(pool, tenant_id, now, settings):
        if tenant_id == broken.id:
            raise ValueError("no such table")
        done.append(tenant_id)
        return {"done": 1}

    run_id = await run_job(pool, "test-tenants", tenant_by_tenant(work), settings=settings)

    assert fine.id in done
    row = await admin.fetchrow("SELECT outcome, error FROM job_run WHERE id = $1", run_id)
    assert row["outcome"] == "failed"
    assert row["error"] == f"TenantsFailed: 1 tenant(s) failed, first tenant {broken.id}: ValueError: no such table"
