"""Never silent: a failing or stopped job mails the platform operators, once per episode.

After each finished run, `after_run` decides whether a mail is due: the first
failure after a success (or ever) raises a "failed" alert; the first success
after an alerted streak raises a "recovered" one. A job failing every minute
mails once, not every minute. The job-watch job (app.jobs.watch) raises
"overdue" when a job has started no run for two rounds, and "running_again"
when it next does. Each decision is a `job_alert` row (sql/0017_job_alerts.sql,
sql/0018_job_watch.sql) claimed by its primary key, so of two instances only
one sends. The mail holds the job's name and job_run's error text, never the
settings or anything else of the environment.

A mail no operator received (the mail server down) is not lost: its row stays
unsent and `retry_unsent` (run by job-watch) sends it again after a backoff,
with the same Message-ID. The claim still holds, so a server that comes back
gets the one alert, not one per failed run.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import asyncpg

from app import mail
from app.config import Settings

log = logging.getLogger(__name__)

# A claimed alert is left to its sender this long before a retry may take it
# (the sender may have died mid-send); after a failed send, 5 minutes doubling.
CLAIM_GRACE = timedelta(minutes=10)
RETRY_FIRST = timedelta(minutes=5)
RETRY_LONGEST = timedelta(hours=6)

# The first failed run of the streak `run_id` ends or belongs to: the earliest
# failed run after the job's last ok run before it.
STREAK_START = """
SELECT min(id) FROM job_run
 WHERE job = $1 AND outcome = 'failed' AND id <= $2
   AND id > coalesce((SELECT max(id) FROM job_run WHERE job = $1 AND outcome = 'ok' AND id < $2), 0)
"""


async def after_run(conn: asyncpg.Connection, settings: Settings, job: str, run_id: int, outcome: str,
                    error: str | None) -> str | None:
    """Send the alert this finished run calls for, if any; the kind sent ('failed', 'recovered') or None."""
    streak_start = await conn.fetchval(STREAK_START, job, run_id)
    if streak_start is None:
        return None  # an ok run with no failure before it since the last ok
    if outcome == "failed":
        kind = "failed"
    else:
        # Recovered only from a streak someone was told about.
        alerted = await conn.fetchval(
            "SELECT true FROM job_alert WHERE job = $1 AND streak_start = $2 AND kind = 'failed'", job, streak_start)
        if not alerted:
            return None
        kind = "recovered"
    return kind if await raise_alert(conn, settings, job, streak_start, kind, run_id) else None


async def raise_alert(conn: asyncpg.Connection, settings: Settings, job: str, key: int, kind: str, run_id: int,
                      now: datetime | None = None) -> bool:
    """Claim the alert (job, key, kind) and mail it; False when it was claimed before, here or elsewhere."""
    now = now or datetime.now(timezone.utc)
    claimed = await conn.fetchval(
        "INSERT INTO job_alert (job, streak_start, kind, run_id, next_attempt_at) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT DO NOTHING RETURNING true",
        job, key, kind, run_id, now + CLAIM_GRACE)
    if not claimed:
        return False
    await deliver(conn, settings, job, key, kind, now)
    return True


async def deliver(conn: asyncpg.Connection, settings: Settings, job: str, key: int, kind: str,
                  now: datetime) -> bool:
    """Mail a claimed alert to every enabled operator; on no delivery at all, schedule it again."""
    alert = await conn.fetchrow(
        "SELECT a.run_id, a.attempts, r.started_at, r.error FROM job_alert a JOIN job_run r ON r.id = a.run_id"
        " WHERE a.job = $1 AND a.streak_start = $2 AND a.kind = $3", job, key, kind)
    recipients = [row[0] for row in await conn.fetch("SELECT job_alert_recipients()")]
    subject, body = compose(settings, job, kind, alert["run_id"], alert["error"], alert["started_at"])
    sent, problem = 0, "no enabled operator to mail" if not recipients else None
    for to in recipients:
        try:
            await mail.send(settings, to, subject, body,
                            message_id=f"<job-alert-{job}-{key}-{kind}@{settings.base_domain}>")
            sent += 1
        except Exception as exc:
            # The kind of error only: an SMTP refusal names the operator's address.
            problem = f"{type(exc).__name__}"
            log.error("could not mail the %s alert for job %s to an operator: %s", kind, job, problem)
    if sent:
        await conn.execute("UPDATE job_alert SET sent_at = clock_timestamp(), attempts = attempts + 1"
                           " WHERE job = $1 AND streak_start = $2 AND kind = $3", job, key, kind)
        return True
    delay = min(RETRY_FIRST * 2 ** min(alert["attempts"], 10), RETRY_LONGEST)
    await conn.execute(
        "UPDATE job_alert SET attempts = attempts + 1, next_attempt_at = $4, last_error = $5"
        " WHERE job = $1 AND streak_start = $2 AND kind = $3", job, key, kind, now + delay, problem[:500])
    return False


async def retry_unsent(conn: asyncpg.Connection, settings: Settings, now: datetime) -> dict[str, int]:
    """Send again every alert no operator received whose next attempt is due; counts of sent and still unsent."""
    due = await conn.fetch(
        "SELECT job, streak_start, kind FROM job_alert WHERE sent_at IS NULL AND next_attempt_at <= $1"
        " ORDER BY claimed_at", now)
    sent = 0
    for alert in due:
        sent += await deliver(conn, settings, alert["job"], alert["streak_start"], alert["kind"], now)
    return {"alerts_resent": sent, "alerts_unsent": len(due) - sent}


def compose(settings: Settings, job: str, kind: str, run_id: int, error: str | None,
            started_at: datetime | None = None) -> tuple[str, str]:
    panel = f"https://{settings.base_domain}/operator/jobs"
    if kind == "failed":
        return (f"Exceptao: job {job} failed",
                f"The background job {job} failed (run {run_id}):\n\n{error}\n\n"
                f"You will not be mailed again while it keeps failing; a mail follows when it next succeeds.\n"
                f"Job health: {panel}\n")
    if kind == "overdue":
        since = f"{started_at:%Y-%m-%d %H:%M:%S} UTC" if started_at else "its last run"
        return (f"Exceptao: job {job} is overdue",
                f"The background job {job} has started no run for two rounds: its last run (run {run_id}) "
                f"started {since}. It may be stuck, or the scheduler may have stopped.\n\n"
                f"A mail follows when it runs again.\nJob health: {panel}\n")
    if kind == "running_again":
        return (f"Exceptao: job {job} is running again",
                f"The background job {job} started a run again (run {run_id}) after being overdue.\n"
                f"Job health: {panel}\n")
    return (f"Exceptao: job {job} recovered",
            f"The background job {job} succeeded again (run {run_id}) after failing.\nJob health: {panel}\n")
