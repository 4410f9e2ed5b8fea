"""The exception screens: the list and its CSV, the submit and edit forms, one exception, its review, my work.

Reading needs exception.read (every default role holds it); drafting needs
exception.submit. Which decisions a page offers comes from the transition rows
(app.exceptions.offers) and the engine judges each request again. A decision
whose row needs a recent second factor posts to /exceptions/<id>/decision,
marked @step_up, so the step-up page carries the typed comment through; a
plain /transition the engine answers 401 is sent there with a 307, which
keeps the method and the form.

A refused request shows its page again with the message, what was typed, and
the status the service gave (404 when the exception is not visible here).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from uuid import UUID

from quart import Blueprint, abort, current_app, g, redirect, request
from werkzeug.datastructures import MultiDict

from app import notifications, risks
from app.audit import AuditAction, record
from app.audit.events import user_actor
from app.db import tenant_transaction
from app.exceptions import (EDITABLE_STATES, LABELS, RENEWABLE_STATES, TEXT_LIMITS, DraftInvalid, create_draft,
                            max_term_months, renew, update_draft)
from app.exceptions.engine import Actor, TransitionRefused, transition
from app.exceptions.govern import ATTESTABLE, attest
from app.exceptions.offers import approvals_this_round, offers_for
from app.exceptions.query import (STATES, events_of, export_csv, get_exception, list_exceptions, my_work,
                                  parse_filters, people, renewal_chain)
from app.views import pool
from app.web import is_fragment_request, render, see_other
from app.web.guards import factor_within, requires, step_up

blueprint = Blueprint("exceptions", __name__)

reads = requires("exception.read")
drafts = requires("exception.submit")
STEP_UP_SECONDS = 300
COMMENT_LIMIT = 5000          # exception_event.comment
FILTER_LABELS = {"state": "State", "owner": "Owner", "expiring_within": "Expiring within", "rating_min": "Rating from",
                 "rating_max": "Rating to", "q": "Search", "sort": "Sort", "page": "Page", "per_page": "Per page"}
NUL = "\x00"                  # PostgreSQL text cannot hold it: refused here rather than failing in the database
NOTICES = {
    "created": "Saved as a draft. Check it, then submit it for review.",
    "saved": "Your changes are saved.",
    "renewed": "This is the renewal: a new draft with the fields copied. Check its term, then submit it for review.",
    "under_review": "Submitted for review.",
    "approval": "Your approval is recorded. A second approver must approve as well.",
    "approved": "Approved.",
    "returned": "Returned to the requester with your comment.",
    "rejected": "Rejected.",
    "withdrawn": "Withdrawn.",
    "revoked": "Revoked.",
    "attested": "Your re-attestation is recorded.",
}


def _today() -> date:
    return datetime.now(timezone.utc).date()  # whole UTC days, as the scheduled jobs count them


def _read():
    return tenant_transaction(pool(), g.tenant.id, readonly=True)


def _write():
    return tenant_transaction(pool(), g.tenant.id)


def _nul_problems(values: MultiDict) -> dict[str, str]:
    return {name: "contains a NUL character, which cannot be stored" for name, value in values.items(multi=True)
            if NUL in value}


def _check_comment(comment: str) -> None:
    if len(comment) > COMMENT_LIMIT:
        raise TransitionRefused(f"A comment has at most {COMMENT_LIMIT} characters; yours has {len(comment)}.", 422)
    if NUL in comment:
        raise TransitionRefused("The comment contains a NUL character, which cannot be stored.", 422)


def _filters():
    """The list's filters from the query string, and the problems with it (bad values left out, never guessed)."""
    bad = _nul_problems(request.args)
    args = MultiDict([(k, v) for k, v in request.args.items(multi=True) if k not in bad])
    filters, problems = parse_filters(args)
    return filters, {**problems, **bad}


# The list -------------------------------------------------------------------

@blueprint.get("/exceptions")
@reads
async def index():
    filters, problems = _filters()
    async with _read() as conn:
        page = await list_exceptions(conn, filters, today=_today())
        owners = await people(conn)
    return await render("exceptions/list.html", block="results", page=page, problems=problems, labels=FILTER_LABELS,
                        owners=owners, states=STATES, typed=request.args, fragment=is_fragment_request())


