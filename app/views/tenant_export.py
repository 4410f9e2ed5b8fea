"""The tenant export screen (DPA 9.1): ask for an archive of all the organisation's data, watch it made, download it.

tenant.admin in the whole organisation, as the rest of the admin area. The
archive holds every person's data in the workspace, so asking for one and
downloading it also need a second factor from the last five minutes
(`@step_up`); the list and the progress only show that exports exist. The
job (app.jobs.tenant_export) makes the archive; the page of one export
polls its progress fragment every two seconds with htmx until it is done,
and offers a reload link to those without JavaScript. Asking and
downloading are recorded in the chain (app.tenant_export.requests).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from uuid import UUID

from quart import Blueprint, abort, current_app, g, request

from app.db import tenant_transaction
from app.evidence.deliver import send
from app.tenant_export import requests
from app.tenant_export.stored import NotServable, opened_archive
from app.views import pool, settings
from app.views.evidence import store
from app.web import render, see_other
from app.web.guards import requires, step_up

blueprint = Blueprint("tenant_export", __name__, url_prefix="/admin/export")
log = logging.getLogger("exceptao.tenant_export")

STEP_UP_SECONDS = 300
administers = requires("tenant.admin", whole_tenant=True)
NOTICES = {"busy": "An export is already being made: it is below. Ask again once it is done."}


def _read():
    return tenant_transaction(pool(), g.tenant.id, readonly=True)


@blueprint.get("")
@administers
async def index():
    async with _read() as conn:
        exports = await requests.recent(conn)
    return await render("admin/export.html", exports=exports, now=datetime.now(timezone.utc),
                        notice=NOTICES.get(request.args.get("notice", "")))


@blueprint.post("")
@administers
@step_up(STEP_UP_SECONDS)
async def ask():
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        working = [e for e in await requests.recent(conn, limit=5) if e.working]
        if working:
            return see_other("/admin/export?notice=busy")
        export_id = await requests.request_export(conn, g.user.id)
    return see_other(f"/admin/export/{export_id}")


async def _export(export_id: UUID) -> requests.Export:
    async with _read() as conn:
        export = await requests.get_export(conn, export_id)
    if export is None:
        abort(404)
    return export


@blueprint.get("/<uuid:export_id>")
@administers
async def progress(export_id: UUID):
    """The page of one export; its `progress` block is the fragment htmx polls."""
    return await render("admin/export_progress.html", block="progress", export=await _export(export_id),
                        now=datetime.now(timezone.utc))


@blueprint.get("/<uuid:export_id>/download")
@administers
@step_up(STEP_UP_SECONDS)
async def download(export_id: UUID):
    if request.method == "HEAD":
        abort(405)   # answering it would decrypt the whole archive and record a download nobody made
    export = await _export(export_id)
    if export.working:
        abort(409, "This export is still being made.")
    if not export.downloadable(datetime.now(timezone.utc)):
        abort(410, "This archive is no longer kept: archives can be downloaded for 7 days. Ask for a new export.")
    try:
        copy = await opened_archive(pool(), store(), settings(), g.tenant.id, export)
    except NotServable as problem:
        log.critical("tenant export %s of tenant %s cannot be served: %s", export.id, g.tenant.id, problem)
        return await render("error.html", title="This archive cannot be served", status=409,
                            message="The stored archive is not the one that was made, so none of it is sent. "
                                    "Ask for a new export; the operators have been alerted.")
    try:
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            await requests.record_download(conn, g.user.id, export)
    except BaseException:
        copy.close()
        raise
    made = (export.finished_at or export.requested_at).strftime("%Y%m%d-%H%M%S")
    response = current_app.response_class(send(copy), status=200, content_type="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="exceptao-{g.tenant.slug}-{made}.zip"'
    response.headers["Content-Length"] = str(export.size)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response
