"""The JSON API for exceptions: list, read, draft, edit, and ask for a transition.

Thin like every view: it checks the shape and the JSON types of what a script
sent, then calls the services the screens call (app.exceptions, its engine
and query modules), so the API and the screens answer alike. Row-level
security narrows every query to the token's tenant and scope.

A token never counts as a recent second factor: a transition whose row
demands step-up is refused with 403 and a sentence saying who can decide it.
Every error is JSON {"error", "message"}, with "problems" {name: what to
fix} when particular fields or parameters are wrong.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from uuid import UUID

from quart import Blueprint, g, jsonify, request
from werkzeug.http import HTTP_STATUS_CODES

from app.db import tenant_transaction
from app.exceptions import (LABELS, TEXT_LIMITS, DraftInvalid, create_draft, max_term_months, parse,
                            update_draft)
from app.exceptions.engine import Actor, TransitionRefused, transition
from app.exceptions.query import (MAX_PER_PAGE, STATES, events_of, get_exception, list_exceptions, parse_filters,
                                  renewal_chain)
from app.views import pool
from app.web.guards import requires

blueprint = Blueprint("exceptions_api", __name__, url_prefix="/api/exceptions")

DRAFT_FIELDS = tuple(LABELS)   # the form's names: title, policy_ref, ..., owner
SCORES = ("likelihood", "impact")
FILTER_PARAMETERS = ("state", "owner", "expiring_within", "rating_min", "rating_max", "q", "sort", "page", "per_page")
TRANSITION_FIELDS = ("to", "comment")
COMMENT_LIMIT = 5000           # exception_event.comment's CHECK in sql/0008_exceptions.sql

SUMMARY_COLUMNS = ("id", "title", "policy_ref", "state", "likelihood", "impact", "rating", "starts_on", "ends_on",
                   "owner_id", "owner_name", "requester_id", "requester_name", "org_unit_id", "predecessor_id",
                   "updated_at")
DETAIL_COLUMNS = SUMMARY_COLUMNS + ("unit_name", "assets", "deviation", "justification", "compensating_controls",
                                    "approvals_needed", "review_round", "created_at")
EVENT_COLUMNS = ("at", "actor", "actor_name", "kind", "from_state", "to_state", "approval_level", "review_round",
                 "comment")
CHAIN_COLUMNS = ("id", "title", "state", "starts_on", "ends_on")

NOT_FOUND = "There is no such exception here (or this token's scope does not reach it)."
STEP_UP_REFUSED = ("This decision needs a person signed in on the web who has used their second factor in the last "
                   "few minutes. An API token can never step up: open the exception in Exceptao and decide there.")


class ApiProblem(Exception):
    """A request the caller can fix: answered as JSON with its status, message and the problems by name."""

    def __init__(self, status: int, message: str, problems: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems


def _error(status: int, message: str, problems: dict[str, str] | None = None):
    body = {"error": HTTP_STATUS_CODES.get(status, "Error"), "message": message}
    if problems is not None:
        body["problems"] = problems
    return jsonify(body), status


@blueprint.errorhandler(ApiProblem)
async def api_problem(error: ApiProblem):
    return _error(error.status, error.message, error.problems)


@blueprint.errorhandler(DraftInvalid)
async def draft_invalid(error: DraftInvalid):
    return _error(422, "The draft was not saved: fix the fields named in problems.", error.problems)


@blueprint.errorhandler(TransitionRefused)
async def refused(error: TransitionRefused):
    # The engine answers 401 when the transition row wants a recent second factor; a token has none to give.
    if error.status == 401:
        return _error(403, STEP_UP_REFUSED)
    return _error(error.status, error.message)


@blueprint.after_request
async def never_cached(response):
    response.headers["Cache-Control"] = "no-store"
    return response


def _plain(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value) if isinstance(value, UUID) else value


def _json_of(row, columns) -> dict:
    return {name: _plain(row[name]) for name in columns}


async def _detail(conn, exception_id: UUID) -> dict:
    row = await get_exception(conn, exception_id)
    if row is None:
        raise ApiProblem(404, NOT_FOUND)
    return _json_of(row, DETAIL_COLUMNS) | {
        "events": [_json_of(e, EVENT_COLUMNS) for e in await events_of(conn, exception_id)],
        "renewal_chain": [_json_of(r, CHAIN_COLUMNS) for r in await renewal_chain(conn, exception_id)],
    }


async def _json_object() -> dict:
    """The request body as a JSON object, or a 400 saying what to send instead."""
    if not request.is_json:
        raise ApiProblem(400, "Send the body as JSON, with the header Content-Type: application/json.")
    try:
        body = json.loads(await request.get_data())
    except (ValueError, RecursionError) as error:  # a decoding error is a ValueError too
        raise ApiProblem(400, f"The body is not valid JSON: {error}.") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "The body must be a JSON object of named fields, such as {\"title\": \"...\"}.")
    return body


UNSTORABLE = "contains a character that cannot be stored (NUL, or half of a UTF-16 surrogate pair)"


def _storable(text: str) -> bool:
    """PostgreSQL text holds no NUL and only valid UTF-8; refused here, as the caller's mistake, not as a 500."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _unknown(body: dict, known: tuple[str, ...]) -> dict[str, str]:
    return {name: f"unknown field; the fields are {', '.join(known)}" for name in body if name not in known}


