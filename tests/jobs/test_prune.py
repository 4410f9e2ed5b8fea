"""Pruning the sign-in throttle's counters: old ones go, live ones stay."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

from app.jobs import run_job
from app.jobs.prune import prune_throttle


async def test_prune_removes_old_counters_and_keeps_fresh_ones(pool, admin, settings):
    now = datetime.now(timezone.utc)
    rate_limits = {
        "ended-days-ago": now - timedelta(days=3),
        "ended-an-hour-ago": now - timedelta(hours=2),
        "running": now - timedelta(minutes=1),
    }
    guards = {  # (updated_at, not_before)
        "idle-for-months": (now - timedelta(days=90), now - timedelta(days=90)),
        "failed-yesterday": (now - timedelta(days=1), now - timedelta(days=1)),
        "locked-now": (now - timedelta(days=31), now + timedelta(minutes=5)),
    }
    buckets = {name: os.urandom(32) for name in (*rate_limits, *guards)}
    await admin.executemany("INSERT INTO rate_limit (bucket, window_start, hits) VALUES ($1, $2, 5)",
                            [(buckets[n], at) for n, at in rate_limits.items()])
    await admin.executemany("INSERT INTO signin_guard (bucket, failures, updated_at, not_before) VALUES ($1, 2, $2, $3)",
                            [(buckets[n], updated, not_before) for n, (updated, not_before) in guards.items()])

    run_id = await run_job(pool, "test-prune", prune_throttle, settings=settings, now=now)

    left_limits = {r["bucket"] for r in await admin.fetch("SELECT bucket FROM rate_limit")}
    left_guards = {r["bucket"] for r in await admin.fetch("SELECT bucket FROM signin_guard")}
    assert {n for n in rate_limits if buckets[n] in left_limits} == {"ended-an-hour-ago", "running"}
    assert {n for n in guards if buckets[n] in left_guards} == {"failed-yesterday", "locked-now"}
    row = await admin.fetchrow("SELECT outcome, detail FROM job_run WHERE id = $1", run_id)
    assert row["outcome"] == "ok"
    # Other tests' old rows may go too, never fewer than ours.
    detail = json.loads(row["detail"])
    assert detail["rate_limit"] >= 1 and detail["signin_guard"] >= 1
