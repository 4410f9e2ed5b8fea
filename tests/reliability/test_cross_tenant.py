"""No tenant ever sees another's data, on any route, as any kind of its users (the probe: tests/reliability/probe.py).

Two tenants are seeded with canary strings in every free-text field; every rule of
the URL map is requested as each tenant's administrator, requester, anonymous
browser and API token, with its own ids and with the other tenant's ids in paths,
forms, JSON bodies, query strings and the X-Tenant header. No answer may show the
other tenant's canaries or ids, none may be a 500, no row of the other tenant may
change, and no route may go unprobed (a new one is probed without being listed; only
`probe.EXCLUDED` is left out, each with its reason). The probe must also have seen
each tenant's own canaries where its users should, so a run that met only refusals
cannot pass.

The guarantee is shown failing: on a throw-away database whose `app_user` table has
row-level security disabled, the same probe reports the other tenant's canaries (its
people's names and addresses on the user list and in the owner choices); with
`user_group` unisolated, it reports the other tenant's groups renamed and deleted.
The app's role does not own the tables, so `NO FORCE ROW LEVEL SECURITY` alone would
change nothing for it (asserted); disabling RLS is what breaks the isolation the app
relies on, since its queries name no tenant.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from app import create_app
from app.config import Settings
from app.migrations import migrate
from app.tenants import Tenant, create_tenant
from tests.conftest import scratch_database
from tests.reliability.probe import Findings, Seeded, coverage, plan, run_probe
from tests.views import conftest as view_fixtures

site = view_fixtures.site

PEOPLE_PAGES = {"admin.users_page", "admin.assignments_page", "admin.group_page", "exceptions.new_form", "risks.new"}


async def test_no_route_shows_one_tenant_anything_of_another(site, admin, make_tenant):
    a, b = await make_tenant("probe-a"), await make_tenant("probe-b")
    findings = await run_probe(site, admin, (a, b))
    findings.assert_clean()
    assert findings.requests > 1500
    for tenant in (a, b):
        assert findings.unseen(tenant.slug) == []
        assert not findings.seen(tenant.slug, "anonymous")


def test_a_route_that_was_not_sent_is_named(settings):
    app = create_app(settings)

    async def added():
        return "new"

    app.add_url_rule("/reports/<uuid:report_id>", "reports.show", added, methods=["GET", "POST"])
    nobody = Seeded(Tenant(uuid.uuid4(), "nobody", "Nobody", False), "00000000", emails=["nobody@example.com"])
    gets, unsafe = plan(app, nobody, nobody)
    sent = {(p.rule, p.method) for p in gets + unsafe}
    assert ("/reports/<uuid:report_id>", "POST") in sent    # read from the map, not from a list
    assert coverage(app, sent) == []
    assert coverage(app, sent - {("/reports/<uuid:report_id>", "POST")}) == [
        "POST /reports/<uuid:report_id> (reports.show): neither probed nor in EXCLUDED"]


@pytest.fixture
def unisolated(server_url, tmp_path):
    """Settings of a throw-away migrated database, dropped afterwards."""
    with scratch_database(server_url) as url:
        asyncio.run(migrate(url))
        yield Settings(database_url=url, data_dir=tmp_path, pool_max=10, jobs=False)


async def probe_without_isolation(settings: Settings, table: str, **probing) -> Findings:
    """The probe on a database where `table` has row-level security disabled after the tenants were made."""
    admin = await asyncpg.connect(settings.database_url)
    try:
        owners = {r["tableowner"] for r in await admin.fetch(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        assert "exceptao_app" not in owners   # so FORCE is not what protects the app: RLS itself is
        app = create_app(settings)
        async with app.test_app() as test_app:
            a = await create_tenant(admin, "leak-a", "Leak A", actor="system:test")
            b = await create_tenant(admin, "leak-b", "Leak B", actor="system:test")
            await admin.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
            return await run_probe(test_app, admin, (a, b), **probing)
    finally:
        await admin.close()


async def test_the_probe_reports_a_leak_when_a_table_loses_its_isolation(unisolated):
    findings = await probe_without_isolation(unisolated, "app_user", only=PEOPLE_PAGES, unsafe=False)
    with pytest.raises(AssertionError, match=r"LEAK leak-a admin GET /admin/\S+ -> 200: shows CANARY-"):
        findings.assert_clean()
    assert any(leak.startswith("leak-b ") for leak in findings.leaks)
    assert any(leak.startswith("leak-a admin GET /admin/users") for leak in findings.leaks)


async def test_the_probe_reports_a_write_into_another_tenant_when_a_table_loses_its_isolation(unisolated):
    findings = await probe_without_isolation(unisolated, "user_group", only={"admin.update_group", "admin.delete_group"})
    assert "leak-a's requests changed user_group of leak-b" in findings.writes
    assert "leak-b's requests changed user_group of leak-a" in findings.writes
