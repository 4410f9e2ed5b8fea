"""Passkey endpoints refuse what a browser's ceremony would not send."""

from __future__ import annotations

import json

from tests.web import make_user
from tests.views.test_signin import sign_in


async def test_an_answer_without_its_ceremony_is_refused(browser, admin, tenant):
    await browser.get("/signin")
    response = await browser.client.post(
        "/signin/passkey", data=json.dumps({"credential": {"id": "AAAA", "rawId": "AAAA"}}),
        headers={**browser._headers({"X-CSRF-Token": browser.csrf}), "Content-Type": "application/json"})
    assert response.status_code == 401
    assert "expired" in (await response.get_json())["error"]
    actions = [r["action"] for r in await admin.fetch("SELECT action FROM audit_log WHERE tenant_id = $1", tenant.id)]
    assert "identity:signin:fail" in actions


async def test_ceremony_options_name_this_tenant_and_require_user_verification(browser, admin, tenant):
    email = await make_user(admin, tenant)
    await sign_in(browser, email)
    await browser.get("/account/passkeys/new")
    response = await browser.client.post(
        "/account/passkeys/options", headers=browser._headers({"X-CSRF-Token": browser.csrf}))
    options = (await response.get_json())["publicKey"]
    assert options["rp"]["id"] == f"{tenant.slug}.localhost"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert email not in options["user"]["id"]
    # Without the CSRF header the ceremony does not start.
    refused = await browser.client.post("/account/passkeys/options", headers=browser._headers())
    assert refused.status_code == 403


async def test_removing_a_passkey_needs_a_recent_second_factor(browser, admin, tenant):
    email = await make_user(admin, tenant)
    await sign_in(browser, email)
    user_id = await admin.fetchval("SELECT id FROM app_user WHERE email = $1", email)
    passkey = await admin.fetchval(
        "INSERT INTO webauthn_credential (tenant_id, user_id, credential_id, credential, name)"
        " VALUES ($1, $2, '\\x01', '\\x01', 'Old key') RETURNING id", tenant.id, user_id)
    await browser.get("/account")
    prompt = await browser.post(f"/account/passkeys/{passkey}/remove")
    assert prompt.status_code == 200 and 'data-webauthn="stepup"' in browser.last_body
    assert await admin.fetchval("SELECT count(*) FROM webauthn_credential WHERE id = $1", passkey) == 1
