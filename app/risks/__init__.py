"""The risk register: risks with their owner, treatment and review date, and the mirror of closed exceptions.

A risk is typed in by a risk owner, or mirrored from an exception that has
closed (EXPIRED or REVOKED): the exception's values are copied in the same
transaction as the transition, so nobody types them again, and the risk
keeps the exception's id (one risk per exception).

Audit data holds scores, dates, the treatment and ids, never the free text
(a title or description may name people, and the chain cannot forget).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date
from uuid import UUID

import asyncpg

from app.access import Access
from app.audit import AuditAction, Target, record
from app.audit.events import user_actor

TREATMENTS = {"accept": "Accept", "mitigate": "Mitigate", "transfer": "Transfer", "avoid": "Avoid"}
TEXT_LIMITS = {"title": 200, "description": 25000}
LABELS = {"title": "Title", "description": "Description", "likelihood": "Likelihood", "impact": "Impact",
          "owner": "Owner", "treatment": "Treatment", "review_on": "Review on"}
CLOSED_STATES = ("EXPIRED", "REVOKED")

# What a closed exception becomes in the register. Its acceptance has ended
# (expired) or was withdrawn (revoked), so accepting the risk again here would
# continue an acceptance nobody approved: the residual risk is to be mitigated,
# which is what the owner does next (bring the control back to policy, or ask
# for a new, approved exception). Its review is due within 30 days, the same
# window in which an exception counts as expiring soon.
MIRROR_TREATMENT = "mitigate"
MIRROR_REVIEW_DAYS = 30


class RiskInvalid(ValueError):
    def __init__(self, problems: dict[str, str]):
        super().__init__("; ".join(f"{LABELS.get(k, k)}: {v}" for k, v in problems.items()))
        self.problems = problems


class RiskNotFound(LookupError):
    pass


@dataclass(frozen=True)
class RiskInput:
    title: str
    description: str
    likelihood: int
    impact: int
    owner_id: UUID
    treatment: str
    review_on: date


@dataclass(frozen=True)
class Risk:
    id: UUID
    org_unit_id: UUID | None
    title: str
    description: str
    likelihood: int
    impact: int
    rating: int
    owner_id: UUID
    owner_name: str
    treatment: str
    review_on: date
    exception_id: UUID | None
    exception_title: str | None
    exception_state: str | None

    @property
    def treatment_label(self) -> str:
        return TREATMENTS[self.treatment]

    def as_form(self) -> dict[str, str]:
        """The values of the edit form."""
        return {"title": self.title, "description": self.description, "likelihood": str(self.likelihood),
                "impact": str(self.impact), "owner": str(self.owner_id), "treatment": self.treatment,
                "review_on": self.review_on.isoformat()}


def _score(text: str) -> int:
    if text not in ("1", "2", "3", "4", "5"):
        raise ValueError(text)
    return int(text)


def _treatment(text: str) -> str:
    if text not in TREATMENTS:
        raise ValueError(text)
    return text


FIELDS = (  # name, how its text becomes a value, what to say when it cannot
    ("likelihood", _score, "a whole number from 1 to 5"),
    ("impact", _score, "a whole number from 1 to 5"),
    ("owner", UUID, "choose the person who owns this risk"),
    ("treatment", _treatment, "one of accept, mitigate, transfer or avoid"),
    ("review_on", date.fromisoformat, "a date (YYYY-MM-DD)"),
)


def parse(form) -> RiskInput:
    """A risk from form-like input, or RiskInvalid naming every field that is wrong."""
    problems: dict[str, str] = {}
    values = {}
    for name, limit in TEXT_LIMITS.items():
        values[name] = str(form.get(name) or "").strip()
        if len(values[name]) > limit:
            problems[name] = f"at most {limit} characters"
    if not values["title"]:
        problems["title"] = "required"
    for name, convert, problem in FIELDS:
        try:
            values[name] = convert(str(form.get(name) or "").strip())
        except ValueError:
            problems[name] = problem
    if problems:
        raise RiskInvalid(problems)
    return RiskInput(owner_id=values.pop("owner"), **values)


def _audited(values: RiskInput | Risk) -> dict:
    """What the chain keeps of a risk: no free text, no names."""
    return {"likelihood": values.likelihood, "impact": values.impact, "rating": values.likelihood * values.impact,
            "treatment": values.treatment, "review_on": values.review_on.isoformat(), "owner": str(values.owner_id)}


async def _check_owner(conn: asyncpg.Connection, owner_id: UUID) -> None:
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM app_user WHERE id = $1 AND disabled_at IS NULL)",
                               owner_id):
        raise RiskInvalid({"owner": "choose an active user of this workspace"})


async def create(conn: asyncpg.Connection, tenant_id: UUID, by: Access, form) -> UUID:
    """A new risk in the creator's scope (their org unit when they work in one), recorded in the chain."""
    risk = parse(form)
    await _check_owner(conn, risk.owner_id)
    risk_id = await conn.fetchval(
        "INSERT INTO risk (tenant_id, org_unit_id, title, description, likelihood, impact, owner_id, treatment,"
        " review_on) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        tenant_id, by.scope.unit_id, risk.title, risk.description, risk.likelihood, risk.impact, risk.owner_id,
        risk.treatment, risk.review_on)
    await record(conn, AuditAction.RISK_CREATE, actor=user_actor(by.user_id), target=Target("risk", risk_id),
                 data={"before": None, "after": _audited(risk)})
    return risk_id


