"""Policy exceptions: drafting one, and (engine.py) moving it through its lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from uuid import UUID

import asyncpg

from app.access import Access
from app.audit import AuditAction, Target, record
from app.audit.events import user_actor

TEXT_LIMITS = {"title": 200, "policy_ref": 500, "assets": 2000, "deviation": 10000, "justification": 10000,
               "compensating_controls": 10000}
REQUIRED = ("title", "policy_ref", "deviation", "justification")
LABELS = {"title": "Title", "policy_ref": "Policy or control", "assets": "Affected assets", "deviation": "Deviation",
          "justification": "Business justification", "compensating_controls": "Compensating controls",
          "likelihood": "Likelihood", "impact": "Impact", "starts_on": "Start", "ends_on": "End", "owner": "Owner"}


class DraftInvalid(ValueError):
    def __init__(self, problems: dict[str, str]):
        super().__init__("; ".join(f"{LABELS.get(k, k)}: {v}" for k, v in problems.items()))
        self.problems = problems


@dataclass(frozen=True)
class Draft:
    title: str
    policy_ref: str
    assets: str
    deviation: str
    justification: str
    compensating_controls: str
    likelihood: int
    impact: int
    starts_on: date
    ends_on: date
    owner_id: UUID


def _months_between(start: date, end: date) -> float:
    return (end.year - start.year) * 12 + (end.month - start.month) + (end.day - start.day) / 31


def parse(form: dict, *, max_term_months: int) -> Draft:
    """A draft from form-like input, or DraftInvalid naming every field that is wrong."""
    problems: dict[str, str] = {}
    texts = {}
    for name, limit in TEXT_LIMITS.items():
        value = str(form.get(name) or "").strip()
        if name in REQUIRED and not value:
            problems[name] = "required"
        elif len(value) > limit:
            problems[name] = f"at most {limit} characters"
        texts[name] = value
    scores = {}
    for name in ("likelihood", "impact"):
        try:
            scores[name] = int(form.get(name) or "")
            if not 1 <= scores[name] <= 5:
                raise ValueError
        except ValueError:
            problems[name] = "a whole number from 1 to 5"
    dates = {}
    for name in ("starts_on", "ends_on"):
        try:
            dates[name] = date.fromisoformat(str(form.get(name) or ""))
        except ValueError:
            problems[name] = "a date (YYYY-MM-DD)"
    if len(dates) == 2:
        if dates["ends_on"] <= dates["starts_on"]:
            problems["ends_on"] = "after the start"
        elif _months_between(dates["starts_on"], dates["ends_on"]) > max_term_months:
            problems["ends_on"] = f"at most {max_term_months} months after the start"
    try:
        owner = UUID(str(form.get("owner") or ""))
    except ValueError:
        problems["owner"] = "choose the person who owns this risk"
    if problems:
        raise DraftInvalid(problems)
    return Draft(**texts, **scores, **dates, owner_id=owner)


async def max_term_months(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT max_term_months FROM exception_settings") or 12


async def create_draft(conn: asyncpg.Connection, tenant_id: UUID, requester: Access, form: dict,
                       *, predecessor_id: UUID | None = None, org_unit_id: UUID | None = None) -> UUID:
    """A new DRAFT in `org_unit_id` or the requester's scope (their unit when site-bound), recorded in the chain."""
    draft = parse(form, max_term_months=await max_term_months(conn))
    await _check_owner(conn, draft.owner_id)
    exception_id = await conn.fetchval(
        """
        INSERT INTO exception (tenant_id, org_unit_id, title, policy_ref, assets, deviation, justification,
                               compensating_controls, likelihood, impact, requester_id, owner_id, starts_on, ends_on,
                               predecessor_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        RETURNING id
        """,
        tenant_id, org_unit_id or requester.scope.unit_id, draft.title, draft.policy_ref, draft.assets,
        draft.deviation, draft.justification, draft.compensating_controls, draft.likelihood, draft.impact, requester.user_id,
        draft.owner_id, draft.starts_on, draft.ends_on, predecessor_id)
    await record(conn, AuditAction.EXCEPTION_CREATE, actor=user_actor(requester.user_id),
                 target=Target("exception", exception_id),
                 data={"before": None, "after": {"state": "DRAFT", "rating": draft.likelihood * draft.impact,
                                                 "starts_on": draft.starts_on.isoformat(),
                                                 "ends_on": draft.ends_on.isoformat(),
                                                 "predecessor": str(predecessor_id) if predecessor_id else None}})
    return exception_id


EDITABLE_STATES = ("DRAFT", "RETURNED")
_FIELDS = (*TEXT_LIMITS, "likelihood", "impact", "starts_on", "ends_on", "owner_id")


async def _check_owner(conn: asyncpg.Connection, owner_id: UUID) -> None:
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM app_user WHERE id = $1 AND disabled_at IS NULL)",
                               owner_id):
        raise DraftInvalid({"owner": "choose an active user of this workspace"})


