"""Never silent: a failing job mails the platform operators, once per failure streak.

After each finished run, `after_run` decides whether a mail is due: the first
failure after a success (or ever) raises a "failed" alert; the first success
after an alerted streak raises a "recovered" one. A job failing every minute
mails once, not every minute. The decision is a `job_alert` row
(sql/0017_job_alerts.sql) claimed by its primary key, so of two instances only
one sends. The mail holds the job's name and job_run's error text, never the
settings or anything else of the environment.
"""

from __future__ import annotations

import logging

import asyncpg

from app import mail
from app.config import Settings

log = logging.getLogger(__name__)

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
    claimed = await conn.fetchval(
        "INSERT INTO job_alert (job, streak_start, kind, run_id) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING RETURNING true",
        job, streak_start, kind, run_id)
    if not claimed:
        return None  # already sent for this streak, here or by another instance
    recipients = [row[0] for row in await conn.fetch("SELECT job_alert_recipients()")]
    subject, body = compose(settings, job, kind, run_id, error)
    sent = 0
    for to in recipients:
        try:
            await mail.send(settings, to, subject, body,
                            message_id=f"<job-alert-{job}-{streak_start}-{kind}@{settings.base_domain}>")
            sent += 1
        except Exception:
            # The claim stays: a mail server that is down must not turn into a
            # mail every minute when it comes back. The log still has it.
            log.exception("could not mail the %s alert for job %s to an operator", kind, job)
    if sent:
        await conn.execute("UPDATE job_alert SET sent_at = clock_timestamp()"
                           " WHERE job = $1 AND streak_start = $2 AND kind = $3", job, streak_start, kind)
    return kind


def compose(settings: Settings, job: str, kind: str, run_id: int, error: str | None) -> tuple[str, str]:
    panel = f"https://{settings.base_domain}/operator/jobs"
    if kind == "failed":
        return (f"Exceptao: job {job} failed",
                f"The background job {job} failed (run {run_id}):\n\n{error}\n\n"
                f"You will not be mailed again while it keeps failing; a mail follows when it next succeeds.\n"
                f"Job health: {panel}\n")
    return (f"Exceptao: job {job} recovered",
            f"The background job {job} succeeded again (run {run_id}) after failing.\nJob health: {panel}\n")
