"""CSRF: every unsafe request carries a token derived from a per-browser random seed.

The seed lives in an HttpOnly cookie, replaced at sign-in; the token is
HMAC(app key, seed), sent as the form field `csrf_token` or, from HTMX, the
`X-CSRF-Token` header (set on <body> with hx-headers). A cross-site page can
neither read the token nor, with SameSite=Lax, send the cookie on a POST.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from quart import current_app, g, request

from app.web import cookies

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_name() -> str:
    return cookies.name("csrf")


def token_for(seed: str) -> str:
    key = current_app.config["EXCEPTAO"].secret_key
    return hmac.new(key, b"csrf\x1f" + seed.encode(), hashlib.sha256).hexdigest()


def seed() -> str:
    """This browser's seed: from its cookie, or a new one sent with the response."""
    if "csrf_seed" not in g:
        existing = request.cookies.get(cookie_name())
        if existing and 20 <= len(existing) <= 100:
            g.csrf_seed = existing
        else:
            renew()
    return g.csrf_seed


def renew() -> None:
    g.csrf_seed = secrets.token_urlsafe(32)
    g.csrf_seed_new = True


async def valid() -> bool:
    existing = request.cookies.get(cookie_name())
    if not existing:
        return False
    sent = request.headers.get(HEADER)
    if sent is None:
        form = await request.form
        sent = form.get(FIELD, "")
    return hmac.compare_digest(sent.encode(), token_for(existing).encode())
