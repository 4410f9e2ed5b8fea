"""The exception lifecycle: a validator of requested transitions, not a state generator.

A caller asks to move an exception to a state. The engine finds the row of
`exception_transition` that allows it (from, to, and for approvals the level
about to be given), checks who asks (the capability, the requester rule,
separation of duties), the comment and the step-up the row demands, and then
writes the new state, an `exception_event` row and an audit-chain entry in the
caller's transaction. Two-level approval: the first approval is recorded and
the exception stays UNDER_REVIEW; the second, by a different person, approves.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from app.access import Access
from app.audit import AuditAction, Target, record
from app.audit.events import user_actor
from app.risks import CLOSED_STATES, mirror_closed_exception


class TransitionRefused(Exception):
    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class Actor:
    """Who asks: a user (with their access, and whether they stepped up recently), or a job."""

    access: Access | None = None
    stepped_up: bool = False
    system: str | None = None     # e.g. "expiry": actor system:expiry

    @property
    def name(self) -> str:
        return f"system:{self.system}" if self.system else user_actor(self.access.user_id)


@dataclass(frozen=True)
class Outcome:
    exception_id: UUID
    from_state: str
    to_state: str                  # the state now (UNDER_REVIEW after a first of two approvals)
    approval_level: int


_EXCEPTION = """
SELECT id, org_unit_id, state, requester_id, owner_id, approvals_needed, review_round, rating
  FROM exception WHERE id = $1 FOR UPDATE
"""


async def transition(conn: asyncpg.Connection, exception_id: UUID, to: str, actor: Actor,
                     comment: str | None = None) -> Outcome:
    """Move the exception to `to` if a transition row allows it for `actor`; raise TransitionRefused if not."""
    comment = (comment or "").strip() or None
    row = await conn.fetchrow(_EXCEPTION, exception_id)
    if row is None:
        raise TransitionRefused("There is no such exception.", 404)
    level = 0
    approvals = []
    if to == "APPROVED" and row["state"] == "UNDER_REVIEW":
        approvals = await conn.fetch(
            "SELECT actor, approval_level FROM exception_event"
            " WHERE exception_id = $1 AND kind = 'approval' AND review_round = $2 ORDER BY at",
            exception_id, row["review_round"])
        level = len(approvals) + 1
    rule = await conn.fetchrow(
        "SELECT * FROM exception_transition WHERE from_state = $1 AND to_state = $2 AND approval_level = $3",
        row["state"], to, level)
    if rule is None:
        raise TransitionRefused(f"An exception that is {_words(row['state'])} cannot become {_words(to)}.", 409)
    check_actor(rule, row, actor, approvals)
    if rule["comment_required"] and not comment:
        raise TransitionRefused("A comment is required for this decision: say why.", 422)
    if rule["step_up_required"] and not actor.stepped_up:
        raise TransitionRefused("This decision needs a second factor used in the last few minutes.", 401)

    final = to
    kind = "transition"
    if level:
        kind = "approval"
        if level < row["approvals_needed"]:
            final = row["state"]  # the first of two approvals: still under review
    round_, needed = row["review_round"], row["approvals_needed"]
    if to == "UNDER_REVIEW":  # a (re)submission starts a new review round, with the levels its rating needs now
        round_ += 1
        needed = await conn.fetchval(
            "SELECT CASE WHEN approval_levels = 2 OR $1 >= two_levels_at_rating THEN 2 ELSE 1 END"
            " FROM exception_settings", row["rating"]) or 1
    if final != row["state"] or round_ != row["review_round"]:
        await conn.execute(
            "UPDATE exception SET state = $2, review_round = $3, approvals_needed = $4, updated_at = now()"
            " WHERE id = $1",
            exception_id, final, round_, needed)
    await conn.execute(
        "INSERT INTO exception_event (tenant_id, exception_id, org_unit_id, actor, kind, from_state, to_state,"
        " approval_level, review_round, comment)"
        " VALUES (app_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8, $9)",
        exception_id, row["org_unit_id"], actor.name, kind, row["state"], final, level or None, round_, comment)
    await record(conn, AuditAction.EXCEPTION_TRANSITION, actor=actor.name, target=Target("exception", exception_id),
                 data={"before": {"state": row["state"]}, "after": {"state": final},
                       "approval_level": level or None, "approvals_needed": needed,
                       "comment": comment})
    if final in CLOSED_STATES and final != row["state"]:
        await mirror_closed_exception(conn, exception_id, actor.name)  # its residual risk enters the register
    return Outcome(exception_id, row["state"], final, level)


def check_actor(rule, row, actor: Actor, approvals) -> None:
    if rule["actor"] == "system":
        if actor.system is None:
            raise TransitionRefused(f"Only the scheduler moves an exception to {_words(rule['to_state'])}.", 403)
        return
    if actor.access is None:
        raise TransitionRefused("A person must make this decision.", 403)
    if not actor.access.has(rule["capability"]):
        raise TransitionRefused(f"This needs the capability {rule['capability']}, which you do not hold here.", 403)
    me = actor.access.user_id
    if rule["requester_only"] and me != row["requester_id"]:
        raise TransitionRefused("Only the exception's requester can do this.", 403)
    if rule["approval_level"] or rule["to_state"] in ("REJECTED", "RETURNED"):
        if me == row["requester_id"]:
            raise TransitionRefused("You requested this exception, so you cannot decide on it.", 403)
    if rule["approval_level"] and any(a["actor"] == user_actor(me) for a in approvals):
        raise TransitionRefused("You approved this already; the second approval must come from someone else.", 403)


def _words(state: str) -> str:
    return state.lower().replace("_", " ")
