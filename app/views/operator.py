"""The operator panel, /operator on the bare base domain: sign-in, the tenant list, create, suspend, restore, verify.

Thin, as every view: app.operator.guard has already refused tenant hosts and
callers without a live operator session; the services in app.operator do the work.
"""

from __future__ import annotations

from urllib.parse import urlencode
from uuid import UUID

from quart import Blueprint, abort, g, redirect, request

from app.audit import Pii
from app.audit.events import operator_actor
from app.jobs import JOBS
from app.jobs.health import job_health
from app.operator import accounts, guard, sessions
from app.operator import tenants as operator_tenants
from app.operator.guard import operator_pool
from app.tenants import TenantError, create_tenant as create_tenant_record
from app.views import settings
from app.views.auth import client_address
from app.web import csrf, render, see_other

blueprint = Blueprint("operator", __name__, url_prefix="/operator")
blueprint.after_request(guard.finish)

PANEL = "/operator"


def signed_in() -> accounts.Operator:
    return g.operator_session.operator


def pii() -> Pii:
    """Who acted, kept beside the tenant's chain as for its own users (the chain holds a commitment)."""
    return Pii(email=signed_in().email, ip=client_address(),
               user_agent=(request.headers.get("User-Agent") or "")[:500] or None)


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def back_to_panel(search: str) -> str:
    return PANEL + ("?" + urlencode({"q": search}) if search else "")


async def show_panel(*, search: str = "", status: int = 200, new_tenant: dict | None = None,
                     create_problem: str | None = None, problems: dict[UUID, str] | None = None,
                     reasons: dict[UUID, str] | None = None):
    tenants = await operator_tenants.list_tenants(operator_pool(), search)
    return await render("operator/panel.html", tenants=tenants, search=search, limit=operator_tenants.LIST_LIMIT,
                        new_tenant=new_tenant or {"slug": "", "name": "", "public": False},
                        create_problem=create_problem, problems=problems or {}, reasons=reasons or {},
                        operator=signed_in(), reason_max=operator_tenants.REASON_MAX, status=status)


# Signing in and out ---------------------------------------------------------

@blueprint.get("/signin")
async def signin_form():
    if g.operator_session is not None:
        return redirect(PANEL, 303)
    return await render("operator/signin.html", email="", message=None)


@blueprint.post("/signin")
async def signin():
    form = await request.form
    email = form.get("email", "").strip()[:254]
    try:
        operator = await accounts.sign_in(operator_pool(), settings().secret_key, email, form.get("password", ""),
                                          form.get("code", "")[:40], client_address())
    except accounts.SigninRefused as refused:
        return await render("operator/signin.html", email=email, message=refused.message, status=refused.status)
    async with operator_pool().acquire() as conn:
        if g.operator_session is not None:
            await sessions.end(conn, g.operator_session.id)
        guard.start_session(await sessions.start(conn, operator.id))
    csrf.renew()
    return see_other(PANEL)


@blueprint.post("/signout")
async def signout():
    async with operator_pool().acquire() as conn:
        await sessions.end(conn, g.operator_session.id)
    guard.end_session()
    csrf.renew()
    return see_other(guard.SIGNIN_PATH)


# The panel --------------------------------------------------------------------

@blueprint.get("")
async def panel():
    return await show_panel(search=request.args.get("q", "").strip()[:100])


@blueprint.get("/jobs")
async def jobs():
    return await render("operator/jobs.html", jobs=await job_health(operator_pool(), JOBS))


@blueprint.post("/tenants")
async def create_tenant():
    form = await request.form
    new_tenant = {"slug": form.get("slug", "").strip()[:100], "name": form.get("name", "").strip()[:300],
                  "public": form.get("public") == "on"}
    try:
        async with operator_pool().acquire() as conn:
            tenant = await create_tenant_record(conn, new_tenant["slug"], new_tenant["name"],
                                                actor=operator_actor(signed_in().id), audit_public=new_tenant["public"])
    except TenantError as problem:
        return await show_panel(status=422, new_tenant=new_tenant, create_problem=sentence(str(problem)))
    return see_other(back_to_panel(tenant.slug))


@blueprint.post("/tenants/<uuid:tenant_id>/verify")
async def verify_chain(tenant_id: UUID):
    form = await request.form
    if await operator_tenants.verify(operator_pool(), settings(), tenant_id, signed_in()) is None:
        abort(404)
    return see_other(back_to_panel(form.get("q", "")))


@blueprint.post("/tenants/<uuid:tenant_id>/suspend")
async def suspend_tenant(tenant_id: UUID):
    form = await request.form
    search = form.get("q", "")
    reason = " ".join(form.get("reason", "").split())
    if not 1 <= len(reason) <= operator_tenants.REASON_MAX:
        problem = f"Give the reason for suspending, in at most {operator_tenants.REASON_MAX} characters."
        return await show_panel(search=search, status=422, problems={tenant_id: problem},
                                reasons={tenant_id: form.get("reason", "")})
    change = await operator_tenants.suspend(operator_pool(), tenant_id, signed_in(), reason, pii())
    if change is operator_tenants.Change.NO_TENANT:
        abort(404)
    return see_other(back_to_panel(search))


@blueprint.post("/tenants/<uuid:tenant_id>/restore")
async def restore_tenant(tenant_id: UUID):
    form = await request.form
    if await operator_tenants.restore(operator_pool(), tenant_id, signed_in(), pii()) is operator_tenants.Change.NO_TENANT:
        abort(404)
    return see_other(back_to_panel(form.get("q", "")))
