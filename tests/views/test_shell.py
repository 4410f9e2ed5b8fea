"""The page shell: security headers, CSRF, HTMX fragments, the vendored htmx."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tests.web import Browser, make_user
from tests.views.test_signin import sign_in

ROOT = Path(__file__).resolve().parents[2]


async def test_every_response_carries_the_security_headers(browser, site):
    for response in (await browser.get("/signin"), await site.test_client().get("/healthz"),
                     await browser.get("/no-such-page")):
        h = response.headers
        assert h["Content-Security-Policy"].startswith("default-src 'self'")
        assert "'unsafe-inline'" not in h["Content-Security-Policy"]
        assert "'unsafe-eval'" not in h["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert h["Strict-Transport-Security"].startswith("max-age=")
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "no-referrer"
        assert "camera=()" in h["Permissions-Policy"]


async def test_pages_have_no_inline_script_or_style(browser, admin, tenant):
    email = await make_user(admin, tenant)
    await sign_in(browser, email)
    for path in ("/signin", "/", "/account", "/account/totp", "/reset"):
        await browser.get(path)
        page = browser.last_body
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), path
        assert "<style" not in page and " style=" not in page, path
        assert not re.search(r"\son[a-z]+=", page), path


async def test_unsafe_requests_need_the_csrf_token(browser, admin, tenant):
    email = await make_user(admin, tenant)
    await browser.get("/signin")
    missing = await browser.post("/signin", {"email": email, "password": "x" * 12}, csrf=False)
    assert missing.status_code == 403 and "did not come from this site" in browser.last_body
    forged = await browser.post("/signin", {"email": email, "password": "x" * 12, "csrf_token": "0" * 64})
    assert forged.status_code == 403
    # A token from another browser (another seed cookie) is refused too.
    other = Browser(browser.client, browser.host)
    await other.get("/signin")
    assert (await browser.post("/signin", {"email": email, "password": "x", "csrf_token": other.csrf})).status_code == 403
    # HTMX sends it as a header.
    via_header = await browser.post("/signin", {"email": email, "password": "wrong password!"}, csrf=False,
                                    headers={"X-CSRF-Token": browser.csrf})
    assert via_header.status_code == 401


async def test_htmx_gets_the_block_alone(browser):
    full = await browser.get("/signin")
    assert "<html" in browser.last_body and full.headers["Vary"] == "HX-Request"
    await browser.get("/signin", headers={"HX-Request": "true"})
    assert "<html" not in browser.last_body and 'action="/signin"' in browser.last_body
    await browser.get("/signin", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in browser.last_body


async def test_cookies_are_httponly_lax_and_secure_off_localhost(site, tenant):
    local = await site.test_client().get("/signin", headers={"Host": f"{tenant.slug}.localhost"})
    cookie = local.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    site.app.config["EXCEPTAO"] = site.app.config["EXCEPTAO"].__class__(
        **{**site.app.config["EXCEPTAO"].__dict__, "base_domain": "example.com"})
    remote = await site.test_client().get("/signin", headers={"Host": f"{tenant.slug}.example.com"},
                                          scheme="https")
    cookie = remote.headers["Set-Cookie"]
    assert cookie.startswith("__Host-exceptao_csrf=") and "Secure" in cookie and "HttpOnly" in cookie


def test_vendored_htmx_matches_its_recorded_hash():
    notes = (ROOT / "static" / "VENDORED.md").read_text()
    name, digest = re.search(r"`(htmx-[\d.]+\.min\.js)` \| htmx \| [\d.]+ \| `([0-9a-f]{64})`", notes).groups()
    assert hashlib.sha256((ROOT / "static" / name).read_bytes()).hexdigest() == digest
    base = (ROOT / "app" / "templates" / "base.html").read_text()
    assert name in base


async def test_pages_need_a_session(browser):
    for path in ("/account", "/account/totp"):
        response = await browser.get(path)
        assert response.status_code == 303 and response.headers["Location"].startswith("/signin?next=")


async def test_bare_domain_asks_for_the_workspace(site, tenant):
    client = site.test_client()
    page = await client.get("/", headers={"Host": "localhost:8080"})
    assert page.status_code == 200 and 'name="workspace"' in (await page.get_data()).decode()
    go = await client.get(f"/?workspace={tenant.slug}", headers={"Host": "localhost:8080"})
    assert go.status_code == 303 and go.headers["Location"] == f"http://{tenant.slug}.localhost:8080/signin"
    none = await client.get("/?workspace=no-such-tenant", headers={"Host": "localhost:8080"})
    assert none.status_code == 404
