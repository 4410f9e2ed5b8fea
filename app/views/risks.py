"""The risk register's screens: the register with its heat map, a new risk, one risk with its edit form.

Reading needs exception.read: the register holds what closed exceptions
became, so whoever may read exceptions may read their residual risks (every
default role holds it, the auditor's included). Changing needs risk.manage,
and exception.read as well: nobody should change what they could not see
afterwards. Changes need no fresh second factor: they re-score and re-plan a
risk, they do not decide on one the way an approval does.

A refused form shows the page again with what was typed and why (422), and
changes nothing.
"""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

from quart import Blueprint, abort, g, request

from app import risks
from app.db import tenant_transaction
from app.risks import LABELS, TREATMENTS, RiskInvalid, RiskNotFound, heatmap
from app.views import pool
from app.web import render, see_other
from app.web.guards import requires

blueprint = Blueprint("risks", __name__, url_prefix="/risks")

reads = requires("exception.read")
changes = requires("exception.read", "risk.manage")

NOTICES = {"created": "The risk is in the register.", "saved": "Saved.", "unchanged": "Nothing was changed."}
NEW_RISK_REVIEW_DAYS = 90   # a new risk's suggested first review: next quarter


def _read():
    return tenant_transaction(pool(), g.tenant.id, readonly=True)


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


@blueprint.get("")
@reads
async def register():
    treatment = request.args.get("treatment") if request.args.get("treatment") in TREATMENTS else None
    owner_id = _uuid(request.args.get("owner"))
    async with _read() as conn:
        found = await risks.register(conn, treatment=treatment, owner_id=owner_id)
        people = await risks.owners(conn)
    counts = heatmap.cell_counts(found)
    return await render("risks/register.html", block="register", risks=found, people=people,
                        heatmap=heatmap.svg(counts), grid=heatmap.grid(counts), treatments=TREATMENTS,
                        filters={"treatment": treatment or "", "owner": str(owner_id or "")},
                        filtered=bool(treatment or owner_id), today=date.today())


async def _new(form=None, invalid: RiskInvalid | None = None):
    async with _read() as conn:
        people = await risks.owners(conn)
    review_on = date.today() + timedelta(days=NEW_RISK_REVIEW_DAYS)
    form = form or {"owner": str(g.user.id), "review_on": review_on.isoformat()}
    return await render("risks/new.html", form=form, people=people, treatments=TREATMENTS, labels=LABELS,
                        problems=invalid.problems if invalid else {}, status=422 if invalid else 200)


@blueprint.get("/new")
@changes
async def new():
    return await _new()


@blueprint.post("")
@changes
async def create():
    form = await request.form
    try:
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            risk_id = await risks.create(conn, g.tenant.id, g.access, form)
    except RiskInvalid as invalid:
        return await _new(form, invalid)
    return see_other(f"/risks/{risk_id}?notice=created")


async def _risk(risk_id: UUID, form=None, invalid: RiskInvalid | None = None):
    async with _read() as conn:
        risk = await risks.get(conn, risk_id)
        if risk is None:
            abort(404)
        people = await risks.owners(conn, including=risk.owner_id)
    return await render("risks/risk.html", risk=risk, form=form or risk.as_form(), people=people,
                        treatments=TREATMENTS, labels=LABELS, problems=invalid.problems if invalid else {},
                        notice=NOTICES.get(request.args.get("notice", "")), today=date.today(),
                        status=422 if invalid else 200)


@blueprint.get("/<uuid:risk_id>")
@reads
async def show(risk_id: UUID):
    return await _risk(risk_id)


@blueprint.post("/<uuid:risk_id>")
@changes
async def update(risk_id: UUID):
    form = await request.form
    try:
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            changed = await risks.update(conn, risk_id, g.access, form)
    except RiskInvalid as invalid:
        return await _risk(risk_id, form, invalid)
    except RiskNotFound:
        abort(404)
    return see_other(f"/risks/{risk_id}?notice={'saved' if changed else 'unchanged'}")