@blueprint.get("/exceptions.csv")
@requires("exception.read", "report.export")
async def export():
    filters, problems = _filters()
    if problems:
        # Exporting without the filter the user meant would hand out more than they asked for.
        return await render("error.html", title="The export was not made", status=422, message="Correct the filters: "
                            + "; ".join(f"{FILTER_LABELS.get(k, k)}: {v}" for k, v in problems.items()))
    today = _today()
    # Who took which rows out, on the record: the filters and the count, never the rows.
    async with _write() as conn:
        text, count = await export_csv(conn, filters, today=today)
        await record(conn, AuditAction.EXCEPTION_EXPORT, actor=user_actor(g.user.id),
                     data={"format": "csv", "rows": count, "filters": filters.as_json()})
    response = await current_app.make_response((text, 200))
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="exceptions-{today.isoformat()}.csv"'
    return response


# Drafting --------------------------------------------------------------------

async def _form_page(form: MultiDict, exception=None, problems: dict | None = None, status: int = 200):
    async with _read() as conn:
        owners = await people(conn)
        max_term = await max_term_months(conn)
    return await render("exceptions/form.html", form=form, exception=exception, problems=problems or {},
                        labels=LABELS, limits=TEXT_LIMITS, owners=owners, max_term=max_term, status=status)


def _draft_problems(form: MultiDict) -> dict[str, str]:
    return {name: problem for name, problem in _nul_problems(form).items() if name in LABELS}


@blueprint.get("/exceptions/new")
@drafts
async def new_form():
    return await _form_page(MultiDict({"owner": str(g.user.id), "starts_on": _today().isoformat()}))


@blueprint.post("/exceptions")
@drafts
async def create():
    form = await request.form
    try:
        if problems := _draft_problems(form):
            raise DraftInvalid(problems)
        async with _write() as conn:
            exception_id = await create_draft(conn, g.tenant.id, g.access, form)
    except DraftInvalid as invalid:
        return await _form_page(form, problems=invalid.problems, status=422)
    return see_other(f"/exceptions/{exception_id}?notice=created")


@blueprint.get("/exceptions/rating")
@drafts
async def rating():
    """The rating for the form's likelihood and impact (HTMX swaps it in; without JS the saved page shows it)."""
    return await render("exceptions/_rating.html", block="rating", form=request.args)


async def _editable(exception_id: UUID):
    """The exception if this user may edit it now; otherwise the page says why, with the status."""
    async with _read() as conn:
        exception = await get_exception(conn, exception_id)
    if exception is None:
        abort(404)
    if exception["requester_id"] != g.user.id:
        abort(403, "Only the exception's requester can edit it.")
    if exception["state"] not in EDITABLE_STATES:
        abort(409, "Only a draft or an exception returned for changes can be edited; this one is "
                   f"{exception['state'].lower().replace('_', ' ')}.")
    return exception


@blueprint.get("/exceptions/<uuid:exception_id>/edit")
@drafts
async def edit_form(exception_id: UUID):
    e = await _editable(exception_id)
    form = MultiDict({**{name: e[name] for name in TEXT_LIMITS}, "likelihood": str(e["likelihood"]),
                      "impact": str(e["impact"]), "owner": str(e["owner_id"]), "starts_on": e["starts_on"].isoformat(),
                      "ends_on": e["ends_on"].isoformat()})
    return await _form_page(form, exception=e)


@blueprint.post("/exceptions/<uuid:exception_id>/edit")
@drafts
async def update(exception_id: UUID):
    form = await request.form
    try:
        if problems := _draft_problems(form):
            raise DraftInvalid(problems)
        async with _write() as conn:
            await update_draft(conn, g.access, exception_id, form)
    except DraftInvalid as invalid:
        return await _form_page(form, exception=await _editable(exception_id), problems=invalid.problems,
                                status=422)
    except TransitionRefused as refusal:
        abort(refusal.status, refusal.message)
    return see_other(f"/exceptions/{exception_id}?notice=saved")


@blueprint.post("/exceptions/<uuid:exception_id>/renew")
@drafts
async def renew_one(exception_id: UUID):
    try:
        async with _write() as conn:
            renewal_id = await renew(conn, g.tenant.id, g.access, exception_id, today=_today())
    except TransitionRefused as refusal:
        return await _exception_page(exception_id, problem=refusal.message, status=refusal.status)
    except DraftInvalid as invalid:
        return await _exception_page(exception_id, problem=f"The renewal could not be drafted. {invalid}", status=422)
    return see_other(f"/exceptions/{renewal_id}?notice=renewed")


# One exception, its review, and deciding on it ---------------------------------

PAGES = {"detail": "exceptions/detail.html", "review": "exceptions/review.html"}


