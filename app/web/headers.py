"""Security headers on every response, pages and API alike."""

from __future__ import annotations

from quart import g, request
from werkzeug.wrappers import Response

# No inline script or style, no eval, nothing from another origin.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
PERMISSIONS_POLICY = ", ".join((
    "camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()",
    "publickey-credentials-create=(self)", "publickey-credentials-get=(self)",
))
STATIC = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # reset links carry a token in the path
    "Permissions-Policy": PERMISSIONS_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


async def secure(response: Response) -> Response:
    for name, value in STATIC.items():
        response.headers[name] = value
    if getattr(g, "session", None) is not None or request.method != "GET":
        # Pages of a signed-in user are never kept by a browser or proxy cache.
        response.headers["Cache-Control"] = "no-store"
    return response
