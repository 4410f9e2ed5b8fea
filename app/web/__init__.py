"""The page shell: rendering whole pages or HTMX fragments, security headers, CSRF and guards.

`init_app` wires it into the Quart app; views use `render`, `redirect_to` and
the guard marks in app.web.guards.
"""

from __future__ import annotations

from quart import Quart, current_app, redirect, request
from werkzeug.wrappers import Response


def init_app(app: Quart) -> None:
    from app.web import csrf, guards, headers, unavailable

    app.before_request(guards.enforce)
    app.after_request(headers.secure)
    app.after_request(guards.write_cookies)
    unavailable.init_app(app)
    # Globals, not a context processor: imported macros (_forms.html) see them too.
    app.jinja_env.globals.update(csrf_token=lambda: csrf.token_for(csrf.seed()), csrf_field=csrf.FIELD)
    app.context_processor(guards.template_globals)


def is_fragment_request() -> bool:
    """HTMX asked for a part of the page (not a boosted navigation or a history restore)."""
    h = request.headers
    return h.get("HX-Request") == "true" and h.get("HX-Boosted") != "true" and h.get("HX-History-Restore-Request") != "true"


async def render(template_name: str, *, block: str = "main", status: int = 200, **context) -> Response:
    """The whole page, or only `block` of it when HTMX asks for a fragment."""
    template = current_app.jinja_env.get_template(template_name)
    await current_app.update_template_context(context)
    if is_fragment_request():
        parts = [part async for part in template.blocks[block](template.new_context(context))]
        body = "".join(parts)
    else:
        body = await template.render_async(context)
    response = await current_app.make_response((body, status))
    response.headers["Vary"] = "HX-Request"
    return response


def see_other(location: str) -> Response:
    """After a POST: the browser GETs `location` (303), or HTMX follows it whole."""
    if request.headers.get("HX-Request") == "true":
        response = current_app.response_class("", status=204)
        response.headers["HX-Redirect"] = location
        return response
    return redirect(location, 303)


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to return to after sign-in; anything else (other hosts, schemes) is ignored."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