async def _exception_page(exception_id: UUID, page: str = "detail", *, typed: dict | None = None,
                          problem: str | None = None, status: int = 200):
    """The detail or review page; `typed` keeps a refused decision's form ({"to", "comment"}) as it was sent."""
    async with _read() as conn:
        exception = await get_exception(conn, exception_id)
        if exception is None:
            abort(404)
        events = await events_of(conn, exception_id)
        chain = await renewal_chain(conn, exception_id)
        offers = await offers_for(conn, exception, events, g.access)
        risk = await risks.for_exception(conn, exception_id)
    return await render(PAGES[page], exception=exception, events=events, chain=chain, offers=offers, risk=risk,
                        approvals=approvals_this_round(exception, events), typed=typed or {}, problem=problem,
                        notice=NOTICES.get(request.args.get("notice", "")), page=page,
                        editable=exception["state"] in EDITABLE_STATES,
                        renewable=exception["state"] in RENEWABLE_STATES,
                        attestable=exception["state"] in ATTESTABLE, status=status)


@blueprint.get("/exceptions/<uuid:exception_id>")
@reads
async def detail(exception_id: UUID):
    return await _exception_page(exception_id)


@blueprint.get("/exceptions/<uuid:exception_id>/review")
@reads
async def review(exception_id: UUID):
    if not (g.access.has("exception.review") or g.access.has("exception.approve")):
        abort(403, "The review page is for reviewers and approvers: it needs exception.review or exception.approve.")
    return await _exception_page(exception_id, "review")


async def _decide(exception_id: UUID):
    form = await request.form
    to, comment = form.get("to", "")[:40], form.get("comment", "")
    page = "review" if form.get("page") == "review" else "detail"
    try:
        if to not in STATES:
            raise TransitionRefused("Choose one of the decisions offered on the page.", 422)
        _check_comment(comment)
        async with _write() as conn:
            outcome = await transition(conn, exception_id, to,
                                       Actor(access=g.access, stepped_up=factor_within(STEP_UP_SECONDS)), comment)
    except TransitionRefused as refusal:
        if refusal.status == 401 and request.endpoint == "exceptions.move":
            return redirect(f"/exceptions/{exception_id}/decision", 307)
        return await _exception_page(exception_id, page, typed={"to": to, "comment": comment},
                                     problem=refusal.message, status=refusal.status)
    first_of_two = outcome.approval_level and outcome.to_state == "UNDER_REVIEW"
    return see_other(f"/exceptions/{exception_id}?notice={'approval' if first_of_two else outcome.to_state.lower()}")


@blueprint.post("/exceptions/<uuid:exception_id>/transition")
@reads
async def move(exception_id: UUID):
    """A transition whose row needs no step-up (submit, withdraw, return); the engine checks the rest."""
    return await _decide(exception_id)


@blueprint.post("/exceptions/<uuid:exception_id>/decision")
@reads
@step_up(STEP_UP_SECONDS)
async def decide(exception_id: UUID):
    """A transition whose row needs a second factor from the last five minutes (approve, reject, revoke)."""
    return await _decide(exception_id)


@blueprint.post("/exceptions/<uuid:exception_id>/attest")
@reads
async def attest_one(exception_id: UUID):
    """The owner confirms that the deviation and the compensating controls still hold (app.exceptions.govern)."""
    comment = (await request.form).get("comment", "")
    try:
        _check_comment(comment)
        async with _write() as conn:
            await attest(conn, exception_id, Actor(access=g.access), comment)
    except TransitionRefused as refusal:
        return await _exception_page(exception_id, typed={"to": "attest", "comment": comment},
                                     problem=refusal.message, status=refusal.status)
    return see_other(f"/exceptions/{exception_id}?notice=attested")


# My work ---------------------------------------------------------------------

NOTIFICATIONS_SHOWN = 20


@blueprint.get("/exceptions/mine")
@reads
async def mine():
    async with _read() as conn:
        work = await my_work(conn, g.access, today=_today())
        notes = await notifications.recent(conn, g.user.id, limit=NOTIFICATIONS_SHOWN)
    return await render("exceptions/mine.html", work=work, notifications=notes)


@blueprint.post("/exceptions/mine/read")
@reads
async def mark_notifications_read():
    """Mark my notifications read (a personal inbox flag: no audit entry, like reading a mail)."""
    async with _write() as conn:
        await notifications.mark_read(conn, g.user.id)
    return see_other("/exceptions/mine")
