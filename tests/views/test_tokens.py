"""Personal API tokens: made from the account page, shown once, bounded by the owner's capabilities."""

from __future__ import annotations

import re

from app.db import set_tenant
from tests.views.test_sessions import enrolled

TOKEN = re.compile(r'id="token-value">(exo_pat_[A-Za-z0-9_-]+)<')


async def give_role(admin, tenant, email: str, role: str) -> None:
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        await admin.execute(
            "INSERT INTO role_assignment (tenant_id, role_id, user_id)"
            " SELECT $1, r.id, u.id FROM role r, app_user u"
            " WHERE r.tenant_id = $1 AND u.tenant_id = $1 AND r.seeded_as = $2 AND lower(u.email) = lower($3)",
            tenant.id, role, email)


async def make_token(browser, name: str, capabilities: list[str], days: int = 30):
    await browser.get("/account/tokens")
    response = await browser.client.post(
        "/account/tokens",
        form=[("csrf_token", browser.csrf), ("name", name), ("days", str(days))]
        + [("capability", c) for c in capabilities],
        headers=browser._headers(), scope_base=browser._scope())
    browser.last_body = (await response.get_data()).decode()
    match = TOKEN.search(browser.last_body)
    return response, match.group(1) if match else None


def api(browser, token: str, path: str, host: str | None = None):
    return browser.client.get(path, headers={"Host": host or browser.host, "Authorization": f"Bearer {token}"})


async def test_a_token_is_shown_once_stored_as_a_hash_and_speaks_for_its_owner(site, admin, tenant):
    browser, email, _ = await enrolled(site, admin, tenant)
    await give_role(admin, tenant, email, "auditor")
    response, token = await make_token(browser, "nightly export", ["audit.read"])
    assert response.status_code == 200 and token
    await browser.get("/account/tokens")
    assert token not in browser.last_body and token[:12] in browser.last_body  # the hint only
    stored = await admin.fetchrow("SELECT * FROM api_token WHERE tenant_id = $1", tenant.id)
    assert token.encode() not in b"".join(str(v).encode() for v in stored.values())

    me = await api(browser, token, "/api/me")
    assert me.status_code == 200
    body = await me.get_json()
    assert body["user"]["email"] == email and body["capabilities"] == ["audit.read"]
    events = await api(browser, token, "/api/audit/events?limit=5")
    assert events.status_code == 200 and (await events.get_json())["events"][0]["seq"] == 1
    beyond = await api(browser, token, f"/api/audit/events?after={2**64}")  # past a bigint: was a 500
    assert beyond.status_code == 400 and "after is 0 to" in (await beyond.get_json())["message"]
    assert await admin.fetchval("SELECT last_used_at IS NOT NULL FROM api_token WHERE tenant_id = $1", tenant.id)

    actions = [r["action"] for r in await admin.fetch(
        "SELECT action FROM audit_log WHERE tenant_id = $1 AND action LIKE 'access:token:%' ORDER BY seq", tenant.id)]
    assert actions == ["access:token:create"]


async def test_a_token_cannot_exceed_its_owner(site, admin, tenant):
    browser, email, _ = await enrolled(site, admin, tenant)
    await give_role(admin, tenant, email, "requester")
    response, token = await make_token(browser, "too much", ["exception.submit", "tenant.admin"])
    assert response.status_code == 422 and token is None
    assert "cannot hold what you do not hold here: tenant.admin" in browser.last_body
    assert 'value="too much"' in browser.last_body  # the form keeps what was typed
    assert await admin.fetchval("SELECT count(*) FROM api_token WHERE tenant_id = $1", tenant.id) == 0

    # A narrower token does not reach what its owner could.
    await give_role(admin, tenant, email, "auditor")
    _, token = await make_token(browser, "submit only", ["exception.submit"])
    refused = await api(browser, token, "/api/audit/events")
    assert refused.status_code == 403 and "audit.read" in (await refused.get_json())["message"]


async def test_a_token_stops_when_revoked_expired_or_its_owner_loses_the_capability(site, admin, tenant, make_tenant):
    browser, email, _ = await enrolled(site, admin, tenant)
    await give_role(admin, tenant, email, "auditor")
    _, kept = await make_token(browser, "kept", ["audit.read", "report.export"])
    _, revoked = await make_token(browser, "revoked", ["audit.read"])
    _, expired = await make_token(browser, "expired", ["audit.read"])
    for token in (kept, revoked, expired):
        assert (await api(browser, token, "/api/audit/events")).status_code == 200

    token_id = await admin.fetchval("SELECT id FROM api_token WHERE name = 'revoked' AND tenant_id = $1", tenant.id)
    await browser.get("/account/tokens")
    assert (await browser.post(f"/account/tokens/{token_id}/revoke")).status_code == 303
    assert (await api(browser, revoked, "/api/audit/events")).status_code == 401

    await admin.execute("UPDATE api_token SET created_at = now() - interval '2 days', expires_at = now() - interval '1 second'"
                        " WHERE name = 'expired' AND tenant_id = $1", tenant.id)
    answer = await api(browser, expired, "/api/audit/events")
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")

    # Its owner loses audit.read: the token loses it too, at once; what remains still works.
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        await admin.execute("DELETE FROM role_capability WHERE capability = 'audit.read' AND role_id ="
                            " (SELECT id FROM role WHERE seeded_as = 'auditor' AND tenant_id = $1)", tenant.id)
    assert (await api(browser, kept, "/api/audit/events")).status_code == 403
    assert (await (await api(browser, kept, "/api/me")).get_json())["capabilities"] == ["report.export"]

    # Another tenant's host does not know the token.
    other = await make_tenant()
    assert (await api(browser, kept, "/api/me", host=f"{other.slug}.localhost")).status_code == 401

    # A disabled owner's tokens stop.
    await admin.execute("UPDATE app_user SET disabled_at = now() WHERE tenant_id = $1", tenant.id)
    assert (await api(browser, kept, "/api/me")).status_code == 401

    revokes = await admin.fetch("SELECT data FROM audit_log WHERE tenant_id = $1 AND action = 'access:token:revoke'",
                                tenant.id)
    assert len(revokes) == 1 and '"revoked": true' in revokes[0]["data"]


async def test_the_api_wants_a_token_not_a_session_cookie(site, admin, tenant):
    browser, email, _ = await enrolled(site, admin, tenant)
    await give_role(admin, tenant, email, "auditor")
    response = await browser.get("/api/me")  # signed in with the cookie, but no token
    assert response.status_code == 401 and "Bearer" in (await response.get_json())["message"]
    assert (await api(browser, "exo_pat_not-a-real-token", "/api/me")).status_code == 401


async def test_making_a_token_needs_a_recent_second_factor(site, admin, tenant):
    browser, email, _ = await enrolled(site, admin, tenant)
    await give_role(admin, tenant, email, "auditor")
    await admin.execute("UPDATE user_session SET factor_at = now() - interval '10 minutes' WHERE tenant_id = $1",
                        tenant.id)
    response, token = await make_token(browser, "late", ["audit.read"])
    assert token is None and 'name="step_up_code"' in browser.last_body
    assert await admin.fetchval("SELECT count(*) FROM api_token WHERE tenant_id = $1", tenant.id) == 0
