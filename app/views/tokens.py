"""Personal API tokens of the signed-in user: make one (shown once), see them, revoke them."""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint, abort, g, request

from app.access import tokens
from app.access.catalogue import CAPABILITIES
from app.audit import AuditAction, Target, record
from app.audit.events import user_actor
from app.db import tenant_transaction
from app.views import pool
from app.web import render, see_other
from app.web.guards import step_up

blueprint = Blueprint("tokens", __name__, url_prefix="/account/tokens")


async def _page(*, form: dict | None = None, problems: list[str] | None = None, new_token: str | None = None,
                status: int = 200):
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        mine = await tokens.of_user(conn, g.user.id)
    held = [(code, CAPABILITIES[code]) for code in CAPABILITIES if g.access.has(code)]
    return await render("tokens.html", tokens=mine, held=held, form=form or {"days": tokens.DEFAULT_DAYS},
                        problems=problems or [], new_token=new_token, max_days=tokens.MAX_DAYS, status=status)


@blueprint.get("")
async def index():
    return await _page()


@blueprint.post("")
@step_up()
async def create():
    form = await request.form
    name = form.get("name", "")[:200]
    chosen = form.getlist("capability")
    try:
        days = int(form.get("days", ""))
    except ValueError:
        days = 0
    kept = {"name": name, "capabilities": chosen, "days": form.get("days", "")}
    if problems := tokens.check_request(g.access, name, chosen, days):
        return await _page(form=kept, problems=problems, status=422)
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        secret, token = await tokens.create(conn, g.tenant.id, g.access, name, chosen, days)
        await record(conn, AuditAction.TOKEN_CREATE, actor=user_actor(g.user.id), target=Target("api_token", token.id),
                     data={"before": None, "after": token.as_json()})
    return await _page(new_token=secret)


@blueprint.post("/<uuid:token_id>/revoke")
async def revoke(token_id: UUID):
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        token = await tokens.revoke(conn, g.user.id, token_id)
        if token is None:
            abort(404, "There is no such live token of yours.")
        await record(conn, AuditAction.TOKEN_REVOKE, actor=user_actor(g.user.id), target=Target("api_token", token.id),
                     data={"before": {**token.as_json(), "revoked": False}, "after": {**token.as_json(), "revoked": True}})
    return see_other("/account/tokens")
