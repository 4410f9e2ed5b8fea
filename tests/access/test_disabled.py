"""A disabled user: no sign-in, no live session, no reset link."""

from __future__ import annotations

from tests.views.test_signin import sign_in
from tests.web import make_user


async def test_a_disabled_user_is_signed_out_and_cannot_sign_in_or_reset(browser, admin, tenant):
    email = await make_user(admin, tenant)
    await sign_in(browser, email)
    assert (await browser.get("/account")).status_code == 200
    await admin.execute("UPDATE app_user SET disabled_at = now() WHERE tenant_id = $1", tenant.id)

    assert (await browser.get("/account")).headers["Location"].startswith("/signin")
    refused = await sign_in(browser, email)
    assert refused.status_code == 403 and "This account is disabled" in browser.last_body
    wrong = await sign_in(browser, email, "not the password at all")
    assert wrong.status_code == 401 and "disabled" not in browser.last_body  # says nothing without the password

    await browser.get("/reset")
    await browser.post("/reset", {"email": email})
    assert await admin.fetchval("SELECT count(*) FROM password_reset WHERE tenant_id = $1", tenant.id) == 0
    reasons = [r["reason"] for r in await admin.fetch(
        "SELECT data->>'reason' AS reason FROM audit_log WHERE tenant_id = $1 AND action = 'identity:signin:fail'"
        " ORDER BY seq", tenant.id)]
    assert reasons == ["disabled", "bad_password"]
