"""Erasure of a person (DPA 11), as a tenant administrator does it: ask, confirm, erase; and the record of erasures.

Erasure cannot be undone, so it needs tenant.admin in the whole organisation,
a second factor from the last 5 minutes, and a confirmation step that shows
how many audit records and which account it would change before anything
does. The address travels only in POST bodies, never in a URL (URLs end up in
logs). The past erasures, with their legal-basis notes, can be downloaded as
CSV or JSON for the controller (DPA 11.4); each download is recorded.
"""

from __future__ import annotations

from datetime import datetime, timezone

from quart import Blueprint, current_app, g, request
from werkzeug.datastructures import MultiDict

from app.access.admin import ADMIN, Refused
from app.audit import erasure
from app.audit.events import user_actor
from app.db import tenant_transaction
from app.views import pool
from app.web import render, see_other
from app.web.guards import requires, step_up

blueprint = Blueprint("erasure", __name__, url_prefix="/admin/erasure")

STEP_UP_SECONDS = 300
admin_only = requires(ADMIN, whole_tenant=True)
FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def irreversible(view):
    """tenant.admin in the whole organisation, and a second factor from the last 5 minutes."""
    return admin_only(step_up(STEP_UP_SECONDS)(view))


async def _page(form: MultiDict | None = None, refusal: Refused | None = None):
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        done = await erasure.erasures(conn)
    form = form or MultiDict({"basis": erasure.DEFAULT_BASIS})
    notice = "Erased. The record below is what remains of the request." if request.args.get("notice") else None
    return await render("admin/erasure.html", erasures=done, form=form, problem=str(refusal) if refusal else None,
                        notice=notice, status=refusal.status if refusal else 200)


@blueprint.get("")
@admin_only
async def index():
    return await _page()


@blueprint.post("/confirm")
@irreversible
async def confirm():
    """What the erasure would change; nothing changes here."""
    form = await request.form
    try:
        email, basis, reference = erasure.request_fields(form.get("email"), form.get("basis"), form.get("reference"))
        async with tenant_transaction(pool(), g.tenant.id) as conn:  # the preview rehearses and rolls back
            preview = await erasure.preview(conn, email)
        if not preview.anything:
            raise Refused(erasure.NOTHING, 404)
    except Refused as refusal:
        return await _page(form, refusal)
    return await render("admin/erasure_confirm.html", preview=preview, email=email, basis=basis,
                        reference=reference or "", self_erasure=preview.account_id == g.user.id)


@blueprint.post("")
@irreversible
async def erase():
    form = await request.form
    try:
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            await erasure.erase_actor(conn, g.tenant.id, form.get("email"), basis=form.get("basis"),
                                      reference=form.get("reference"), requested_by=user_actor(g.user.id))
    except Refused as refusal:
        return await _page(form, refusal)
    return see_other("/admin/erasure?notice=erased")


@blueprint.get("/export.<fmt>")
@admin_only
async def export(fmt: str):
    if fmt not in FORMATS:
        return await render("error.html", title="Not found", message="There is no such page.", status=404)
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        body = await erasure.export(conn, fmt, by=user_actor(g.user.id))
    response = await current_app.make_response((body, 200))
    response.headers["Content-Type"] = FORMATS[fmt]
    day = datetime.now(timezone.utc).date().isoformat()
    response.headers["Content-Disposition"] = f'attachment; filename="erasures-{g.tenant.slug}-{day}.{fmt}"'
    return response
