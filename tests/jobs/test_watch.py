"""The job-watch job on a moved clock, mailing through a real SMTP server (aiosmtpd): overdue jobs, dead runs,
and alert mail that did not get through."""

from __future__ import annotations

import socket
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from app.jobs import JOB_LOCKS, JOBS, Job, run_job, watch
from app.jobs.alerts import RETRY_FIRST
from app.jobs.health import job_health
from tests.jobs.conftest import mails
from tests.jobs.test_alerts import failing, fine


def a_job(every=timedelta(minutes=5)) -> Job:
    return Job(f"test-watch-{uuid.uuid4().hex[:6]}", every, fine)


async def watch_round(pool, settings, jobs, now):
    """One run of a job-watch over `jobs`, recorded as run_job records it; its outcome and detail."""

    async def work(pool, now, settings):
        return await watch.watch(pool, now, settings, jobs, JOB_LOCKS)

    run_id = await run_job(pool, f"test-job-watch-{uuid.uuid4().hex[:6]}", work, settings=settings, now=now)
    return await pool.fetchrow("SELECT outcome, error, detail FROM job_run WHERE id = $1", run_id)


def subjects(inbox, to, job):
    return [m["Subject"] for m in mails(inbox, to, job)]


def test_job_watch_is_scheduled():
    assert "job-watch" in {job.name for job in JOBS}


async def test_an_overdue_job_mails_once_per_episode_and_once_when_it_runs_again(
        pool, smtp, mail_settings, operator_email):
    inbox, _ = smtp
    job = a_job()
    await run_job(pool, job.name, fine, settings=mail_settings)
    now = datetime.now(timezone.utc)

    await watch_round(pool, mail_settings, [job], now + timedelta(minutes=6))
    assert subjects(inbox, operator_email, job.name) == []  # one round late is not yet overdue

    for minutes in (11, 12, 30):
        run = await watch_round(pool, mail_settings, [job], now + timedelta(minutes=minutes))
        assert run["outcome"] == "ok"
    sent = mails(inbox, operator_email, job.name)
    assert [m["Subject"] for m in sent] == [f"Exceptao: job {job.name} is overdue"]
    assert "started no run for two rounds" in sent[0].get_payload(decode=True).decode()

    await run_job(pool, job.name, fine, settings=mail_settings)
    for _ in range(2):
        await watch_round(pool, mail_settings, [job], datetime.now(timezone.utc) + timedelta(minutes=1))
    assert subjects(inbox, operator_email, job.name) == [f"Exceptao: job {job.name} is overdue",
                                                         f"Exceptao: job {job.name} is running again"]

    # A new gap is a new episode.
    await watch_round(pool, mail_settings, [job], datetime.now(timezone.utc) + timedelta(minutes=11))
    assert len(mails(inbox, operator_email, job.name)) == 3


