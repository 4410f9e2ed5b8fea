"""Never silent: a failing job mails the operators once per failure streak, and once when it recovers."""

from __future__ import annotations

import asyncio
import uuid

from app.jobs import alerts, run_job
from tests.jobs.conftest import mails


async def failing(pool, now, settings):
    raise RuntimeError("the authority did not answer")


async def fine(pool, now, settings):
    return {"done": 1}


async def test_a_failing_job_alerts_once_per_streak_and_once_on_recovery(pool, admin, smtp, mail_settings,
                                                                          operator_email):
    inbox, _ = smtp
    job = f"test-alert-{uuid.uuid4().hex[:6]}"

    await run_job(pool, job, failing, settings=mail_settings)
    await run_job(pool, job, failing, settings=mail_settings)
    # Two instances at the same moment: one holds the lock, the other skips the round.
    await asyncio.gather(*(run_job(pool, job, failing, settings=mail_settings) for _ in range(2)))

    sent = mails(inbox, operator_email, job)
    assert [m["Subject"] for m in sent] == [f"Exceptao: job {job} failed"]
    body = sent[0].get_payload(decode=True).decode()
    assert "RuntimeError: the authority did not answer" in body
    assert "smtp-secret-never-mailed" not in body

    await run_job(pool, job, fine, settings=mail_settings)
    await run_job(pool, job, fine, settings=mail_settings)
    sent = mails(inbox, operator_email, job)
    assert [m["Subject"] for m in sent] == [f"Exceptao: job {job} failed", f"Exceptao: job {job} recovered"]

    # A new streak is a new alert.
    await run_job(pool, job, failing, settings=mail_settings)
    assert len(mails(inbox, operator_email, job)) == 3
    kinds = await admin.fetch("SELECT kind, sent_at IS NOT NULL AS sent FROM job_alert WHERE job = $1 ORDER BY claimed_at",
                              job)
    assert [(r["kind"], r["sent"]) for r in kinds] == [("failed", True), ("recovered", True), ("failed", True)]


async def test_two_instances_deciding_the_same_alert_send_it_once(pool, smtp, mail_settings, operator_email):
    inbox, _ = smtp
    job = f"test-alert-{uuid.uuid4().hex[:6]}"
    run_id = await run_job(pool, job, failing, settings=mail_settings)
    assert len(mails(inbox, operator_email, job)) == 1

    # Past the job's lock (as if two instances finished the same streak): the job_alert row decides.
    async def decide():
        async with pool.acquire() as conn:
            return await alerts.after_run(conn, mail_settings, job, run_id, "failed", "RuntimeError: again")

    assert await asyncio.gather(decide(), decide()) == [None, None]
    assert len(mails(inbox, operator_email, job)) == 1


async def test_a_job_that_never_failed_sends_nothing(pool, smtp, mail_settings, operator_email):
    inbox, _ = smtp
    job = f"test-alert-{uuid.uuid4().hex[:6]}"
    await run_job(pool, job, fine, settings=mail_settings)
    assert mails(inbox, operator_email, job) == []


async def test_disabled_operators_are_not_mailed(pool, admin, smtp, mail_settings, operator_email):
    inbox, _ = smtp
    await admin.execute("UPDATE operator_account SET disabled_at = now() WHERE email = $1", operator_email)
    job = f"test-alert-{uuid.uuid4().hex[:6]}"
    await run_job(pool, job, failing, settings=mail_settings)
    assert mails(inbox, operator_email, job) == []
