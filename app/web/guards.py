"""Guards: views are only marked; `enforce`, one before_request hook, checks what they mark.

By default a view needs a signed-in user of the tenant named by the host.
`@public` lets anyone in (sign-in, reset); `@second_factor_pending` admits a
session that still owes its second factor (the challenge, enrolment, sign-out);
`@step_up(seconds)` needs a second factor used within that many seconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import urlencode

from quart import abort, current_app, g, redirect, request

from app.accounts import sessions, users
from app.db import tenant_transaction
from app.web import cookies, csrf
from app.web.tenancy import tenant_from_host

# JSON endpoints that find their tenant themselves and answer auditors without a session.
OPEN_BLUEPRINTS = frozenset({"health", "audit_api"})
STEP_UP_FIELD = "step_up_code"
DEFAULT_STEP_UP_SECONDS = 300


def public(view: Callable) -> Callable:
    view.public = True
    return view


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
    g.tenant = g.session = g.user = None
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if request.method not in csrf.SAFE_METHODS and not await csrf.valid():
        abort(403, "This form has expired or did not come from this site. Go back, reload the page and try again.")
    if view is None or request.endpoint == "static" or request.blueprint in OPEN_BLUEPRINTS:
        return None

    g.tenant = await tenant_from_host()
    token = request.cookies.get(cookies.name("session"))
    if g.tenant is not None and token:
        async with tenant_transaction(_pool(), g.tenant.id) as conn:
            g.session = await sessions.current(conn, _settings(), token)
            if g.session is not None:
                g.user = await users.by_id(conn, g.session.user_id)

    if getattr(view, "public", False):
        return None
    if g.tenant is None:
        return redirect("/", 303)
    if g.session is None:
        return redirect("/signin?" + urlencode({"next": request.full_path.rstrip("?")}), 303)
    if g.session.stage != sessions.FULL and not getattr(view, "second_factor_pending", False):
        return redirect("/signin/factor", 303)
    seconds = getattr(view, "step_up_seconds", None)
    if seconds is not None and not factor_within(seconds):
        from app.views.auth import step_up_prompt

        return await step_up_prompt(seconds)
    return None


def factor_within(seconds: int) -> bool:
    at = g.session.factor_at if g.session else None
    return at is not None and datetime.now(timezone.utc) - at <= timedelta(seconds=seconds)


def template_globals() -> dict:
    session = getattr(g, "session", None)
    return {"current_user": getattr(g, "user", None), "current_tenant": getattr(g, "tenant", None),
            "current_session_id": session.id if session else None}


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
