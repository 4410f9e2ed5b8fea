"""Guards: views are only marked; `enforce`, one before_request hook, checks what they mark.

Every view either declares the capabilities it needs (`@requires("tenant.admin")`)
or is listed in OPEN_VIEWS below, the one place that says which views need
none: PUBLIC ones anybody may open (sign-in, reset, the auditor's API), MEMBER
ones any signed-in user may (their own account). A view that does neither is
refused to everybody, and a test fails until it declares itself.

`@second_factor_pending` admits a session that still owes its second factor
(the challenge, enrolment, sign-out); `@step_up(seconds)` needs a second
factor used within that many seconds. Pages are signed in with the session
cookie; the JSON API under /api/ with `Authorization: Bearer` only.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import urlencode

from quart import abort, current_app, g, jsonify, redirect, request

from app import access as access_control
from app.access import tokens
from app.access.catalogue import CAPABILITIES
from app.accounts import sessions, users
from app.db import current_org_unit, tenant_transaction
from app.web import cookies, csrf
from app.web.tenancy import tenant_from_host, tenant_from_request

PUBLIC = "public"   # anybody, signed in or not
MEMBER = "member"   # any signed-in user of the tenant, whatever their capabilities
OPERATOR = "operator"  # a signed-in platform operator (the operator panel; app.operator.guard)

OPEN_VIEWS: dict[str, str] = {
    "static": PUBLIC,
    "health.healthz": PUBLIC,
    "audit_api.verify": PUBLIC,
    "audit_api.public": PUBLIC,
    "auth.home": PUBLIC,
    "auth.signin_form": PUBLIC,
    "auth.signin": PUBLIC,
    "auth.factor_form": MEMBER,
    "auth.factor": MEMBER,
    "auth.signout": MEMBER,
    "auth.step_up_for_get": MEMBER,
    "auth.switch_scope": MEMBER,
    "passkeys.signin_options": PUBLIC,
    "passkeys.signin": PUBLIC,
    "passkeys.factor_options": MEMBER,
    "passkeys.factor": MEMBER,
    "passkeys.step_up_options": MEMBER,
    "passkeys.step_up": MEMBER,
    "passkeys.new_form": MEMBER,
    "passkeys.registration_options": MEMBER,
    "passkeys.register": MEMBER,
    "passkeys.remove": MEMBER,
    "reset.request_form": PUBLIC,
    "reset.request_link": PUBLIC,
    "reset.new_password_form": PUBLIC,
    "reset.set_new_password": PUBLIC,
    "account.security": MEMBER,
    "account.totp_form": MEMBER,
    "account.totp_confirm": MEMBER,
    "account.totp_remove": MEMBER,
    "account.recovery_codes": MEMBER,
    "account.revoke_session": MEMBER,
    "account.revoke_all_sessions": MEMBER,
    "tokens.index": MEMBER,
    "tokens.create": MEMBER,
    "tokens.revoke": MEMBER,
    "api.me": MEMBER,
    "openapi.document": PUBLIC,
    "operator.signin_form": PUBLIC,
    "operator.signin": PUBLIC,
    "operator.signout": OPERATOR,
    "operator.panel": OPERATOR,
    "operator.create_tenant": OPERATOR,
    "operator.verify_chain": OPERATOR,
    "operator.suspend_tenant": OPERATOR,
    "operator.restore_tenant": OPERATOR,
    "operator.jobs": OPERATOR,
}

STEP_UP_FIELD = "step_up_code"
DEFAULT_STEP_UP_SECONDS = 300
SUSPENDED = "This workspace is suspended. Its administrators have been told why; nothing in it can be used until it is restored."


def requires(*capabilities: str, whole_tenant: bool = False) -> Callable[[Callable], Callable]:
    """The view needs every one of these capabilities in the request's scope.

    `whole_tenant`: and only when working in the whole organisation, so that a
    grant limited to an org unit never reaches tenant-wide settings (an admin
    of one school must not make themselves admin of every school).
    """
    if unknown := [c for c in capabilities if c not in CAPABILITIES]:
        raise ValueError(f"unknown capabilities {unknown}")
    if not capabilities:
        raise ValueError("@requires needs at least one capability")

    def mark(view: Callable) -> Callable:
        view.required_capabilities = tuple(capabilities)
        view.whole_tenant = whole_tenant
        return view
    return mark


def access_rule(endpoint: str, view: Callable) -> str | tuple[str, ...] | None:
    """PUBLIC, MEMBER, the capabilities a view requires, or None when it declares nothing."""
    return OPEN_VIEWS.get(endpoint) or getattr(view, "required_capabilities", None)


def second_factor_pending(view: Callable) -> Callable:
    view.second_factor_pending = True
    return view


def step_up(seconds: int = DEFAULT_STEP_UP_SECONDS) -> Callable[[Callable], Callable]:
    def mark(view: Callable) -> Callable:
        view.step_up_seconds = seconds
        return view
    return mark


def _pool():
    return current_app.extensions["pool"]


def _settings():
    return current_app.config["EXCEPTAO"]


async def enforce():
    g.tenant = g.session = g.user = g.access = g.token = None
    current_org_unit.set(None)
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    api = request.path.startswith("/api/")
    bearer = _bearer() if api else None  # a token is only ever read on the API, where cookies are not
    if request.method not in csrf.SAFE_METHODS and bearer is None and not await csrf.valid():
        abort(403, "This form has expired or did not come from this site. Go back, reload the page and try again.")
    if view is None:
        return None
    rule = access_rule(request.endpoint, view)
    if request.blueprint == "operator":
        from app.operator.guard import enforce as enforce_operator

        return await enforce_operator(rule)
    if api or request.blueprint == "health":
        # The JSON API: open endpoints find their tenant themselves; the rest need a token.
        return None if rule == PUBLIC else await _enforce_api(rule, bearer, view)
    if request.endpoint == "static":
        return None

    g.tenant = await tenant_from_host()
    if g.tenant is not None and g.tenant.suspended:
        abort(403, SUSPENDED)
    token = request.cookies.get(cookies.name("session"))
    if g.tenant is not None and token:
        async with tenant_transaction(_pool(), g.tenant.id) as conn:
            g.session = await sessions.current(conn, _settings(), token)
            if g.session is not None:
                g.user = await users.by_id(conn, g.session.user_id)
                if g.user is None or g.user.disabled:
                    g.session = g.user = None
                elif g.session.stage == sessions.FULL:
                    g.access = await access_control.load(conn, g.user.id, g.session.scope_unit_id)
    if g.access is not None:
        current_org_unit.set(g.access.scope.unit_id)

    if rule == PUBLIC:
        return None
    if g.tenant is None:
        return redirect("/", 303)
    if g.session is None:
        return redirect("/signin?" + urlencode({"next": request.full_path.rstrip("?")}), 303)
    if g.session.stage != sessions.FULL:
        if not getattr(view, "second_factor_pending", False):
            return redirect("/signin/factor", 303)
        if rule != MEMBER:  # a capability is never held before the second factor
            abort(403, "Finish signing in with your second factor first.")
    elif refusal := await _refusal(rule, getattr(view, "whole_tenant", False)):
        return refusal
    seconds = getattr(view, "step_up_seconds", None)
    if seconds is not None and not factor_within(seconds):
        from app.views.auth import step_up_prompt

        return await step_up_prompt(seconds)
    return None


def _holds(access, rule, whole_tenant: bool) -> bool:
    return all(access.has(c) for c in rule) and not (whole_tenant and access.scope.unit_id is not None)


async def _refusal(rule, whole_tenant: bool):
    """A 403 page when the user lacks what the view requires; None when they may go on."""
    if rule == MEMBER or (rule and _holds(g.access, rule, whole_tenant)):
        return None
    from app.web import render

    elsewhere = [s for s in g.access.scopes if s != g.access.scope
                 and _holds(access_control.resolve(g.user.id, g.access.grants, s.unit_id), rule or (), whole_tenant)]
    missing = [c for c in rule or () if not g.access.has(c)]
    return await render("forbidden.html", missing=[(c, CAPABILITIES[c]) for c in missing], undeclared=not rule,
                        whole_tenant=whole_tenant and not missing, elsewhere=elsewhere, status=403)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _api_error(status: int, error: str, message: str):
    response = jsonify({"error": error, "message": message})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="exceptao"'
    return response


async def _enforce_api(rule, bearer: str | None, view: Callable):
    if bearer is None:
        return _api_error(401, "Unauthorized", "send a personal API token: Authorization: Bearer exo_pat_...")
    g.tenant = await tenant_from_request()
    if g.tenant is None:
        return _api_error(401, "Unauthorized", "name the tenant in the X-Tenant header or the host name")
    if g.tenant.suspended:
        return _api_error(403, "Forbidden", SUSPENDED)
    async with tenant_transaction(_pool(), g.tenant.id) as conn:
        g.token = await tokens.use(conn, bearer)
        g.user = await users.by_id(conn, g.token.user_id) if g.token else None
        owner = await access_control.load(conn, g.user.id, g.token.scope_unit_id) if g.user else None
    if g.token is None or g.user is None or g.user.disabled:
        return _api_error(401, "Unauthorized", "this token is unknown, revoked or expired")
    if owner.scope.unit_id != g.token.scope_unit_id:
        return _api_error(401, "Unauthorized", "the scope this token was made for is no longer its owner's")
    g.access = owner.limited_to(frozenset(g.token.capabilities))
    current_org_unit.set(g.access.scope.unit_id)
    if rule == MEMBER:
        return None
    if not rule:
        return _api_error(403, "Forbidden", "this endpoint declares no access rule")
    if missing := [c for c in rule if not g.access.has(c)]:
        return _api_error(403, "Forbidden", f"this token lacks {', '.join(missing)}")
    if not _holds(g.access, rule, getattr(view, "whole_tenant", False)):
        return _api_error(403, "Forbidden", "this endpoint needs a token made in the whole organisation")
    return None


def factor_within(seconds: int) -> bool:
    at = g.session.factor_at if g.session else None
    return at is not None and datetime.now(timezone.utc) - at <= timedelta(seconds=seconds)


async def template_globals() -> dict:
    # A coroutine function: Quart would run a plain one in a worker thread at every render.
    session = getattr(g, "session", None)
    return {"current_user": getattr(g, "user", None), "current_tenant": getattr(g, "tenant", None),
            "current_session_id": session.id if session else None, "current_access": getattr(g, "access", None)}


async def write_cookies(response):
    """Send what this request changed: a new session token, a cleared session, a new CSRF seed."""
    settings = _settings()
    if getattr(g, "new_session_token", None):
        cookies.set_cookie(response, "session", g.new_session_token, max_age=settings.session_hours * 3600)
    elif getattr(g, "end_session", False):
        cookies.delete_cookie(response, "session")
    if getattr(g, "csrf_seed_new", False):
        cookies.set_cookie(response, "csrf", g.csrf_seed)
    for name, value in getattr(g, "cookie_updates", ()):
        if value:
            cookies.set_cookie(response, name, value, max_age=600)
        else:
            cookies.delete_cookie(response, name)
    return response
