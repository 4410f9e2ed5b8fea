"""The panel: tenants with their chain status; create, suspend, restore, each in the tenant's own chain; verify."""

from __future__ import annotations

import re
import uuid

from app.audit.verify import verify_tenant
from app.tenants import tenant_by_slug
from tests.conftest import tampering
from tests.views.test_signin import sign_in
from tests.web import Browser, make_user


def row_of(page: str, slug: str) -> str:
    """The panel's table row for one tenant."""
    match = re.search(rf'<tr id="tenant-{re.escape(slug)}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {slug}"
    return match.group(1)


async def chain(admin, tenant_id) -> list:
    return await admin.fetch(
        "SELECT seq, actor, action, target_type, target_id, data FROM audit_log WHERE tenant_id = $1 ORDER BY seq",
        tenant_id)


async def test_panel_needs_an_operator_session(panel, admin):
    response = await panel.get("/operator")
    assert response.status_code == 303 and response.headers["Location"] == "/operator/signin"
    await panel.get("/operator/signin")
    slug = f"sneak-{uuid.uuid4().hex[:8]}"
    response = await panel.post("/operator/tenants", {"slug": slug, "name": "Sneaky"})
    assert response.status_code == 303 and response.headers["Location"] == "/operator/signin"
    assert await admin.fetchval("SELECT count(*) FROM tenant WHERE slug = $1", slug) == 0


async def test_panel_lists_tenants_with_their_chain(signed_in, make_tenant):
    tenant = await make_tenant("listed")
    response = await signed_in.get(f"/operator?q={tenant.slug}")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    row = row_of(signed_in.last_body, tenant.slug)
    assert tenant.name in row and "active" in row and "seq 1" in row and "never verified" in row


async def test_create_tenant_from_the_panel(signed_in, operator, admin, site, pool, settings):
    slug = f"made-{uuid.uuid4().hex[:8]}"
    response = await signed_in.post("/operator/tenants", {"slug": slug, "name": "Made by an operator", "public": "on"})
    assert response.status_code == 303 and response.headers["Location"] == f"/operator?q={slug}"
    await signed_in.get(response.headers["Location"])
    assert "Made by an operator" in row_of(signed_in.last_body, slug)

    tenant = await tenant_by_slug(admin, slug)
    assert tenant is not None and tenant.audit_public
    events = await chain(admin, tenant.id)
    assert [(e["seq"], e["actor"], e["action"]) for e in events] == [
        (1, f"operator:{operator.operator.id}", "tenant:tenant:create")]
    assert await admin.fetchval("SELECT count(*) FROM role WHERE tenant_id = $1", tenant.id) == 5
    assert (await verify_tenant(pool, tenant.id, settings)).ok
    # The new workspace is open for sign-in at once.
    assert (await Browser(site.test_client(), f"{slug}.localhost").get("/signin")).status_code == 200


async def test_create_tenant_errors_are_clear_and_keep_the_form(signed_in, tenant):
    response = await signed_in.post("/operator/tenants", {"slug": "Not A Slug!", "name": "Kept name", "public": "on"})
    assert response.status_code == 422
    assert "lower-case letters, digits or hyphens" in signed_in.last_body
    assert 'value="Not A Slug!"' in signed_in.last_body and 'value="Kept name"' in signed_in.last_body
    assert 'name="public" checked' in signed_in.last_body

    response = await signed_in.post("/operator/tenants", {"slug": tenant.slug, "name": "Twice"})
    assert response.status_code == 422 and "already exists" in signed_in.last_body


async def test_suspend_needs_a_reason_and_ends_the_tenant(signed_in, operator, browser, admin, tenant, site,
                                                          pool, settings):
    await sign_in(browser, await make_user(admin, tenant))
    assert (await browser.get("/account")).status_code == 200

    response = await signed_in.post(f"/operator/tenants/{tenant.id}/suspend", {"reason": "  ", "q": tenant.slug})
    assert response.status_code == 422 and "Give the reason for suspending" in signed_in.last_body
    assert not (await tenant_by_slug(admin, tenant.slug)).suspended

    reason = "Unpaid invoice 2024-117; customer told on 3 May"
    response = await signed_in.post(f"/operator/tenants/{tenant.id}/suspend", {"reason": reason, "q": tenant.slug})
    assert response.status_code == 303 and response.headers["Location"] == f"/operator?q={tenant.slug}"
    await signed_in.get(response.headers["Location"])
    assert "suspended" in row_of(signed_in.last_body, tenant.slug)

    # The workspace answers 403 to everybody, and its users' sessions are over.
    assert (await Browser(site.test_client(), f"{tenant.slug}.localhost").get("/signin")).status_code == 403
    assert (await browser.get("/account")).status_code == 403
    assert await admin.fetchval(
        "SELECT count(*) FROM user_session WHERE tenant_id = $1 AND revoked_at IS NULL", tenant.id) == 0

    last = (await chain(admin, tenant.id))[-1]
    assert last["action"] == "tenant:tenant:suspend" and last["actor"] == f"operator:{operator.operator.id}"
    assert (last["target_type"], last["target_id"]) == ("tenant", str(tenant.id))
    assert f'"reason": "{reason}"' in last["data"] and '"sessions_revoked": 1' in last["data"]
    stored = await admin.fetchval("SELECT email FROM audit_pii WHERE tenant_id = $1 AND seq = $2",
                                  tenant.id, last["seq"])
    assert stored == operator.operator.email

    # Restored: the workspace opens again, but the ended session stays ended.
    response = await signed_in.post(f"/operator/tenants/{tenant.id}/restore", {"q": tenant.slug})
    assert response.status_code == 303
    assert (await Browser(site.test_client(), f"{tenant.slug}.localhost").get("/signin")).status_code == 200
    response = await browser.get("/account")
    assert response.status_code == 303 and response.headers["Location"].startswith("/signin")
    last = (await chain(admin, tenant.id))[-1]
    assert (last["action"], last["actor"]) == ("tenant:tenant:restore", f"operator:{operator.operator.id}")
    assert (await verify_tenant(pool, tenant.id, settings)).ok


async def test_pressing_twice_records_once(signed_in, admin, tenant):
    for _ in range(2):
        await signed_in.post(f"/operator/tenants/{tenant.id}/suspend", {"reason": "Twice pressed"})
    for _ in range(2):
        await signed_in.post(f"/operator/tenants/{tenant.id}/restore")
    actions = [e["action"] for e in await chain(admin, tenant.id)]
    assert actions == ["tenant:tenant:create", "tenant:tenant:suspend", "tenant:tenant:restore"]
    unknown = await signed_in.post(f"/operator/tenants/{uuid.uuid4()}/suspend", {"reason": "Nobody"})
    assert unknown.status_code == 404


async def test_verify_now_shows_intact_then_broken(signed_in, admin, tenant):
    before = await chain(admin, tenant.id)
    response = await signed_in.post(f"/operator/tenants/{tenant.id}/verify", {"q": tenant.slug})
    assert response.status_code == 303
    await signed_in.get(response.headers["Location"])
    row = row_of(signed_in.last_body, tenant.slug)
    assert "intact" in row and "1 row" in row and "never verified" not in row
    assert await chain(admin, tenant.id) == before  # verifying changes nothing in the tenant's data

    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{\"slug\": \"forged\"}' WHERE tenant_id = $1 AND seq = 1",
                            tenant.id)
    await signed_in.post(f"/operator/tenants/{tenant.id}/verify", {"q": tenant.slug})
    await signed_in.get(f"/operator?q={tenant.slug}")
    row = row_of(signed_in.last_body, tenant.slug)
    assert "broken at seq 1" in row and "intact" not in row
    status = await admin.fetchrow("SELECT ok, broken_at, detail FROM tenant_chain_status WHERE tenant_id = $1",
                                  tenant.id)
    assert (status["ok"], status["broken_at"], status["detail"]) == (False, 1, "hash_mismatch")