def _draft_fields(body: dict) -> tuple[dict, dict[str, str]]:
    """The draft fields sent, and the problems of their JSON types; null means empty.

    Types are checked here because a form cannot send them: 3.7 or true is not
    a score even though int() would make one of it.
    """
    problems = _unknown(body, DRAFT_FIELDS)
    fields = {}
    for name in DRAFT_FIELDS:
        if name not in body:
            continue
        value = body[name]
        if name in SCORES:
            ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number from 1 to 5"
        elif name in TEXT_LIMITS:
            ok, wanted = isinstance(value, str), "text (a JSON string)"
        elif name == "owner":
            ok, wanted = isinstance(value, str), "the owner's user id (a JSON string)"
        else:
            ok, wanted = isinstance(value, str), "a date written YYYY-MM-DD (a JSON string)"
        if not (value is None or ok):
            problems[name] = wanted
        elif isinstance(value, str) and not _storable(value):
            problems[name] = UNSTORABLE
        else:
            fields[name] = value
    return fields, problems


async def _refuse_bad_types(conn, form: dict, type_problems: dict[str, str]) -> None:
    """With wrong types, nothing is saved: answer every problem at once, those of the other fields too."""
    if not type_problems:
        return
    try:
        parse(form, max_term_months=await max_term_months(conn))
    except DraftInvalid as invalid:
        type_problems = {name: m for name, m in invalid.problems.items() if name not in type_problems} | type_problems
    raise ApiProblem(422, "The draft was not saved: fix the fields named in problems.", type_problems)


@blueprint.get("")
@requires("exception.read")
async def list_exceptions_api():
    """One page of the exceptions this token may see, filtered like the list screen."""
    filters, problems = parse_filters(request.args, max_per_page=MAX_PER_PAGE)
    problems |= {name: f"unknown parameter; the parameters are {', '.join(FILTER_PARAMETERS)}"
                 for name in request.args if name not in FILTER_PARAMETERS}
    problems |= {name: UNSTORABLE for name, value in request.args.items(multi=True) if not _storable(value)}
    if problems:
        raise ApiProblem(422, "Fix the query parameters named in problems.", problems)
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        page = await list_exceptions(conn, filters, today=date.today())
    return jsonify({"exceptions": [_json_of(r, SUMMARY_COLUMNS) for r in page.rows], "total": page.total,
                    "page": filters.page, "per_page": filters.per_page, "pages": page.pages})


@blueprint.get("/<uuid:exception_id>")
@requires("exception.read")
async def get_exception_api(exception_id: UUID):
    """The exception with every field, its timeline and its renewal chain."""
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        return jsonify(await _detail(conn, exception_id))


@blueprint.post("")
@requires("exception.submit")
async def create_exception_api():
    """A new DRAFT requested by the token's owner, in the token's scope."""
    form, type_problems = _draft_fields(await _json_object())
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        await _refuse_bad_types(conn, form, type_problems)
        exception_id = await create_draft(conn, g.tenant.id, g.access, form)
        detail = await _detail(conn, exception_id)
    response = jsonify(detail)
    response.status_code = 201
    response.headers["Location"] = f"{blueprint.url_prefix}/{exception_id}"
    return response


@blueprint.patch("/<uuid:exception_id>")
@requires("exception.submit")
async def edit_exception_api(exception_id: UUID):
    """Change the fields sent of a DRAFT or RETURNED exception, by its requester; the rest keep their values."""
    sent, type_problems = _draft_fields(await _json_object())
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        # Locked before reading, so the fields not sent are the ones saved now, not a concurrent edit's.
        row = await conn.fetchrow("SELECT * FROM exception WHERE id = $1 FOR UPDATE", exception_id)
        if row is None:
            raise ApiProblem(404, NOT_FOUND)
        current = {name: row[name] for name in TEXT_LIMITS} | {
            "likelihood": row["likelihood"], "impact": row["impact"], "owner": str(row["owner_id"]),
            "starts_on": row["starts_on"].isoformat(), "ends_on": row["ends_on"].isoformat()}
        form = current | sent
        await _refuse_bad_types(conn, form, type_problems)
        await update_draft(conn, g.access, exception_id, form)
        detail = await _detail(conn, exception_id)
    return jsonify(detail)


@blueprint.post("/<uuid:exception_id>/transitions")
@requires("exception.read")
async def transition_exception_api(exception_id: UUID):
    """Ask for a transition; the engine checks it against the tenant's transition rows (and their capability)."""
    body = await _json_object()
    problems = _unknown(body, TRANSITION_FIELDS)
    to, comment = body.get("to"), body.get("comment")
    if to not in STATES:
        problems["to"] = f"the state to move to, one of {', '.join(STATES)}"
    if comment is not None and not isinstance(comment, str):
        problems["comment"] = "text (a JSON string)"
    elif comment is not None and len(comment) > COMMENT_LIMIT:
        problems["comment"] = f"at most {COMMENT_LIMIT} characters"
    elif comment is not None and not _storable(comment):
        problems["comment"] = UNSTORABLE
    if problems:
        raise ApiProblem(422, "Nothing changed: fix the fields named in problems.", problems)
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        outcome = await transition(conn, exception_id, to, Actor(access=g.access, stepped_up=False), comment)
        needed = await conn.fetchval("SELECT approvals_needed FROM exception WHERE id = $1", exception_id)
    return jsonify({"exception_id": str(outcome.exception_id), "from_state": outcome.from_state,
                    "state": outcome.to_state, "approval_level": outcome.approval_level or None,
                    "approvals_needed": needed})
