"""Governing approved exceptions over time: activation, expiry, reminders, re-attestation.

The calendar is in whole days, UTC: `today` is the UTC date of the job's clock.

Lifecycle (`follow_calendar`, job "exception-lifecycle"), always through
`engine.transition`, so the transition rows must allow each step and each
writes an event and an audit-chain entry:

- APPROVED whose start date has come → ACTIVE (actor system:activation);
- ACTIVE with 30 days or fewer to its end date → EXPIRING_SOON (system:expiry);
- ACTIVE or EXPIRING_SOON on or after its end date → EXPIRED (system:expiry):
  the end date is the first day the exception no longer covers the deviation.
An exception approved after its whole term has passed goes ACTIVE, then EXPIRED,
in the same run; one that starts inside its last 30 days goes ACTIVE, then
EXPIRING_SOON.

Reminders (`send_reminders`, job "exception-reminders") go 90, 60 and 30 days
before the end date to the owner and to the users who approved it (the approval
events of its last review round), by email (the outbox, app/mail.py) and
in-app (app/notifications.py), while the exception is ACTIVE or EXPIRING_SOON.
Exactly once per threshold: an `exception_reminder` row per exception, end
date and threshold is inserted first, and only the run whose insert lands
writes the rest, in the same transaction. When a run finds several thresholds
passed at once (an exception approved with 20 days left, or a scheduler that
was down for weeks), it sends only the nearest one: the 30-day reminder says
what matters now, and three mails at once would say it three times. Each
reminder is an `exception_event` of kind 'reminder' and an audit entry
(exception:exception:remind) naming the recipients by user id, never by address.

Re-attestation (`attest`): the owner confirms that the deviation and the
compensating controls still hold, with a comment, while the exception is
ACTIVE or EXPIRING_SOON; an event of kind 'attestation' and an audit entry
(exception:exception:attest).

    await attest(conn, exception_id, actor, comment) -> None    # raises engine.TransitionRefused
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date, datetime, timezone
from typing import Callable
from uuid import UUID

import asyncpg

from app import mail
from app.audit import AuditAction, Target, record
from app.audit.events import system_actor, user_actor
from app.exceptions.engine import Actor, TransitionRefused, transition
from app.notifications import notify

log = logging.getLogger(__name__)

EXPIRING_SOON_DAYS = 30
REMINDER_DAYS = (90, 60, 30)
REMINDER_ACTOR = "reminders"     # system:reminders in events and the audit chain
ATTESTABLE = ("ACTIVE", "EXPIRING_SOON")
COMMENT_LIMIT = 5000             # exception_event.comment


def utc_day(now: datetime) -> date:
    return now.astimezone(timezone.utc).date()


def due_steps(state: str, starts_on: date, ends_on: date, today: date) -> list[tuple[str, str]]:
    """The transitions, in order, that bring an exception where the calendar says: (state, system job)."""
    steps = []
    if state == "APPROVED":
        if starts_on > today:
            return steps
        steps.append(("ACTIVE", "activation"))
        state = "ACTIVE"
    if state in ATTESTABLE and ends_on <= today:
        steps.append(("EXPIRED", "expiry"))
    elif state == "ACTIVE" and (ends_on - today).days <= EXPIRING_SOON_DAYS:
        steps.append(("EXPIRING_SOON", "expiry"))
    return steps


async def follow_calendar(conn: asyncpg.Connection, today: date) -> Counter:
    """Activate, mark expiring soon and expire what is due in the current tenant; counts by new state."""
    rows = await conn.fetch(
        "SELECT id, state, starts_on, ends_on FROM exception"
        " WHERE (state = 'APPROVED' AND starts_on <= $1)"
        "    OR (state IN ('ACTIVE', 'EXPIRING_SOON') AND ends_on <= $1 + $2::integer)"
        " ORDER BY id",
        today, EXPIRING_SOON_DAYS)
    counts: Counter = Counter()
    for row in rows:
        for to, job in due_steps(row["state"], row["starts_on"], row["ends_on"], today):
            try:
                await transition(conn, row["id"], to, Actor(system=job))
            except TransitionRefused as refused:
                # Changed by a person since it was read, or this tenant's rows no
                # longer allow the step: on the run's record, and tried again next run.
                log.warning("exception %s not moved to %s: %s", row["id"], to, refused.message)
                counts["refused"] += 1
                break
            counts[to.lower()] += 1
    return counts


async def send_reminders(conn: asyncpg.Connection, today: date,
                         link: Callable[[UUID], str] | None = None) -> Counter:
    """Make each reminder now due in the current tenant, once; counts of reminders and recipients.

    `link(exception_id)` is the exception's page, for the mail.
    """
    rows = await conn.fetch(
        """
        SELECT e.id, e.org_unit_id, e.title, e.state, e.ends_on, e.owner_id, e.review_round, due.threshold
          FROM exception e
         CROSS JOIN LATERAL (SELECT min(t) AS threshold FROM unnest($2::integer[]) t
                              WHERE e.ends_on - $1 <= t) due
         WHERE e.state IN ('ACTIVE', 'EXPIRING_SOON') AND e.ends_on > $1 AND due.threshold IS NOT NULL
           AND NOT EXISTS (SELECT FROM exception_reminder r
                            WHERE r.exception_id = e.id AND r.ends_on = e.ends_on AND r.threshold_days = due.threshold)
         ORDER BY e.id
        """,
        today, list(REMINDER_DAYS))
    # Rows in one order (by id) in every instance: two runs at once queue
    # behind each other on the first reminder instead of deadlocking.
    counts: Counter = Counter()
    for row in rows:
        made = await conn.fetchval(
            "INSERT INTO exception_reminder (tenant_id, exception_id, ends_on, threshold_days)"
            " VALUES (app_current_tenant(), $1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
            row["id"], row["ends_on"], row["threshold"])
        if made:
            counts["recipients"] += await _remind(conn, row, (row["ends_on"] - today).days, link)
            counts["reminders"] += 1
    return counts


async def _remind(conn: asyncpg.Connection, row, days_left: int, link: Callable[[UUID], str] | None) -> int:
    recipients = await conn.fetch(
        """
        SELECT id, id = $2 AS is_owner FROM app_user
         WHERE disabled_at IS NULL
           AND (id = $2 OR id IN (SELECT substr(actor, 6)::uuid FROM exception_event
                                   WHERE exception_id = $1 AND kind = 'approval' AND review_round = $3
                                     AND actor LIKE 'user:%'))
         ORDER BY id
        """,
        row["id"], row["owner_id"], row["review_round"])
    title = " ".join(row["title"].split())
    ends = row["ends_on"].isoformat()
    when = "tomorrow" if days_left == 1 else f"in {days_left} days"
    for person in recipients:
        if person["is_owner"]:
            ask = "As its owner, re-attest that the deviation and the compensating controls still hold, " \
                  "or request a renewal in time for it to be approved."
        else:
            ask = "You approved it. Its owner has been asked to re-attest it or to request a renewal."
        await notify(conn, person["id"], "reminder", f"{title[:150]}: ends on {ends}, {when}. {ask}",
                     exception_id=row["id"])
        await mail.queue(conn, person["id"], f"Exception ending {when}: {title[:150]}",
                         f'The policy exception "{title}" ends on {ends}, {when}.\n'
                         f"From that day it no longer covers the deviation.\n\n{ask}\n\n"
                         + (f"Open it: {link(row['id'])}\n" if link else "")
                         + f"Reference: exception {row['id']}\n-- \nExceptao\n")
    approvers = sum(1 for p in recipients if not p["is_owner"])
    to = (["the owner"] if len(recipients) > approvers else []) + ([f"{approvers} approver(s)"] if approvers else [])
    await _event(conn, row, system_actor(REMINDER_ACTOR), "reminder",
                 f"Reminder {row['threshold']} days before the end ({ends}) sent to "
                 + (" and ".join(to) or "no one: the owner's and approvers' accounts are disabled") + ".")
    await record(conn, AuditAction.EXCEPTION_REMIND, actor=system_actor(REMINDER_ACTOR),
                 target=Target("exception", row["id"]),
                 data={"threshold_days": row["threshold"], "ends_on": ends, "days_left": days_left,
                       "state": row["state"], "recipients": [user_actor(p["id"]) for p in recipients]})
    return len(recipients)


async def attest(conn: asyncpg.Connection, exception_id: UUID, actor: Actor, comment: str | None) -> None:
    """The owner re-attests an active exception; TransitionRefused (with status and message) otherwise."""
    comment = (comment or "").strip()
    row = await conn.fetchrow(
        "SELECT id, org_unit_id, state, owner_id FROM exception WHERE id = $1 FOR UPDATE", exception_id)
    if row is None:
        raise TransitionRefused("There is no such exception.", 404)
    if actor.access is None or actor.access.user_id != row["owner_id"]:
        raise TransitionRefused("Only the exception's owner can re-attest it.", 403)
    if row["state"] not in ATTESTABLE:
        state = row["state"].lower().replace("_", " ")
        raise TransitionRefused(f"Only an active exception can be re-attested; this one is {state}.", 409)
    if not comment:
        raise TransitionRefused("Say why the deviation and the compensating controls still hold: "
                                "a comment is required.", 422)
    if len(comment) > COMMENT_LIMIT:
        raise TransitionRefused(f"The comment is {len(comment)} characters long; at most {COMMENT_LIMIT}.", 422)
    await _event(conn, row, actor.name, "attestation", comment)
    await record(conn, AuditAction.EXCEPTION_ATTEST, actor=actor.name, target=Target("exception", exception_id),
                 data={"state": row["state"], "comment": comment})


async def _event(conn: asyncpg.Connection, row, actor: str, kind: str, comment: str) -> None:
    """An event of the exception in its current state, which it does not change."""
    await conn.execute(
        "INSERT INTO exception_event (tenant_id, exception_id, org_unit_id, actor, kind, from_state, to_state,"
        " comment) VALUES (app_current_tenant(), $1, $2, $3, $4, $5, $5, $6)",
        row["id"], row["org_unit_id"], actor, kind, row["state"], comment)
