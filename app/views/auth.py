"""Signing in and out: password, second factor, step-up, the workspace chooser."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlencode

from quart import Blueprint, abort, g, redirect, request

from app.access.catalogue import CAPABILITIES
from app.accounts import factors, passwords, sessions, throttle
from app.accounts.users import User, credentials
from app.audit import AuditAction, Pii, Target, record
from app.audit.events import system_actor, user_actor
from app.db import tenant_transaction
from app.tenants import tenant_by_slug
from app.views import pool, settings
from app.web import csrf, render, safe_next, see_other
from app.web.guards import STEP_UP_FIELD, factor_within, second_factor_pending
from app.web.tenancy import tenant_url

blueprint = Blueprint("auth", __name__)

SIGNIN_FAILED = "Email or password is incorrect."
TOO_MANY = "Too many attempts. Wait {wait} and try again."
DISABLED = "This account is disabled. Ask an administrator of this workspace."


def client_address() -> str | None:
    """The peer's IP address (the ASGI server's view), or None when it has none."""
    try:
        return str(ipaddress.ip_address(request.remote_addr or ""))
    except ValueError:
        return None


def pii(email: str | None) -> Pii:
    return Pii(email=email, ip=client_address(), user_agent=(request.headers.get("User-Agent") or "")[:500] or None)


def key() -> bytes:
    return settings().secret_key


async def audit(conn, action: AuditAction, user: User | None, **data) -> None:
    actor = user_actor(user.id) if user else system_actor("signin")
    target = Target("user", str(user.id)) if user else None
    await record(conn, action, actor=actor, target=target, data=data, pii=pii(user.email if user else None))


async def finish_signin(conn, user: User, method: str | None) -> None:
    """The session in g becomes full: new token, counted, recorded."""
    if method is None:
        token, g.session = await sessions.promote(conn, g.session)
    else:
        token, g.session = await sessions.complete(conn, g.session, method)
    g.new_session_token = token
    await count_signin(conn, user)


async def count_signin(conn, user: User) -> None:
    """A completed sign-in: the count behind "TOTP from the second sign-in", and the audit event."""
    await conn.execute("UPDATE app_user SET signins = signins + 1 WHERE id = $1", user.id)
    await audit(conn, AuditAction.SIGNIN, user, methods=list(g.session.methods))


@blueprint.get("/")
async def home():
    if g.tenant is None:
        slug = request.args.get("workspace", "").strip().lower()
        if slug:
            if await tenant_by_slug(pool(), slug):
                return redirect(tenant_url(slug, "/signin"), 303)
            return await render("workspace.html", workspace=slug, message="There is no workspace by that name.",
                                status=404)
        return await render("workspace.html", workspace="", message=None)
    if g.session is None:
        return redirect("/signin", 303)
    if g.session.stage != sessions.FULL:
        return redirect("/signin/factor", 303)
    return await render("home.html", capabilities=CAPABILITIES.items())


@blueprint.get("/signin")
async def signin_form():
    if g.tenant is None:
        return redirect("/", 303)
    notice = {"reset": "Your password was changed. Sign in with the new one.",
              "welcome": "Your password is set. Sign in with it."}.get(request.args.get("notice", ""))
    return await render("signin.html", email="", message=None, notice=notice, next=safe_next(request.args.get("next")))


@blueprint.post("/signin")
async def signin():
    if g.tenant is None:
        return redirect("/", 303)
    form = await request.form
    email = form.get("email", "").strip()[:254]
    password = form.get("password", "")
    next_url = safe_next(form.get("next"))

    async def refuse(message: str, status: int):
        return await render("signin.html", email=email, message=message, notice=None, next=next_url, status=status)

    if "\x00" in email:  # PostgreSQL text cannot hold NUL: no account has such an address
        return await refuse("An email address cannot contain a NUL character.", 400)
    account = (g.tenant.id, email.lower())
    async with pool().acquire() as conn:
        if not (await throttle.allow(conn, key(), throttle.SIGNIN_PER_ADDRESS, client_address())
                and await throttle.allow(conn, key(), throttle.SIGNIN_PER_ACCOUNT, *account)):
            return await refuse(TOO_MANY.format(wait="a few minutes"), 429)
        wait_until = await throttle.signin_wait(conn, key(), *account)
        now = await conn.fetchval("SELECT now()")

    async with tenant_transaction(pool(), g.tenant.id) as conn:
        found = await credentials(conn, email) if email else None
        user, stored = found if found else (None, None)
        if wait_until is not None:
            await audit(conn, AuditAction.SIGNIN_FAIL, user, reason="locked")
            return await refuse(TOO_MANY.format(wait=throttle.wait_words(wait_until, now)), 429)
        if not await passwords.verified(stored, password):
            failures = await throttle.signin_failed(conn, key(), *account)
            await audit(conn, AuditAction.SIGNIN_FAIL, user, reason="bad_password" if user else "unknown_account")
            if user is not None and failures == throttle.LOCK_AFTER:
                await audit(conn, AuditAction.ACCOUNT_LOCK, user, minutes=throttle.LOCK_MINUTES)
            return await refuse(SIGNIN_FAILED, 401)

        await throttle.signin_succeeded(conn, key(), *account)
        if user.disabled:
            await audit(conn, AuditAction.SIGNIN_FAIL, user, reason="disabled")
            return await refuse(DISABLED, 403)
        if passwords.needs_rehash(stored):
            await conn.execute("UPDATE app_user SET password_hash = $2 WHERE id = $1",
                               user.id, await passwords.hashed(password))
        csrf.renew()
        first_signin = user.signins == 0 and not user.has_second_factor
        token, g.session = await sessions.start(
            conn, settings(), g.tenant.id, user.id, stage=sessions.PASSWORD, methods=["password"], factor=False)
        g.new_session_token = token
        g.user = user
        if first_signin:
            # The one sign-in that may skip enrolment: signed in, and offered it.
            await finish_signin(conn, user, None)
            return see_other("/account/totp?first=1")
    if user.has_second_factor:
        return see_other("/signin/factor?" + urlencode({"next": next_url}))
    return see_other("/account/totp")


@blueprint.get("/signin/factor")
@second_factor_pending
async def factor_form():
    if g.session.stage == sessions.FULL:
        return redirect("/", 303)
    if not g.user.has_second_factor:
        return redirect("/account/totp", 303)
    return await render("factor.html", message=None, next=safe_next(request.args.get("next")))


async def check_second_factor(conn, user: User, code: str) -> str | None:
    """The method that `code` proves ('totp' or 'recovery_code'), or None."""
    if user.has_totp and await factors.check_totp(conn, settings(), g.tenant.id, user.id, code):
        return "totp"
    if len(code.replace("-", "").replace(" ", "")) == 16 and await factors.use_recovery_code(conn, user.id, code):
        await audit(conn, AuditAction.RECOVERY_CODE_USE, user)
        return "recovery_code"
    return None


@blueprint.post("/signin/factor")
@second_factor_pending
async def factor():
    if g.session.stage == sessions.FULL:
        return see_other("/")
    form = await request.form
    next_url = safe_next(form.get("next"))
    if not await throttle.allow(pool(), key(), throttle.FACTOR_PER_ACCOUNT, g.user.id):
        return await render("factor.html", message=TOO_MANY.format(wait="a few minutes"), next=next_url, status=429)
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        method = await check_second_factor(conn, g.user, form.get("code", "")[:40])
        if method is None:
            await audit(conn, AuditAction.FACTOR_FAIL, g.user, purpose="signin")
        else:
            await finish_signin(conn, g.user, method)
    if method is None:
        return await render("factor.html", message="That code is not valid, or was used already.", next=next_url,
                            status=401)
    return see_other(next_url)


@blueprint.post("/signout")
@second_factor_pending
async def signout():
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        await sessions.revoke(conn, g.user.id, g.session.id)
        await audit(conn, AuditAction.SIGNOUT, g.user)
    g.end_session = True
    csrf.renew()
    return see_other("/signin")


@blueprint.post("/scope")
async def switch_scope():
    """Work in another of the scopes this user may work in (the whole organisation or an org unit)."""
    form = await request.form
    wanted = form.get("unit", "")
    scope = next((s for s in g.access.scopes if str(s.unit_id or "") == wanted), None)
    if scope is None:
        abort(404, "You cannot work in that scope.")
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        g.session = await sessions.set_scope(conn, g.session, scope.unit_id)
        await audit(conn, AuditAction.SCOPE_SWITCH, g.user, scope=str(scope.unit_id) if scope.unit_id else None)
    return see_other(safe_next(form.get("next")))


# Step-up ------------------------------------------------------------------

async def step_up_prompt(seconds: int):
    """Ask for a second factor before the marked view runs, keeping what the user sent.

    A POST comes back to the same URL with the same fields and the code; when
    the code is good, the view runs with the form as first typed.
    """
    fields = []
    if request.method == "POST":
        form = await request.form
        code = form.get(STEP_UP_FIELD)
        if code is not None and await _step_up_with(code):
            return None
        fields = [(k, v) for k, v in form.items(multi=True) if k not in (csrf.FIELD, STEP_UP_FIELD)]
        message = "That code is not valid, or was used already." if code is not None else None
        action = request.full_path.rstrip("?")
    else:
        message = None
        fields = [("next", request.full_path.rstrip("?"))]
        action = "/step-up"
    return await render("step_up.html", fields=fields, action=action, message=message, minutes=max(1, seconds // 60),
                        status=401 if message else 200)


async def _step_up_with(code: str) -> bool:
    if not await throttle.allow(pool(), key(), throttle.FACTOR_PER_ACCOUNT, g.user.id):
        return False
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        ok = g.user.has_totp and await factors.check_totp(conn, settings(), g.tenant.id, g.user.id, code[:40])
        if not ok:
            await audit(conn, AuditAction.FACTOR_FAIL, g.user, purpose="step_up")
            return False
        g.new_session_token, g.session = await sessions.complete(conn, g.session, "totp")
        await audit(conn, AuditAction.STEP_UP, g.user, method="totp")
    return True


@blueprint.post("/step-up")
async def step_up_for_get():
    form = await request.form
    next_url = safe_next(form.get("next"))
    if factor_within(300) or await _step_up_with(form.get(STEP_UP_FIELD, "")):
        return see_other(next_url)
    return await render("step_up.html", fields=[("next", next_url)], action="/step-up", minutes=5,
                        message="That code is not valid, or was used already.", status=401)