async def update_draft(conn: asyncpg.Connection, requester: Access, exception_id: UUID, form: dict) -> None:
    """Change a DRAFT or RETURNED exception, by its requester; recorded as an event and in the chain.

    Raises DraftInvalid (nothing changed) for bad input, TransitionRefused when
    the exception is not there, not theirs, or no longer editable.
    """
    from app.exceptions.engine import TransitionRefused

    row = await conn.fetchrow("SELECT * FROM exception WHERE id = $1 FOR UPDATE", exception_id)
    if row is None:
        raise TransitionRefused("There is no such exception.", 404)
    if not requester.has("exception.submit") or row["requester_id"] != requester.user_id:
        raise TransitionRefused("Only the exception's requester can edit it.", 403)
    if row["state"] not in EDITABLE_STATES:
        raise TransitionRefused("Only a draft or an exception returned for changes can be edited; this one is "
                                f"{row['state'].lower().replace('_', ' ')}.", 409)
    draft = parse(form, max_term_months=await max_term_months(conn))
    await _check_owner(conn, draft.owner_id)
    after = vars(draft)
    changed = [name for name in _FIELDS if after[name] != row[name]]
    if not changed:
        return
    await conn.execute(
        """
        UPDATE exception SET title = $2, policy_ref = $3, assets = $4, deviation = $5, justification = $6,
               compensating_controls = $7, likelihood = $8, impact = $9, starts_on = $10, ends_on = $11,
               owner_id = $12, updated_at = now()
         WHERE id = $1
        """,
        exception_id, draft.title, draft.policy_ref, draft.assets, draft.deviation, draft.justification,
        draft.compensating_controls, draft.likelihood, draft.impact, draft.starts_on, draft.ends_on, draft.owner_id)
    await conn.execute(
        "INSERT INTO exception_event (tenant_id, exception_id, org_unit_id, actor, kind, from_state, to_state,"
        " review_round, comment)"
        " VALUES (app_current_tenant(), $1, $2, $3, 'edit', $4, $4, $5, $6)",
        exception_id, row["org_unit_id"], user_actor(requester.user_id), row["state"], row["review_round"],
        "Changed: " + ", ".join(LABELS.get(n.removesuffix("_id"), n) for n in changed))
    # The chain keeps which fields changed and the structured values; the texts stay in the record.
    structured = ("likelihood", "impact", "starts_on", "ends_on", "owner_id")
    await record(conn, AuditAction.EXCEPTION_EDIT, actor=user_actor(requester.user_id),
                 target=Target("exception", exception_id),
                 data={"changed": changed,
                       "before": {n: _plain(row[n]) for n in structured if n in changed},
                       "after": {n: _plain(after[n]) for n in structured if n in changed}})


def _plain(value):
    return value.isoformat() if isinstance(value, date) else str(value) if isinstance(value, UUID) else value


RENEWABLE_STATES = ("ACTIVE", "EXPIRING_SOON", "EXPIRED")


async def renew(conn: asyncpg.Connection, tenant_id: UUID, requester: Access, exception_id: UUID,
                *, today: date) -> UUID:
    """A new DRAFT renewing an exception: its fields copied, linked to it, for its requester or owner.

    The new term starts where the old one ends (today, if that has passed) and
    is as long as the old one, within the tenant's maximum. Like any draft it
    must be submitted and approved. An exception is renewed at most once; the
    chain continues from the renewal.
    """
    from app.exceptions.engine import TransitionRefused

    old = await conn.fetchrow("SELECT * FROM exception WHERE id = $1 FOR UPDATE", exception_id)
    if old is None:
        raise TransitionRefused("There is no such exception.", 404)
    if not requester.has("exception.submit") or requester.user_id not in (old["requester_id"], old["owner_id"]):
        raise TransitionRefused("Only the exception's requester or owner can renew it.", 403)
    if old["state"] not in RENEWABLE_STATES:
        raise TransitionRefused("Only an active, expiring or expired exception can be renewed.", 409)
    if renewal := await conn.fetchval("SELECT id FROM exception WHERE predecessor_id = $1", exception_id):
        raise TransitionRefused(f"This exception was renewed already, by exception {renewal}.", 409)
    limit = await max_term_months(conn)
    starts = max(old["ends_on"], today)
    ends = starts + (old["ends_on"] - old["starts_on"])
    while _months_between(starts, ends) > limit:
        ends -= timedelta(days=1)
    form = {name: old[name] for name in TEXT_LIMITS} | {
        "likelihood": old["likelihood"], "impact": old["impact"], "owner": str(old["owner_id"]),
        "starts_on": starts.isoformat(), "ends_on": ends.isoformat()}
    return await create_draft(conn, tenant_id, requester, form, predecessor_id=exception_id,
                              org_unit_id=old["org_unit_id"])
