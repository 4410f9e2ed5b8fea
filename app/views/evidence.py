"""Evidence screens: upload to an exception or a risk, download, one file's details, the quarantine review, the DLP policy.

Who may do what (app.evidence.receive and app.evidence.review say why):
- upload: to an exception, its requester or owner, holding exception.submit
  or risk.manage, while its record is open; to a risk, risk.manage. Both
  routes need exception.read, like the pages they are on.
- download: evidence.read; a quarantined file only for its reviewers.
- decide on quarantine: exception.approve and evidence.read, a fresh second
  factor, never on one's own upload.
- the DLP policy: tenant.admin in the whole organisation, a fresh second factor.
Row-level security and the org-unit scope decide what exists at all: an id
of another tenant or another unit is 404, as if it never was.

The upload's file arrives before the view runs (the CSRF check reads the
form: app.evidence.intake spools it, hashed, within the size limit); the
view hands the spool to the pipeline, shielded from the request's
cancellation so a client leaving late cannot stop it half-way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from uuid import UUID

from quart import Blueprint, abort, current_app, g, request
from werkzeug.exceptions import Forbidden, MethodNotAllowed

from app.accounts import sessions
from app.db import tenant_transaction
from app.evidence import (POLICIES, STATES, Evidence, Parent, dlp_policy, evidence_of, get_evidence, intake,
                          quarantined)
from app.evidence.deliver import Mismatch, record_download, record_mismatch, send, verified_copy
from app.evidence.names import content_disposition, sanitised
from app.evidence.receive import Received, Uploader, UploadRefused, check_may_upload, take
from app.evidence.review import DecisionRefused, decide, discard_rejected, may_decide, may_download, set_dlp_policy
from app.storage import open_store
from app.views import pool, settings
from app.web import cookies, render, see_other
from app.web.guards import requires, step_up
from app.web.tenancy import tenant_from_host

blueprint = Blueprint("evidence", __name__)
log = logging.getLogger("exceptao.evidence")
STEP_UP_SECONDS = 300
FILE_FIELD = "file"
NOTICES = {"received": "Received.", "released": "Released: the file can now be downloaded.",
           "rejected": "Rejected: the stored file was deleted; this record of it stays.",
           "policy": "The DLP policy is saved.", "unchanged": "Nothing was changed."}


@blueprint.record_once
def _install(state) -> None:
    app = state.app
    limit = app.config["EXCEPTAO"].evidence_max_mb * 1024 * 1024
    intake.install(app, app.config["EXCEPTAO"].data_dir,
                   {"evidence.upload_to_exception": limit, "evidence.upload_to_risk": limit}, _admit_upload)


async def _admit_upload() -> None:
    """Before an upload's body is read: it comes with a live, fully signed-in session of this host's tenant.

    The guard checks all of it again (and CSRF, and the capabilities) once the form is in; this only keeps
    anyone without a session from making the server spool up to the size limit first.
    """
    tenant = await tenant_from_host()
    token = request.cookies.get(cookies.name("session"))
    if tenant is None or tenant.suspended or not token:
        raise Forbidden("Sign in to upload evidence.")
    async with tenant_transaction(pool(), tenant.id) as conn:
        session = await sessions.current(conn, settings(), token)
    if session is None or session.stage != sessions.FULL:
        raise Forbidden("Sign in to upload evidence.")


@blueprint.before_app_serving
async def _open_store() -> None:
    current_app.extensions["evidence_store"] = open_store(settings())
    await asyncio.to_thread(intake.sweep_spool, settings().data_dir)


@blueprint.after_app_serving
async def _close_store() -> None:
    store = current_app.extensions.pop("evidence_store", None)
    if store is not None:
        await store.close()


def store():
    return current_app.extensions["evidence_store"]


def _read():
    return tenant_transaction(pool(), g.tenant.id, readonly=True)


def _write():
    return tenant_transaction(pool(), g.tenant.id)


def _uploader() -> Uploader:
    return Uploader(g.tenant.id, g.user.id, g.access.has("exception.submit"), g.access.has("risk.manage"))


# The evidence section of the exception and risk pages -----------------------

@dataclass(frozen=True)
class Section:
    parent: Parent
    items: list[tuple[Evidence, bool, bool]]     # (evidence, may download it, may decide on it)
    may_upload: bool
    max_mb: int
    waiting_for_me: int


@blueprint.app_template_global()
async def evidence_section(kind: str, parent_id: UUID) -> Section:
    """What the evidence section of an exception or risk page shows this user.

    A template global, so the pages of exceptions and risks show it without
    their views knowing about evidence; it reads in a transaction of its own.
    """
    parent = Parent(kind, parent_id)
    async with _read() as conn:
        found = await evidence_of(conn, parent)
        try:
            await check_may_upload(conn, _uploader(), parent)
            may_upload = True
        except UploadRefused:
            may_upload = False
    items = [(e, may_download(g.access, e), e.state == "quarantined" and may_decide(g.access, e)) for e in found]
    return Section(parent, items, may_upload, settings().evidence_max_mb, sum(1 for _, _, d in items if d))


# Upload ----------------------------------------------------------------------

@blueprint.post("/exceptions/<uuid:parent_id>/evidence")
@requires("exception.read")
async def upload_to_exception(parent_id: UUID):
    return await _upload(Parent("exception", parent_id))


@blueprint.post("/risks/<uuid:parent_id>/evidence")
@requires("exception.read")
async def upload_to_risk(parent_id: UUID):
    return await _upload(Parent("risk", parent_id))


async def _refused(parent: Parent, refused: UploadRefused, filename: str | None = None):
    return await render("evidence/refused.html", parent=parent, refused=refused, filename=filename,
                        status=refused.status)


async def _upload(parent: Parent):
    files = await request.files
    upload = files.get(FILE_FIELD)
    spool = upload.stream if upload is not None and isinstance(upload.stream, intake.Spool) else None
    if spool is None or (spool.size == 0 and not upload.filename):
        return await _refused(parent, UploadRefused(422, "Choose a file to upload."))
    filename = sanitised(upload.filename)
    if spool.size == 0:
        return await _refused(parent, UploadRefused(422, "The file is empty: there is nothing to keep as evidence."),
                              filename)
    try:
        async with _read() as conn:
            await check_may_upload(conn, _uploader(), parent)
    except UploadRefused as refused:
        return await _refused(parent, refused, filename)
    work = asyncio.ensure_future(take(pool(), store(), settings(), _uploader(), parent, filename, spool.hand_over()))
    work.add_done_callback(_log_unawaited)
    try:
        received: Received = await asyncio.shield(work)
    except UploadRefused as refused:
        return await _refused(parent, refused, filename)
    notice = "received-warning" if received.warning else "received"
    return see_other(f"/evidence/{received.evidence.id}/details?notice={notice}")


def _log_unawaited(work: asyncio.Future) -> None:
    """A pipeline whose request went away: its outcome is only in the log (and the audit chain when it stored)."""
    if not work.cancelled() and work.exception() is not None and not isinstance(work.exception(), UploadRefused):
        log.error("an evidence upload failed", exc_info=work.exception())


# One file --------------------------------------------------------------------

async def _evidence(evidence_id: UUID) -> Evidence:
    async with _read() as conn:
        evidence = await get_evidence(conn, evidence_id)
    if evidence is None:
        abort(404)
    return evidence


@blueprint.get("/evidence/<uuid:evidence_id>/details")
@requires("exception.read")
async def details(evidence_id: UUID, problem: str | None = None, typed: dict | None = None, status: int = 200):
    evidence = await _evidence(evidence_id)
    notice = request.args.get("notice", "")
    return await render("evidence/details.html", evidence=evidence, states=STATES,
                        may_download=may_download(g.access, evidence),
                        may_decide=evidence.state == "quarantined" and may_decide(g.access, evidence),
                        notice=NOTICES.get(notice.removesuffix("-warning")), warning=notice == "received-warning",
                        problem=problem, typed=typed or {}, status=status)


@blueprint.get("/evidence/<uuid:evidence_id>")
@requires("evidence.read")
async def download(evidence_id: UUID):
    if request.method == "HEAD":
        # Werkzeug answers HEAD wherever GET is routed; here it would decrypt the whole file and record a download.
        raise MethodNotAllowed(valid_methods=["GET"])
    evidence = await _evidence(evidence_id)
    if evidence.state == "rejected":
        abort(410, "This file was rejected in review and its stored copy deleted; only the record of it remains.")
    if not may_download(g.access, evidence):
        abort(403, "This file is quarantined: it can be downloaded once a reviewer has released it.")
    try:
        copy = await verified_copy(pool(), store(), settings(), g.tenant.id, evidence)
    except Mismatch as mismatch:
        await record_mismatch(pool(), g.tenant.id, g.user.id, evidence, mismatch)
        return await render("error.html", title="This file cannot be served", status=409,
                            message="The stored file does not match what was uploaded, so none of it is sent. "
                                    "This has been recorded and reported to the operators.")
    try:
        async with _write() as conn:
            await record_download(conn, g.user.id, evidence)
    except BaseException:
        copy.close()
        raise
    response = current_app.response_class(send(copy), status=200, content_type=evidence.content_type)
    response.headers["Content-Disposition"] = content_disposition(evidence.filename)
    response.headers["Content-Length"] = str(evidence.size)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


# Quarantine review -------------------------------------------------------------

reviews = requires("exception.approve", "evidence.read")


@blueprint.get("/evidence/quarantine")
@reviews
async def quarantine():
    async with _read() as conn:
        waiting = await quarantined(conn)
        policy = await dlp_policy(conn)
    return await render("evidence/quarantine.html", waiting=[(e, may_decide(g.access, e)) for e in waiting],
                        policy=POLICIES[policy])


@blueprint.post("/evidence/<uuid:evidence_id>/decision")
@reviews
@step_up(STEP_UP_SECONDS)
async def decision(evidence_id: UUID):
    form = await request.form
    typed = {"decision": form.get("decision", ""), "comment": form.get("comment", "")}
    try:
        async with _write() as conn:
            evidence = await decide(conn, g.access, evidence_id, typed["decision"], typed["comment"])
    except DecisionRefused as refused:
        if refused.status == 404:
            abort(404)
        return await details(evidence_id, problem=refused.message, typed=typed, status=refused.status)
    if evidence.state == "rejected":
        await discard_rejected(store(), evidence)
    return see_other(f"/evidence/{evidence_id}/details?notice={evidence.state}")


# The tenant's DLP policy -----------------------------------------------------------

administers = requires("tenant.admin", whole_tenant=True)


@blueprint.get("/evidence/policy")
@administers
async def policy_form(problem: str | None = None, status: int = 200):
    async with _read() as conn:
        policy = await dlp_policy(conn)
    return await render("evidence/policy.html", policy=policy, policies=POLICIES, problem=problem,
                        notice=NOTICES.get(request.args.get("notice", "")), max_mb=settings().evidence_max_mb,
                        status=status)


@blueprint.post("/evidence/policy")
@administers
@step_up(STEP_UP_SECONDS)
async def policy_save():
    form = await request.form
    try:
        async with _write() as conn:
            changed = await set_dlp_policy(conn, g.user.id, form.get("policy", ""))
    except DecisionRefused as refused:
        return await policy_form(problem=refused.message, status=refused.status)
    return see_other(f"/evidence/policy?notice={'policy' if changed else 'unchanged'}")
