"""Org units under row-level security: a site-bound user sees its unit and the units below, nothing else."""

from __future__ import annotations

import asyncpg
import pytest
from quart import jsonify

from app.accounts.passwords import hash_password
from app.db import current_org_unit, set_tenant, tenant_transaction, unprotected_tenant_tables
from app.views import pool as app_pool
from app.web.guards import requires
from tests.access.org import assign, municipality
from tests.web import PASSWORD, Browser
from tests.views.test_signin import sign_in


@pytest.fixture
async def probe(admin):
    """A table of org-unit data made the way a migration makes one (scope_by_org_unit), dropped after.

    Left behind, it would be a tenant table no migration knows: a tenant export
    made later in the run holds it and cannot be imported into a fresh database.
    """
    if await admin.fetchval("SELECT to_regclass('org_probe') IS NULL"):
        await admin.execute("""
            CREATE TABLE org_probe (tenant_id uuid NOT NULL, org_unit_id uuid NOT NULL, name text NOT NULL);
            ALTER TABLE org_probe ENABLE ROW LEVEL SECURITY;
            ALTER TABLE org_probe FORCE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON org_probe USING (tenant_id = app_current_tenant())
                WITH CHECK (tenant_id = app_current_tenant());
            SELECT scope_by_org_unit('org_probe');
            GRANT SELECT, INSERT ON org_probe TO exceptao_app;
        """)
    yield "org_probe"
    await admin.execute("DROP TABLE org_probe")


async def fill(admin, org) -> None:
    async with admin.transaction():
        await set_tenant(admin, org.tenant.id)
        for unit in org.units:
            await admin.execute("INSERT INTO org_probe (tenant_id, org_unit_id, name) VALUES ($1, $2, $3)",
                                org.tenant.id, org.units[unit], f"row of {unit}")


async def test_a_unit_sees_itself_and_below_and_no_sibling_even_without_a_where_clause(admin, pool, tenant, probe):
    org = await municipality(admin, tenant)
    await fill(admin, org)

    async def visible(unit: str | None) -> set[str]:
        token = current_org_unit.set(org.units[unit] if unit else None)
        try:
            async with tenant_transaction(pool, tenant.id, readonly=True) as conn:
                return {r["name"] for r in await conn.fetch("SELECT name FROM org_probe")}
        finally:
            current_org_unit.reset(token)

    assert await visible("School A") == {"row of School A", "row of Class A1"}
    assert await visible("School B") == {"row of School B"}
    assert await visible("District North") == {"row of District North", "row of School A", "row of Class A1",
                                               "row of School B"}
    assert len(await visible(None)) == 5

    token = current_org_unit.set(org.units["School A"])
    try:
        async with tenant_transaction(pool, tenant.id) as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                await conn.execute("INSERT INTO org_probe (tenant_id, org_unit_id, name) VALUES ($1, $2, 'x')",
                                   tenant.id, org.units["School B"])
    finally:
        current_org_unit.reset(token)


async def test_a_site_bound_users_request_runs_in_their_unit(admin, tenant, probe, site, monkeypatch):
    org = await municipality(admin, tenant)
    await fill(admin, org)
    await admin.execute("UPDATE app_user SET password_hash = $2 WHERE id = $1",
                        org.users["Principal"], hash_password(PASSWORD))

    @site.app.get("/test-probe")
    @requires("exception.approve")
    async def probe_rows():
        from quart import g

        async with tenant_transaction(app_pool(), g.tenant.id, readonly=True) as conn:
            return jsonify(sorted(r["name"] for r in await conn.fetch("SELECT name FROM org_probe")))

    browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
    await sign_in(browser, f"principal@{tenant.slug}.example")
    response = await browser.get("/test-probe")
    assert response.status_code == 200
    assert await response.get_json() == ["row of Class A1", "row of School A"]

    # The same user without the capability the view declares is refused with a page saying what is missing.
    await admin.execute("DELETE FROM role_assignment WHERE user_id = $1", org.users["Principal"])
    refused = await browser.get("/test-probe")
    assert refused.status_code == 403 and "exception.approve" in browser.last_body