async def test_a_run_whose_instance_died_is_closed_as_failed_and_alerted(pool, admin, smtp, mail_settings,
                                                                         operator_email):
    inbox, _ = smtp
    job, live = a_job(), a_job()
    dead_run = await admin.fetchval("INSERT INTO job_run (job) VALUES ($1) RETURNING id", job.name)
    live_run = await admin.fetchval("INSERT INTO job_run (job) VALUES ($1) RETURNING id", live.name)
    # Another instance still runs `live`: it holds the job's lock.
    holder = await pool.acquire()
    assert await holder.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", JOB_LOCKS, live.name)
    try:
        now = datetime.now(timezone.utc)
        await watch_round(pool, mail_settings, [job, live], now + timedelta(hours=1))
        assert await pool.fetchval("SELECT outcome FROM job_run WHERE id = $1", dead_run) == "running"

        run = await watch_round(pool, mail_settings, [job, live], now + watch.STUCK_AFTER + timedelta(minutes=1))
        assert run["outcome"] == "ok"
    finally:
        await holder.execute("SELECT pg_advisory_unlock($1, hashtext($2))", JOB_LOCKS, live.name)
        await pool.release(holder)

    dead = await pool.fetchrow("SELECT outcome, error, finished_at FROM job_run WHERE id = $1", dead_run)
    assert dead["outcome"] == "failed" and "instance stopped during the run" in dead["error"]
    assert await pool.fetchval("SELECT outcome FROM job_run WHERE id = $1", live_run) == "running"
    [health, _] = await job_health(pool, [job, live])
    assert (health.outcome, health.failure_streak) == ("failed", 1)
    # No run started for two rounds: both were overdue an hour on; the dead run's failure came after.
    sent = mails(inbox, operator_email, job.name)
    assert [m["Subject"] for m in sent] == [f"Exceptao: job {job.name} is overdue", f"Exceptao: job {job.name} failed"]
    assert "DeadRun" in sent[1].get_payload(decode=True).decode()
    # The hanging one is not called failed: it may yet finish, and its overdue mail says it may be stuck.
    assert subjects(inbox, operator_email, live.name) == [f"Exceptao: job {live.name} is overdue"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_an_alert_the_mail_server_refused_is_sent_again_later(pool, smtp, mail_settings,
                                                                   operator_email):
    inbox, _ = smtp
    job = a_job()
    server_down = replace(mail_settings, smtp_port=closed_port())
    await run_job(pool, job.name, failing, settings=server_down)
    alert = await pool.fetchrow("SELECT sent_at, attempts, next_attempt_at, last_error FROM job_alert WHERE job = $1",
                                job.name)
    assert alert["sent_at"] is None and alert["attempts"] == 1
    assert "ConnectionRefusedError" in alert["last_error"] and operator_email not in alert["last_error"]
    assert mails(inbox, operator_email, job.name) == []

    # Still failing: no second alert is claimed, and the first waits for its retry.
    await run_job(pool, job.name, failing, settings=mail_settings)
    now = datetime.now(timezone.utc)
    await watch_round(pool, mail_settings, [], now + RETRY_FIRST / 2)
    assert mails(inbox, operator_email, job.name) == []

    run = await watch_round(pool, mail_settings, [], now + RETRY_FIRST + timedelta(seconds=1))
    assert run["outcome"] == "ok"
    sent = mails(inbox, operator_email, job.name)
    assert [m["Subject"] for m in sent] == [f"Exceptao: job {job.name} failed"]
    assert "RuntimeError: the authority did not answer" in sent[0].get_payload(decode=True).decode()
    assert await pool.fetchval("SELECT sent_at IS NOT NULL FROM job_alert WHERE job = $1", job.name)

    await watch_round(pool, mail_settings, [], now + RETRY_FIRST * 10)
    assert len(mails(inbox, operator_email, job.name)) == 1


async def test_an_unsent_alert_backs_off_while_the_server_stays_down(pool, smtp, mail_settings,
                                                                    operator_email):
    job = a_job()
    server_down = replace(mail_settings, smtp_port=closed_port())
    await run_job(pool, job.name, failing, settings=server_down)
    now = datetime.now(timezone.utc)
    await watch_round(pool, server_down, [], now + RETRY_FIRST + timedelta(seconds=1))
    alert = await pool.fetchrow("SELECT attempts, next_attempt_at FROM job_alert WHERE job = $1", job.name)
    assert alert["attempts"] == 2
    assert alert["next_attempt_at"] >= now + RETRY_FIRST + RETRY_FIRST * 2


async def test_operators_see_alert_mail_not_delivered_yet_and_tenant_admins_do_not(pool, smtp, mail_settings,
                                                                                  operator_email):
    from app.jobs.health import for_tenant_admins

    job = a_job()
    await run_job(pool, job.name, failing, settings=replace(mail_settings, smtp_port=closed_port()))
    [health] = await job_health(pool, [job])
    assert health.alerts_unsent == 1 and for_tenant_admins(health).alerts_unsent == 0
    await watch_round(pool, mail_settings, [], datetime.now(timezone.utc) + RETRY_FIRST + timedelta(seconds=1))
    [health] = await job_health(pool, [job])
    assert health.alerts_unsent == 0
