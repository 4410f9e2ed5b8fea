"""Deliver the mail outbox (app/mail.py `queue`, sql/0010_exception_govern.sql).

Each mail is claimed in its own tenant transaction (FOR UPDATE SKIP LOCKED, so
two senders never take the same row), sent, and marked sent in that same
transaction. A crash between the SMTP server's acceptance and the commit sends
that one mail again on the next run: SMTP has no way to make a send
idempotent, so the mail carries a Message-ID made from its row, by which the
receiving side can recognise the repeat. No mail is lost: until it is marked
sent it stays queued.

The recipient's address is read from app_user at sending time. A mail to a
user disabled since it was queued is dropped, not sent. A failed send is
retried later (5 minutes, doubling, at most 6 hours apart) and fails the run,
so it shows on the health page; the run stops at the first failure, as the
server is then most likely down for every other mail too. Delivered and
dropped rows are deleted after KEEP_DONE.
"""

from __future__ import annotations

import smtplib
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from app import mail
from app.config import Settings
from app.db import tenant_transaction

RETRY_FIRST = timedelta(minutes=5)
RETRY_LONGEST = timedelta(hours=6)
KEEP_DONE = timedelta(days=30)

_CLAIM = """
SELECT o.id, o.subject, o.body, o.attempts, u.email, u.disabled_at IS NULL AS active
  FROM mail_outbox o
  JOIN app_user u ON u.id = o.user_id
 WHERE o.status = 'queued' AND o.not_before <= $1
 ORDER BY o.created_at, o.id
 LIMIT 1
   FOR UPDATE OF o SKIP LOCKED
"""


class MailNotDelivered(RuntimeError):
    pass


async def deliver(pool: asyncpg.Pool, tenant_id: UUID, now: datetime, settings: Settings) -> dict[str, int]:
    """Send the tenant's queued mail that is due; counts of sent, dropped and deleted rows."""
    counts = {"sent": 0, "dropped": 0}
    while True:
        async with tenant_transaction(pool, tenant_id) as conn:
            row = await conn.fetchrow(_CLAIM, now)
            if row is None:
                break
            outcome, error = await _send_one(conn, row, now, settings)
        if error:  # raised once the retry time is committed
            raise MailNotDelivered(f"mail not delivered, to be retried: {error}")
        counts[outcome] += 1
    async with tenant_transaction(pool, tenant_id) as conn:
        counts["deleted"] = int((await conn.execute(
            "DELETE FROM mail_outbox WHERE status <> 'queued' AND done_at < $1", now - KEEP_DONE)).split()[-1])
    return counts


async def _send_one(conn: asyncpg.Connection, row, now: datetime, settings: Settings) -> tuple[str, str | None]:
    """('sent' | 'dropped', None), or ('queued', the error) with its next attempt scheduled."""
    if not row["active"]:
        await _done(conn, row["id"], "dropped", now, "the recipient's account is disabled")
        return "dropped", None
    try:
        await mail.send(settings, row["email"], row["subject"], row["body"],
                        message_id=f"<{row['id']}@{_domain(settings)}>")
    except (OSError, smtplib.SMTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        await conn.execute(
            "UPDATE mail_outbox SET attempts = attempts + 1, not_before = $2, last_error = $3 WHERE id = $1",
            row["id"], now + min(RETRY_FIRST * 2 ** min(row["attempts"], 10), RETRY_LONGEST), error)
        return "queued", error
    await _done(conn, row["id"], "sent", now)
    return "sent", None


async def _done(conn: asyncpg.Connection, outbox_id: UUID, status: str, now: datetime, error: str | None = None):
    await conn.execute(
        "UPDATE mail_outbox SET status = $2, done_at = $3, attempts = attempts + 1, last_error = $4 WHERE id = $1",
        outbox_id, status, now, error)


def _domain(settings: Settings) -> str:
    return settings.mail_from.rpartition("@")[2].strip("> ") or "exceptao.invalid"
