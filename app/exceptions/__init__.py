"""Policy exceptions: drafting one, and (engine.py) moving it through its lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
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
                       *, predecessor_id: UUID | None = None) -> UUID:
    """A new DRAFT in the requester's scope (their org unit when site-bound), recorded in the chain."""
    draft = parse(form, max_term_months=await max_term_months(conn))
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM app_user WHERE id = $1 AND disabled_at IS NULL)",
                               draft.owner_id):
        raise DraftInvalid({"owner": "choose an active user of this workspace"})
    exception_id = await conn.fetchval(
        """
        INSERT INTO exception (tenant_id, org_unit_id, title, policy_ref, assets, deviation, justification,
                               compensating_controls, likelihood, impact, requester_id, owner_id, starts_on, ends_on,
                               predecessor_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        RETURNING id
        """,
        tenant_id, requester.scope.unit_id, draft.title, draft.policy_ref, draft.assets, draft.deviation,
        draft.justification, draft.compensating_controls, draft.likelihood, draft.impact, requester.user_id,
        draft.owner_id, draft.starts_on, draft.ends_on, predecessor_id)
    await record(conn, AuditAction.EXCEPTION_CREATE, actor=user_actor(requester.user_id),
                 target=Target("exception", exception_id),
                 data={"before": None, "after": {"state": "DRAFT", "rating": draft.likelihood * draft.impact,
                                                 "starts_on": draft.starts_on.isoformat(),
                                                 "ends_on": draft.ends_on.isoformat(),
                                                 "predecessor": str(predecessor_id) if predecessor_id else None}})
    return exception_id
