"""Passkey ceremonies over JSON (the one part that needs JavaScript: static/webauthn.js)."""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint, abort, g, jsonify, request

from app.accounts import passkeys, sessions, throttle
from app.accounts.passkeys import PasskeyError
from app.accounts.users import by_id
from app.audit import AuditAction
from app.db import tenant_transaction
from app.views import pool, settings
from app.views.auth import DISABLED, audit, client_address, count_signin, finish_signin, key
from app.web import csrf, render, safe_next, see_other
from app.web.guards import second_factor_pending, step_up

blueprint = Blueprint("passkeys", __name__)
STATE_COOKIE = "webauthn"


def rp_id() -> str:
    return (request.host or "").split(":")[0].lower()


def begin(purpose: str, options: dict, state: dict):
    response = jsonify(options)
    g.cookie_updates = [(STATE_COOKIE, passkeys.seal_state(key(), g.tenant.id, purpose, state))]
    return response


def state_for(purpose: str) -> dict:
    from app.web.cookies import name

    return passkeys.open_state(key(), g.tenant.id, purpose, request.cookies.get(name(STATE_COOKIE)))


def failed(error: PasskeyError, status: int = 400):
    g.cookie_updates = [(STATE_COOKIE, "")]
    return jsonify({"error": str(error)}), status


def done(location: str):
    g.cookie_updates = [(STATE_COOKIE, "")]
    return jsonify({"redirect": location})


# Registration -------------------------------------------------------------

@blueprint.get("/account/passkeys/new")
@second_factor_pending
async def new_form():
    return await render("passkey_new.html")


@blueprint.post("/account/passkeys/options")
@second_factor_pending
async def registration_options():
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        options, state = await passkeys.registration_options(conn, rp_id(), g.user)
    return begin("register", options, state)


@blueprint.post("/account/passkeys")
@second_factor_pending
async def register():
    body = await request.get_json(silent=True) or {}
    name = str(body.get("name") or "").strip()[:100] or "Passkey"
    try:
        state = state_for("register")
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            await passkeys.register(conn, rp_id(), g.tenant.id, g.user, state, body.get("credential") or {}, name)
            await audit(conn, AuditAction.PASSKEY_REGISTER, g.user, name=name)
            g.user = await by_id(conn, g.user.id)
            if g.session.stage != sessions.FULL:
                # Made with user verification just now: this is the second factor owed.
                await finish_signin(conn, g.user, "passkey")
    except PasskeyError as error:
        return failed(error)
    return done("/account?notice=passkey-added")


@blueprint.post("/account/passkeys/<uuid:passkey_id>/remove")
@step_up()
async def remove(passkey_id: UUID):
    async with tenant_transaction(pool(), g.tenant.id) as conn:
        name = await conn.fetchval(
            "DELETE FROM webauthn_credential WHERE id = $1 AND user_id = $2 RETURNING name", passkey_id, g.user.id)
        if name is None:
            abort(404)
        await audit(conn, AuditAction.PASSKEY_REMOVE, g.user, name=name)
    return see_other("/account?notice=passkey-removed")


# Sign-in without a password, and as the second factor -----------------------

@blueprint.post("/signin/passkey/options")
async def signin_options():
    if g.tenant is None:
        abort(404)
    options, state = await passkeys.authentication_options(None, rp_id(), None)
    return begin("signin", options, state)


@blueprint.post("/signin/passkey")
async def signin():
    if g.tenant is None:
        abort(404)
    body = await request.get_json(silent=True) or {}
    if not await throttle.allow(pool(), key(), throttle.SIGNIN_PER_ADDRESS, client_address()):
        return failed(PasskeyError("Too many attempts. Wait a few minutes and try again."), 429)
    try:
        state = state_for("signin")
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            user_id = await passkeys.authenticate(conn, rp_id(), state, body.get("credential") or {}, None)
            user = await by_id(conn, user_id)
            if user.disabled:
                raise PasskeyError(DISABLED)
            # A passkey with user verification is both factors: the session starts full.
            g.new_session_token, g.session = await sessions.start(
                conn, settings(), g.tenant.id, user.id, stage=sessions.FULL, methods=["passkey"], factor=True)
            g.user = user
            await count_signin(conn, user)
    except PasskeyError as error:
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            await audit(conn, AuditAction.SIGNIN_FAIL, None, reason="passkey")
        return failed(error, 401)
    csrf.renew()
    return done(safe_next(body.get("next")))


@blueprint.post("/signin/factor/passkey/options")
@second_factor_pending
async def factor_options():
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        options, state = await passkeys.authentication_options(conn, rp_id(), g.user.id)
    return begin("factor", options, state)


@blueprint.post("/signin/factor/passkey")
@second_factor_pending
async def factor():
    body = await request.get_json(silent=True) or {}
    if not await throttle.allow(pool(), key(), throttle.FACTOR_PER_ACCOUNT, g.user.id):
        return failed(PasskeyError("Too many attempts. Wait a few minutes and try again."), 429)
    try:
        state = state_for("factor")
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            await passkeys.authenticate(conn, rp_id(), state, body.get("credential") or {}, g.user.id)
            await finish_signin(conn, g.user, "passkey")
    except PasskeyError as error:
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            await audit(conn, AuditAction.FACTOR_FAIL, g.user, purpose="passkey")
        return failed(error, 401)
    return done(safe_next(body.get("next")))


# Step-up with a passkey: the prompt's script then resends the pending form.

@blueprint.post("/step-up/passkey/options")
async def step_up_options():
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        options, state = await passkeys.authentication_options(conn, rp_id(), g.user.id)
    return begin("step-up", options, state)


@blueprint.post("/step-up/passkey")
async def step_up():
    body = await request.get_json(silent=True) or {}
    if not await throttle.allow(pool(), key(), throttle.FACTOR_PER_ACCOUNT, g.user.id):
        return failed(PasskeyError("Too many attempts. Wait a few minutes and try again."), 429)
    try:
        state = state_for("step-up")
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            await passkeys.authenticate(conn, rp_id(), state, body.get("credential") or {}, g.user.id)
            g.new_session_token, g.session = await sessions.complete(conn, g.session, "passkey")
            await audit(conn, AuditAction.STEP_UP, g.user, method="passkey")
    except PasskeyError as error:
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            await audit(conn, AuditAction.FACTOR_FAIL, g.user, purpose="step_up")
        return failed(error, 401)
    return done(safe_next(body.get("next")))
