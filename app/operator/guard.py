"""The operator panel's half of the guard hook (app.web.guards.enforce hands it the blueprint).

No tenant, no tenant session: the panel exists only on the bare base domain
(a tenant's host name answers 404, as for a page that does not exist), and
its pages need a live operator session, carried in a cookie of its own.
"""

from __future__ import annotations

from quart import abort, current_app, g, redirect, request
from werkzeug.wrappers import Response

from app.operator import sessions
from app.web import cookies
from app.web.guards import OPERATOR, PUBLIC

COOKIE = "operator"
SIGNIN_PATH = "/operator/signin"


def operator_pool():
    return current_app.extensions["operator_pool"]


def on_operator_host() -> bool:
    host = (request.host or "").split(":")[0].lower()
    return host == current_app.config["EXCEPTAO"].base_domain.lower()


async def enforce(rule) -> Response | None:
    g.operator_session = None
    if "operator_pool" not in current_app.extensions or not on_operator_host():
        abort(404)
    token = request.cookies.get(cookies.name(COOKIE))
    if token:
        async with operator_pool().acquire() as conn:
            g.operator_session = await sessions.current(conn, token)
        g.operator_cookie_stale = g.operator_session is None
    if rule == PUBLIC:
        return None
    if rule != OPERATOR:
        abort(403, "This operator page does not say who may open it.")
    if g.operator_session is None:
        return redirect(SIGNIN_PATH, 303)
    return None


def start_session(token: str) -> None:
    g.new_operator_token = token


def end_session() -> None:
    g.operator_cookie_stale = True


async def finish(response: Response) -> Response:
    """After every panel response: the operator cookie as this request left it; never cached."""
    if getattr(g, "new_operator_token", None):
        cookies.set_cookie(response, COOKIE, g.new_operator_token, max_age=sessions.LIFETIME_HOURS * 3600)
    elif getattr(g, "operator_cookie_stale", False):
        cookies.delete_cookie(response, COOKIE)
    response.headers["Cache-Control"] = "no-store"
    return response
