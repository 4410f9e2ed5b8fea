"""Signing in with a password, the first-sign-in rule for second factors, sessions."""

from __future__ import annotations

import threading
from dataclasses import replace

from argon2 import PasswordHasher

from app import create_app
from app.accounts import passwords
from app.audit.verify import verify_tenant
from tests.web import PASSWORD, Browser, code_at, make_user, totp_secret_from


async def sign_in(browser: Browser, email: str, password: str = PASSWORD):
    await browser.get("/signin")
    return await browser.post("/signin", {"email": email, "password": password})


async def test_first_signin_may_skip_enrolment_once(browser, admin, tenant):
    email = await make_user(admin, tenant)
    response = await sign_in(browser, email)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account/totp?first=1"
    home = await browser.get("/")
    assert home.status_code == 200 and "Welcome, Uma User" in browser.last_body
    assert "has no second factor" in browser.last_body


async def test_second_signin_without_a_factor_must_enrol_first(site, admin, tenant):
    email = await make_user(admin, tenant, signins=1)
    browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
    response = await sign_in(browser, email)
    assert response.headers["Location"] == "/account/totp"
    for path in ("/", "/account"):
        response = await browser.get(path)
        assert response.status_code == 303 and response.headers["Location"] in ("/signin/factor", "/account/totp")
    enrol = await browser.get("/account/totp")
    assert enrol.status_code == 200 and "needs a second factor" in browser.last_body
    assert "<svg" in browser.last_body
    secret = totp_secret_from(browser.last_body)
    response = await browser.post("/account/totp", {"code": code_at(secret)})
    assert response.status_code == 200 and "recovery-codes" in browser.last_body
    assert (await browser.get("/account")).status_code == 200