async def update(conn: asyncpg.Connection, risk_id: UUID, by: Access, form) -> bool:
    """Change a risk to what the form says; False when nothing changed (and nothing is recorded)."""
    new = parse(form)
    old = await get(conn, risk_id, lock=True)
    if old is None:
        raise RiskNotFound(risk_id)
    changed = [f.name for f in fields(RiskInput) if getattr(new, f.name) != getattr(old, f.name)]
    if not changed:
        return False
    if "owner_id" in changed:
        await _check_owner(conn, new.owner_id)
    await conn.execute(
        "UPDATE risk SET title = $2, description = $3, likelihood = $4, impact = $5, owner_id = $6, treatment = $7,"
        " review_on = $8, updated_at = now() WHERE id = $1",
        risk_id, new.title, new.description, new.likelihood, new.impact, new.owner_id, new.treatment, new.review_on)
    before, after = _audited(old), _audited(new)
    await record(conn, AuditAction.RISK_UPDATE, actor=user_actor(by.user_id), target=Target("risk", risk_id),
                 data={"before": {k: v for k, v in before.items() if after[k] != v},
                       "after": {k: v for k, v in after.items() if before[k] != v},
                       "changed": [name.removesuffix("_id") for name in changed]})
    return True


_RISKS = """
SELECT r.id, r.org_unit_id, r.title, r.description, r.likelihood, r.impact, r.rating, r.owner_id,
       u.display_name AS owner_name, r.treatment, r.review_on, r.exception_id,
       e.title AS exception_title, e.state AS exception_state
  FROM risk r
  JOIN app_user u ON u.id = r.owner_id
  LEFT JOIN exception e ON e.id = r.exception_id
"""


async def get(conn: asyncpg.Connection, risk_id: UUID, *, lock: bool = False) -> Risk | None:
    row = await conn.fetchrow(_RISKS + " WHERE r.id = $1" + (" FOR UPDATE OF r" if lock else ""), risk_id)
    return Risk(**row) if row else None


async def for_exception(conn: asyncpg.Connection, exception_id: UUID) -> Risk | None:
    """The register's risk that mirrors this exception (the exception page links to it), or None."""
    row = await conn.fetchrow(_RISKS + " WHERE r.exception_id = $1", exception_id)
    return Risk(**row) if row else None


async def register(conn: asyncpg.Connection, *, treatment: str | None = None,
                   owner_id: UUID | None = None) -> list[Risk]:
    """The risks this transaction may see, highest rating first, optionally one treatment's or one owner's."""
    rows = await conn.fetch(
        _RISKS + " WHERE ($1::text IS NULL OR r.treatment = $1) AND ($2::uuid IS NULL OR r.owner_id = $2)"
        " ORDER BY r.rating DESC, r.review_on, lower(r.title), r.id",
        treatment, owner_id)
    return [Risk(**r) for r in rows]


async def owners(conn: asyncpg.Connection, *, including: UUID | None = None) -> list[asyncpg.Record]:
    """Who can own a risk: the workspace's active users, and `including` (a risk's current owner) even if disabled."""
    return await conn.fetch(
        "SELECT id, display_name, email, disabled_at IS NOT NULL AS disabled FROM app_user"
        " WHERE disabled_at IS NULL OR id = $1 ORDER BY lower(display_name), lower(email)", including)


def mirrored_description(policy_ref: str, deviation: str, compensating_controls: str) -> str:
    controls = compensating_controls.strip() or "None were recorded."
    return f"Deviation from {policy_ref}:\n{deviation}\n\nCompensating controls:\n{controls}"


async def mirror_closed_exception(conn: asyncpg.Connection, exception_id: UUID, actor_name: str) -> UUID:
    """The register's risk for this closed exception, made now from its values if there is none yet.

    Idempotent: a second call returns the same risk and records nothing. Runs
    in the caller's transaction (the transition that closed the exception).
    """
    existing = await conn.fetchval("SELECT id FROM risk WHERE exception_id = $1", exception_id)
    if existing is not None:
        return existing
    e = await conn.fetchrow(
        "SELECT tenant_id, org_unit_id, title, policy_ref, deviation, compensating_controls, likelihood, impact,"
        " owner_id, state FROM exception WHERE id = $1", exception_id)
    if e is None:
        raise RiskNotFound(exception_id)
    if e["state"] not in CLOSED_STATES:
        raise ValueError(f"exception {exception_id} is {e['state']}, not closed: only closed exceptions are mirrored")
    row = await conn.fetchrow(
        "INSERT INTO risk (tenant_id, org_unit_id, title, description, likelihood, impact, owner_id, treatment,"
        " review_on, exception_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, (now() AT TIME ZONE 'UTC')::date + $9::integer, $10)"
        " ON CONFLICT (exception_id) DO NOTHING RETURNING id, review_on",
        e["tenant_id"], e["org_unit_id"], e["title"],
        mirrored_description(e["policy_ref"], e["deviation"], e["compensating_controls"]),
        e["likelihood"], e["impact"], e["owner_id"], MIRROR_TREATMENT, MIRROR_REVIEW_DAYS, exception_id)
    if row is None:  # made by a concurrent transaction since the first look
        return await conn.fetchval("SELECT id FROM risk WHERE exception_id = $1", exception_id)
    made = RiskInput(e["title"], "", e["likelihood"], e["impact"], e["owner_id"], MIRROR_TREATMENT, row["review_on"])
    await record(conn, AuditAction.RISK_MIRROR, actor=actor_name, target=Target("risk", row["id"]),
                 data={"before": None, "after": _audited(made), "exception": str(exception_id),
                       "exception_state": e["state"]})
    return row["id"]
