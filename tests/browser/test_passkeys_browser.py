"""In Chromium with its virtual authenticator: register a passkey, sign out, sign in with it."""

from __future__ import annotations

from tests.browser.test_signin_browser import sign_in
from tests.web import make_user


async def virtual_authenticator(page) -> tuple[object, str]:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
    }})
    return cdp, added["authenticatorId"]


async def test_register_a_passkey_then_sign_in_with_it_alone(browser_page, live_url, admin, tenant):
    page = browser_page
    base = f"http://{tenant.slug}.{live_url}"
    cdp, authenticator = await virtual_authenticator(page)
    email = await make_user(admin, tenant)

    await sign_in(page, base, email)
    await page.wait_for_url(f"{base}/account/totp?first=1")
    await page.goto(f"{base}/account/passkeys/new")
    await page.fill("#passkey-name", "Test laptop")
    await page.click("#passkey-register")
    await page.wait_for_url(f"{base}/account?notice=passkey-added")
    assert "Test laptop" in await page.text_content("#passkeys")
    credentials = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator}))["credentials"]
    assert len(credentials) == 1 and credentials[0]["isResidentCredential"]

    await page.click("header button:has-text('Sign out')")
    await page.wait_for_url(f"{base}/signin")
    await page.click("#passkey-signin")
    await page.wait_for_url(f"{base}/")
    assert "Welcome" in await page.text_content("h1")
    await page.goto(f"{base}/account")
    assert "passkey" in await page.text_content("#sessions")

    # Later, a protected action: the step-up prompt takes the passkey, then the action runs.
    await admin.execute("UPDATE user_session SET factor_at = now() - interval '1 hour' WHERE tenant_id = $1",
                        tenant.id)
    await page.click("button:has-text('Make new codes')")
    await page.click("#passkey-step-up")
    await page.wait_for_selector("#recovery-codes")
    assert await page.locator("#recovery-codes li").count() == 10

    rows = await admin.fetch("SELECT action, data FROM audit_log WHERE tenant_id = $1 ORDER BY seq", tenant.id)
    assert [r["action"] for r in rows].count("identity:passkey:register") == 1
    signins = [r["data"] for r in rows if r["action"] == "identity:session:create"]
    assert signins[-1] == '{"methods": ["passkey"]}'  # the passwordless one
    assert page.csp_violations == []


async def test_second_signin_with_password_then_passkey(browser_page, live_url, admin, tenant):
    page = browser_page
    base = f"http://{tenant.slug}.{live_url}"
    await virtual_authenticator(page)
    email = await make_user(admin, tenant)
    await sign_in(page, base, email)
    await page.wait_for_url(f"{base}/account/totp?first=1")
    await page.goto(f"{base}/account/passkeys/new")
    await page.click("#passkey-register")
    await page.wait_for_url(f"{base}/account?notice=passkey-added")
    await page.click("header button:has-text('Sign out')")

    await sign_in(page, base, email)
    await page.wait_for_url(f"{base}/signin/factor?next=%2F")
    await page.click("#passkey-factor")
    await page.wait_for_url(f"{base}/")
    assert "Welcome" in await page.text_content("h1")