async def test_a_table_with_org_unit_id_but_no_scope_policy_is_reported(admin):
    await admin.execute("""
        CREATE TABLE IF NOT EXISTS org_unscoped (tenant_id uuid, org_unit_id uuid);
        ALTER TABLE org_unscoped ENABLE ROW LEVEL SECURITY;
        ALTER TABLE org_unscoped FORCE ROW LEVEL SECURITY;
        DROP POLICY IF EXISTS tenant_isolation ON org_unscoped;
        CREATE POLICY tenant_isolation ON org_unscoped USING (tenant_id = app_current_tenant());
    """)
    try:
        problems = await unprotected_tenant_tables(admin)
        assert problems == ["org_unscoped: has org_unit_id but lacks the org_unit_scope policy"]
    finally:
        await admin.execute("DROP TABLE org_unscoped")


async def test_a_user_with_grants_in_two_scopes_switches_between_them(admin, tenant, site):
    org = await municipality(admin, tenant)
    await admin.execute("UPDATE app_user SET password_hash = $2 WHERE id = $1",
                        org.users["Mixed"], hash_password(PASSWORD))
    browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
    await sign_in(browser, f"mixed@{tenant.slug}.example")
    await browser.get("/")
    assert "Working in" in browser.last_body and "exception.approve" not in browser.last_body

    # A unit the user holds nothing in cannot be chosen.
    assert (await browser.post("/scope", {"unit": str(org.units["School A"])})).status_code == 404
    assert (await browser.post("/scope", {"unit": str(org.units["School B"]), "next": "/"})).status_code == 303
    await browser.get("/")
    assert "in City / District North / School B" in browser.last_body and "exception.approve" in browser.last_body
    switches = await admin.fetch("SELECT data FROM audit_log WHERE tenant_id = $1 AND action = 'identity:session:scope'",
                                 tenant.id)
    assert [s["data"] for s in switches] == [f'{{"scope": "{org.units["School B"]}"}}']

    await browser.post("/scope", {"unit": ""})
    await browser.get("/")
    assert "exception.approve" not in browser.last_body

    # Tenant-wide settings are never reached from inside a unit, even with a tenant-wide grant.
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        await assign(admin, org, "admin", user="Mixed")
    await browser.post("/scope", {"unit": str(org.units["School B"])})
    refused = await browser.get("/admin/users")
    assert refused.status_code == 403 and "works only in the whole organisation" in browser.last_body
    assert "Work in Whole organisation" in browser.last_body
    await browser.post("/scope", {"unit": ""})
    assert (await browser.get("/admin/users")).status_code == 200


async def test_deleting_an_unused_unit_takes_the_dead_tokens_made_in_it(admin, pool, tenant):
    from app.access import load, tokens
    from app.access.admin import Admin, units

    org = await municipality(admin, tenant)
    async with tenant_transaction(pool, tenant.id) as conn:
        principal = await load(conn, org.users["Principal"])
        await tokens.create(conn, tenant.id, principal, "school script", ["exception.read"], 30)
        await conn.execute("DELETE FROM role_assignment WHERE user_id = $1", org.users["Principal"])
        await units.delete(conn, Admin(tenant.id, org.users["Direct"]), org.units["Class A1"])
        await units.delete(conn, Admin(tenant.id, org.users["Direct"]), org.units["School A"])
        assert await conn.fetchval("SELECT count(*) FROM api_token") == 0
    deleted = await admin.fetchval("SELECT data FROM audit_log WHERE tenant_id = $1 AND action = 'access:org_unit:delete'"
                                   " ORDER BY seq DESC LIMIT 1", tenant.id)
    assert '"api_tokens": 1' in deleted
