"""Account security: second factors, recovery codes and sessions of the signed-in user."""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint, abort, g, request

from app.accounts import factors, sessions, totp
from app.accounts.users import by_id
from app.audit import AuditAction
from app.db import tenant_transaction
from app.views import pool, settings
from app.views.auth import audit, finish_signin
from app.web import render, see_other
from app.web.guards import second_factor_pending, step_up

blueprint = Blueprint("account", __name__, url_prefix="/account")


@blueprint.get("")
async def security():
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        live = await sessions.live_sessions(conn, settings(), g.user.id)
        codes_left = await factors.recovery_codes_left(conn, g.user.id)
        passkeys = await conn.fetch(
            "SELECT id, name, created_at, last_used_at FROM webauthn_credential WHERE user_id = $1 ORDER BY created_at",
            g.user.id)
    return await render("account.html", sessions=live, codes_left=codes_left, passkeys=passkeys,
                        notice=request.args.get("notice"))


@blueprint.get("/totp")
@second_factor_pending
async def totp_form():
    if g.user.has_totp:
        return see_other("/account")
    return await _enrol_page(message=None, status=200)


async def _enrol_page(*, message: str | None, status: int):
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        secret = await factors.pending_totp_secret(conn, settings(), g.tenant.id, g.user)
    uri = totp.provisioning_uri(secret, f"{g.user.email} ({g.tenant.slug})")
    return await render("totp_enrol.html", secret=secret, qr=totp.qr_svg(uri), message=message,
                        must=g.session.stage != sessions.FULL, first=request.args.get("first") == "1",
                        status=status)


@blueprint.post("/totp")
@second_factor_pending
async def totp_confirm():
    form = await request.form
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        if not await factors.check_totp(conn, settings(), g.tenant.id, g.user.id, form.get("code", "")[:40],
                                        enrolling=True):
            await audit(conn, AuditAction.FACTOR_FAIL, g.user, purpose="totp_enrol")
            failed = True
        else:
            failed = False
            await audit(conn, AuditAction.TOTP_ENROL, g.user)
            codes = await factors.new_recovery_codes(conn, g.tenant.id, g.user.id)
            await audit(conn, AuditAction.RECOVERY_CODES_CREATE, g.user, count=len(codes))
            g.user = await by_id(conn, g.user.id)
            if g.session.stage != sessions.FULL:
                await finish_signin(conn, g.user, "totp")
            else:
                g.new_session_token, g.session = await sessions.complete(conn, g.session, "totp")
    if failed:
        return await _enrol_page(message="That code is not valid. Check your device's clock and try again.",
                                 status=422)
    return await render("recovery_codes.html", codes=codes)


@blueprint.post("/totp/remove")
@step_up()
async def totp_remove():
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        if await factors.remove_totp(conn, g.user.id):
            await audit(conn, AuditAction.TOTP_REMOVE, g.user)
    return see_other("/account?notice=totp-removed")


@blueprint.post("/recovery-codes")
@step_up()
async def recovery_codes():
    if not g.user.has_second_factor:
        abort(409, "Add an authenticator app or a passkey first.")
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        codes = await factors.new_recovery_codes(conn, g.tenant.id, g.user.id)
        await audit(conn, AuditAction.RECOVERY_CODES_CREATE, g.user, count=len(codes))
    return await render("recovery_codes.html", codes=codes)


@blueprint.post("/sessions/<uuid:session_id>/revoke")
async def revoke_session(session_id: UUID):
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        if not await sessions.revoke(conn, g.user.id, session_id):
            abort(404)
        await audit(conn, AuditAction.SESSION_REVOKE, g.user, session=str(session_id))
    if session_id == g.session.id:
        g.end_session = True
        return see_other("/signin")
    return see_other("/account?notice=session-revoked")


@blueprint.post("/sessions/revoke-all")
async def revoke_all_sessions():
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        count = await sessions.revoke_all(conn, g.user.id)
        await audit(conn, AuditAction.SESSIONS_REVOKE_ALL, g.user, count=count)
    g.end_session = True
    return see_other("/signin")
