"""Password reset by email: ask for a link, follow it, choose a new password."""

from __future__ import annotations

import logging

from quart import Blueprint, current_app, g, redirect, request

from app import mail
from app.accounts import passwords, resets, sessions, throttle
from app.accounts.users import by_id, credentials
from app.audit import AuditAction
from app.db import tenant_transaction
from app.views import pool, settings
from app.views.auth import TOO_MANY, audit, client_address, key
from app.web import render, see_other
from app.web.tenancy import tenant_url

blueprint = Blueprint("reset", __name__, url_prefix="/reset")
log = logging.getLogger(__name__)

SENT = "If an account uses that address, a link to choose a new password is on its way. It works once, for 30 minutes."
DEAD_LINK = "This link has expired or was used already. Ask for a new one."


@blueprint.get("")
async def request_form():
    if g.tenant is None:
        return redirect("/", 303)
    return await render("reset_request.html", email="", message=None, sent=None)


@blueprint.post("")
async def request_link():
    if g.tenant is None:
        return redirect("/", 303)
    email = (await request.form).get("email", "").strip()[:254]
    if "\x00" in email:  # PostgreSQL text cannot hold NUL: no account has such an address
        return await render("reset_request.html", email=email,
                            message="An email address cannot contain a NUL character.", sent=None, status=400)
    if not (await throttle.allow(pool(), key(), throttle.RESET_PER_ADDRESS, client_address())
            and await throttle.allow(pool(), key(), throttle.RESET_PER_ACCOUNT, g.tenant.id, email.lower())):
        return await render("reset_request.html", email=email, message=TOO_MANY.format(wait="a few minutes"),
                            sent=None, status=429)
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        found = await credentials(conn, email) if email else None
        if found and found[0].disabled:
            found = None  # a disabled account gets no link, and the answer is the same
        if found:
            user = found[0]
            token = await resets.issue(conn, g.tenant.id, user.id)
            await audit(conn, AuditAction.PASSWORD_RESET_REQUEST, user)
    if found:
        # Sent after the response, so an address with an account answers as fast as one without.
        link = tenant_url(g.tenant.slug, f"/reset/{token}")
        current_app.add_background_task(_mail_link, settings(), user.email, g.tenant.name, link)
    return await render("reset_request.html", email="", message=None, sent=SENT)


async def _mail_link(settings, to: str, tenant_name: str, link: str) -> None:
    body = (f"Someone asked to reset the password of your {tenant_name} account on Exceptao.\n\n"
            f"Choose a new password here (the link works once, for {resets.VALID_MINUTES} minutes):\n{link}\n\n"
            "If it was not you, ignore this message; your password stays as it is.\n")
    try:
        await mail.send(settings, to, "Reset your Exceptao password", body)
    except OSError:
        log.exception("password reset mail could not be sent")


@blueprint.get("/<token>")
async def new_password_form(token: str):
    if g.tenant is None:
        return redirect("/", 303)
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        user_id = await resets.holder(conn, token)
        invited = user_id is not None and await _invited(conn, user_id)
    if user_id is None:
        return await render("error.html", title="Link expired", message=DEAD_LINK, status=404)
    return await render("reset_form.html", token=token, message=None, invited=invited)


async def _invited(conn, user_id) -> bool:
    """An invited user has no password yet: the link is their welcome, not a reset."""
    return await conn.fetchval("SELECT password_hash IS NULL FROM app_user WHERE id = $1", user_id)


@blueprint.post("/<token>")
async def set_new_password(token: str):
    if g.tenant is None:
        return redirect("/", 303)
    form = await request.form
    password, again = form.get("password", ""), form.get("password_again", "")
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        user_id = await resets.holder(conn, token)
        if user_id is None:
            return await render("error.html", title="Link expired", message=DEAD_LINK, status=404)
        user = await by_id(conn, user_id)
        invited = await _invited(conn, user_id)
        problem = "The two passwords differ." if password != again else passwords.password_problem(
            password, email=user.email)
        if problem:
            return await render("reset_form.html", token=token, message=problem, invited=invited, status=422)
        if await resets.redeem(conn, token) is None:
            return await render("error.html", title="Link expired", message=DEAD_LINK, status=404)
        await conn.execute("UPDATE app_user SET password_hash = $2 WHERE id = $1",
                           user.id, await passwords.hashed(password))
        revoked = await sessions.revoke_all(conn, user.id)
        await throttle.signin_succeeded(conn, key(), g.tenant.id, user.email.lower())
        await audit(conn, AuditAction.PASSWORD_RESET, user, sessions_revoked=revoked, first_password=invited)
    g.end_session = True
    return see_other("/signin?notice=" + ("welcome" if invited else "reset"))
