"""In Chromium: an administrator builds groups, units and assignments, asks why, and makes an API token."""

from __future__ import annotations

import httpx
import pyotp

from app.db import set_tenant
from tests.browser.test_signin_browser import sign_in
from tests.web import make_user


async def test_an_administrator_shapes_access_and_makes_a_token(browser_page, live_url, admin, tenant):
    page = browser_page
    base = f"http://{tenant.slug}.{live_url}"
    email = await make_user(admin, tenant, name="Ada Admin")
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        await admin.execute(
            "INSERT INTO role_assignment (tenant_id, role_id, user_id) SELECT $1, r.id, u.id FROM role r, app_user u"
            " WHERE r.tenant_id = $1 AND u.tenant_id = $1 AND r.seeded_as = 'admin' AND u.email = $2",
            tenant.id, email)

    await sign_in(page, base, email)
    await page.wait_for_url(f"{base}/account/totp?first=1")
    secret = (await page.text_content("#totp-secret")).strip()
    await page.fill("#code", pyotp.TOTP(secret).now())
    await page.click("button:has-text('Confirm')")
    await page.goto(f"{base}/")
    assert "tenant.admin" in await page.text_content("#my-capabilities")

    await page.click("header a:has-text('Administration')")
    await page.click("nav.subnav a:has-text('Groups')")
    await page.fill("#group-name", "Staff")
    await page.click("button:has-text('Make group')")
    await page.goto(f"{base}/admin/groups")
    await page.fill("#group-name", "Teachers")
    await page.select_option("#group-parent", label="Staff")
    await page.click("button:has-text('Make group')")
    await page.goto(f"{base}/admin/groups")
    assert await page.locator("#groups ul.tree ul a:has-text('Teachers')").count() == 1

    await page.goto(f"{base}/admin/units")
    await page.fill("#unit-name", "School A")
    await page.click("button:has-text('Add unit')")

    await page.goto(f"{base}/admin/assignments")
    await page.select_option("#assign-role", label="Approver")
    await page.select_option("#assign-holder", label="Staff")
    await page.select_option("#assign-within", label="School A")
    await page.click("button:has-text('Give role')")
    await page.goto(f"{base}/admin/assignments")
    assert "within School A" in await page.text_content("#assignments")

    await page.goto(f"{base}/account/tokens")
    await page.fill("#token-name", "export script")
    await page.check("input[name=capability][value='audit.read']")
    await page.click("button:has-text('Make token')")
    token = (await page.text_content("#token-value")).strip()
    assert token.startswith("exo_pat_")
    port = live_url.rpartition(":")[2]
    async with httpx.AsyncClient() as client:  # a script, not the browser: no cookies, only the token
        answer = await client.get(f"http://127.0.0.1:{port}/api/me",
                                  headers={"X-Tenant": tenant.slug, "Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["capabilities"] == ["audit.read"]

    for path in ("/admin", "/admin/users", "/admin/roles", "/admin/why", "/account/tokens"):
        await page.goto(base + path)
    assert page.csp_violations == []
