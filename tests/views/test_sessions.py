"""Sessions: timeouts, the list on the account page, signing out one or everywhere, step-up."""

from __future__ import annotations

import re

from quart import request

from app.web.guards import MEMBER, OPEN_VIEWS, step_up
from tests.web import Browser, code_at, make_user, totp_secret_from
from tests.views.test_signin import sign_in


async def enrolled(site, admin, tenant) -> tuple[Browser, str, str]:
    """A signed-in browser of a user with TOTP; its email and TOTP secret."""
    email = await make_user(admin, tenant)
    browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
    await sign_in(browser, email)
    await browser.get("/account/totp")
    secret = totp_secret_from(browser.last_body)
    assert (await browser.post("/account/totp", {"code": code_at(secret)})).status_code == 200
    return browser, email, secret


async def test_idle_and_absolute_timeouts(browser, admin, tenant):
    email = await make_user(admin, tenant)
    await sign_in(browser, email)
    assert (await browser.get("/account")).status_code == 200
    await admin.execute("UPDATE user_session SET last_seen_at = now() - interval '31 minutes' WHERE tenant_id = $1",
                        tenant.id)
    assert (await browser.get("/account")).headers["Location"].startswith("/signin")
    await sign_in(browser, email)
    await admin.execute("UPDATE user_session SET expires_at = now() - interval '1 second'"
                        " WHERE tenant_id = $1 AND revoked_at IS NULL", tenant.id)
    assert (await browser.get("/account")).headers["Location"].startswith("/signin")


async def test_sessions_listed_and_revoked_one_by_one_or_everywhere(site, admin, tenant):
    email = await make_user(admin, tenant)
    laptop, phone, tablet = (Browser(site.test_client(), f"{tenant.slug}.localhost") for _ in range(3))
    for browser in (laptop, phone, tablet):
        # Each as if the first sign-in (no second factor owed): this test is about sessions.
        await admin.execute("UPDATE app_user SET signins = 0 WHERE email = $1", email)
        await sign_in(browser, email)
    await laptop.get("/account")
    forms = re.findall(r'action="/account/sessions/([0-9a-f-]{36})/revoke"', laptop.last_body)
    assert len(forms) == 3 and "(this session)" in laptop.last_body

    mine = await admin.fetchval("SELECT id FROM user_session WHERE token_hash = sha256($1::text::bytea)",
                                phone.session_token)
    assert (await laptop.post(f"/account/sessions/{mine}/revoke")).status_code == 303
    assert (await phone.get("/account")).headers["Location"].startswith("/signin")
    assert (await tablet.get("/account")).status_code == 200

    assert (await laptop.post("/account/sessions/revoke-all")).headers["Location"] == "/signin"
    for browser in (laptop, tablet):
        assert (await browser.get("/account")).headers["Location"].startswith("/signin")
    actions = [r["action"] for r in await admin.fetch("SELECT action FROM audit_log WHERE tenant_id = $1", tenant.id)]
    assert "identity:session:revoke" in actions and "identity:session:revoke_all" in actions


async def test_a_session_of_another_tenant_is_no_session_here(site, admin, tenant, make_tenant):
    email = await make_user(admin, tenant)
    browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
    await sign_in(browser, email)
    other = await make_tenant()
    elsewhere = Browser(site.test_client(), f"{other.slug}.localhost", cookies=dict(browser.cookies))
    assert (await elsewhere.get("/account")).headers["Location"].startswith("/signin")


async def test_step_up_prompts_then_returns_to_the_action_with_the_form_intact(site, admin, tenant, monkeypatch):
    seen = {}
    monkeypatch.setitem(OPEN_VIEWS, "protected", MEMBER)

    @site.app.post("/test-protected")
    @step_up(300)
    async def protected():
        form = await request.form
        seen.update(note=form.get("note"), tags=form.getlist("tag"))
        return "done"

    browser, email, secret = await enrolled(site, admin, tenant)
    await admin.execute("UPDATE user_session SET factor_at = now() - interval '10 minutes' WHERE tenant_id = $1",
                        tenant.id)
    form = {"note": 'keep "this" <exactly>', "tag": "a"}
    prompt = await browser.post("/test-protected", form)
    assert prompt.status_code == 200 and 'name="step_up_code"' in browser.last_body
    assert 'value="keep &#34;this&#34; &lt;exactly&gt;"' in browser.last_body and not seen
    token_before = browser.session_token

    wrong = await browser.post("/test-protected", {**form, "step_up_code": "000000"})
    assert wrong.status_code == 401 and not seen
    done = await browser.post("/test-protected", {**form, "step_up_code": code_at(secret, 1)})
    assert done.status_code == 200 and seen == {"note": 'keep "this" <exactly>', "tags": ["a"]}
    assert browser.session_token != token_before
    # Fresh now: the next protected request goes straight through.
    seen.clear()
    assert (await browser.post("/test-protected", form)).status_code == 200 and seen["note"]


async def test_recovery_code_signs_in_once(site, admin, tenant):
    browser, email, secret = await enrolled(site, admin, tenant)
    codes = re.findall(r"<li>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})</li>", browser.last_body)
    assert len(codes) == 10
    stored = await admin.fetch("SELECT code_hash FROM recovery_code WHERE tenant_id = $1", tenant.id)
    assert len(stored) == 10 and all(codes[0].encode() not in r["code_hash"] for r in stored)
    for attempt, expected in ((codes[0], 303), (codes[0], 401)):
        fresh = Browser(site.test_client(), f"{tenant.slug}.localhost")
        await sign_in(fresh, email)
        await fresh.get("/signin/factor")
        assert (await fresh.post("/signin/factor", {"code": attempt})).status_code == expected


async def test_a_session_is_marked_seen_at_most_once_a_minute(browser, admin, tenant):
    """Marking every page view made each GET a write; the idle timeout still counts from the last mark."""
    email = await make_user(admin, tenant)
    await sign_in(browser, email)
    live = "SELECT last_seen_at, xmin::text AS version, now() AS now FROM user_session" \
           " WHERE tenant_id = $1 AND revoked_at IS NULL"
    await admin.execute("UPDATE user_session SET last_seen_at = now() - interval '5 minutes'"
                        " WHERE tenant_id = $1 AND revoked_at IS NULL", tenant.id)
    assert (await browser.get("/account")).status_code == 200
    marked = await admin.fetchrow(live, tenant.id)
    assert (marked["now"] - marked["last_seen_at"]).total_seconds() < 5
    for _ in range(3):
        assert (await browser.get("/account")).status_code == 200
    again = await admin.fetchrow(live, tenant.id)
    assert (again["last_seen_at"], again["version"]) == (marked["last_seen_at"], marked["version"])  # not written

    await admin.execute("UPDATE user_session SET last_seen_at = now() - interval '61 seconds'"
                        " WHERE tenant_id = $1 AND revoked_at IS NULL", tenant.id)
    assert (await browser.get("/account")).status_code == 200
    later = await admin.fetchrow(live, tenant.id)
    assert (later["now"] - later["last_seen_at"]).total_seconds() < 5