async def test_wrong_password_and_unknown_user_answer_alike(browser, admin, tenant):
    email = await make_user(admin, tenant)
    wrong = await sign_in(browser, email, "not the password at all")
    wrong_body = browser.last_body
    unknown = await sign_in(browser, "nobody@example.com", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert "Email or password is incorrect." in wrong_body and "Email or password is incorrect." in browser.last_body
    assert 'value="nobody@example.com"' in browser.last_body  # what was typed is kept
    assert browser.session_token is None


async def test_session_token_changes_at_signin(browser, admin, tenant, site):
    email = await make_user(admin, tenant)
    browser.cookies["exceptao_session"] = "planted-by-an-attacker-0123456789"
    await sign_in(browser, email)
    assert browser.session_token and browser.session_token != "planted-by-an-attacker-0123456789"
    # The token is stored only as a hash.
    stored = await admin.fetch("SELECT token_hash FROM user_session WHERE tenant_id = $1", tenant.id)
    assert len(stored) == 1 and browser.session_token.encode() not in stored[0]["token_hash"]


async def test_totp_from_the_second_signin_and_no_replay(site, admin, tenant, pool, settings):
    email = await make_user(admin, tenant)
    first = Browser(site.test_client(), f"{tenant.slug}.localhost")
    await sign_in(first, email)
    await first.get("/account/totp")
    secret = totp_secret_from(first.last_body)
    used = code_at(secret)
    assert (await first.post("/account/totp", {"code": used})).status_code == 200
    await first.post("/signout")

    second = Browser(site.test_client(), f"{tenant.slug}.localhost")
    response = await sign_in(second, email)
    assert response.headers["Location"].startswith("/signin/factor")
    assert (await second.get("/")).headers["Location"] == "/signin/factor"
    await second.get("/signin/factor")
    replay = await second.post("/signin/factor", {"code": used, "next": "/account"})
    assert replay.status_code == 401 and "used already" in second.last_body
    token_before = second.session_token
    ok = await second.post("/signin/factor", {"code": code_at(secret, 1), "next": "/account"})
    assert ok.status_code == 303 and ok.headers["Location"] == "/account"
    assert second.session_token != token_before
    assert (await second.get("/account")).status_code == 200

    actions = [r["action"] for r in await admin.fetch(
        "SELECT action FROM audit_log WHERE tenant_id = $1 ORDER BY seq", tenant.id)]
    assert actions.count("identity:session:create") == 2
    assert "identity:totp:enrol" in actions and "identity:factor:fail" in actions
    pii = await admin.fetchrow(
        "SELECT p.email, p.ip, p.user_agent FROM audit_pii p JOIN audit_log l USING (tenant_id, seq)"
        " WHERE l.tenant_id = $1 AND l.action = 'identity:session:create' ORDER BY seq DESC LIMIT 1", tenant.id)
    assert pii["email"] == email and pii["user_agent"] == "Mozilla/5.0 (TestBrowser)"
    assert pii["ip"] == "203.0.113.7"
    assert (await verify_tenant(pool, tenant.id, settings)).ok


async def test_signin_rehashes_a_password_hashed_with_old_parameters(browser, admin, tenant):
    from argon2 import PasswordHasher

    email = await make_user(admin, tenant)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    await admin.execute("UPDATE app_user SET password_hash = $2 WHERE email = $1", email, old)
    assert (await sign_in(browser, email)).status_code == 303
    stored = await admin.fetchval("SELECT password_hash FROM app_user WHERE email = $1", email)
    assert stored != old and "m=65536,t=3,p=4" in stored


async def test_totp_secret_is_stored_encrypted(browser, admin, tenant):
    email = await make_user(admin, tenant)
    await sign_in(browser, email)
    await browser.get("/account/totp")
    secret = totp_secret_from(browser.last_body)
    stored = await admin.fetchval("SELECT totp_secret FROM app_user WHERE email = $1", email)
    assert stored and secret.encode() not in stored and len(stored) > len(secret)


async def test_a_nul_in_the_email_is_refused_with_the_form_kept(browser, admin, tenant):
    await browser.get("/signin")
    response = await browser.post("/signin", {"email": "uma\x00@example.com", "password": "x"})  # was a 500
    assert response.status_code == 400 and "cannot contain a NUL" in browser.last_body
    assert 'name="email"' in browser.last_body


async def test_the_password_hash_runs_beside_the_event_loop_not_on_it(browser, admin, tenant, monkeypatch):
    """Argon2's 50 ms run in a worker thread, so a sign-in does not stall every other request meanwhile."""
    email = await make_user(admin, tenant)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)   # replaced at sign-in
    await admin.execute("UPDATE app_user SET password_hash = $2 WHERE tenant_id = $1 AND email = $3",
                        tenant.id, old, email)
    threads: dict[str, set[int]] = {"verify": set(), "hash": set()}
    real = passwords.hasher

    class Watched:
        def __getattr__(self, name):
            return getattr(real, name)

        def verify(self, *args):
            threads["verify"].add(threading.get_ident())
            return real.verify(*args)

        def hash(self, *args):
            threads["hash"].add(threading.get_ident())
            return real.hash(*args)

    monkeypatch.setattr(passwords, "hasher", Watched())
    loop_thread = threading.get_ident()
    assert (await sign_in(browser, email)).status_code == 303
    stored = await admin.fetchval("SELECT password_hash FROM app_user WHERE tenant_id = $1 AND email = $2",
                                  tenant.id, email)
    assert stored != old and not passwords.needs_rehash(stored)       # both the check and the rehash happened
    assert threads["verify"] and threads["hash"]
    assert loop_thread not in threads["verify"] | threads["hash"]


async def test_with_the_key_service_down_enrolment_says_so_and_enrols_nothing(settings, admin, tenant):
    """Vault unreachable is an outage to wait out (503, Retry-After), not an application error."""
    down = replace(settings, vault_addr="http://127.0.0.1:9", vault_token="not-a-real-token")
    app = create_app(down)
    async with app.test_app() as site:
        browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
        email = await make_user(admin, tenant)
        assert (await sign_in(browser, email)).headers["Location"] == "/account/totp?first=1"
        page = await browser.get("/account/totp")
    assert page.status_code == 503 and page.headers["Retry-After"].isdigit()
    assert "Temporarily unavailable" in browser.last_body and "key service" in browser.last_body
    assert "not-a-real-token" not in browser.last_body
    assert await admin.fetchval("SELECT totp_enrolled_at FROM app_user WHERE tenant_id = $1 AND email = $2",
                                tenant.id, email) is None
