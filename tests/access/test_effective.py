"""Effective capabilities: users reached directly, through nested groups and through org units."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app import access
from app.access.catalogue import CAPABILITIES
from app.db import set_tenant, tenant_transaction
from tests.access.org import add_group, municipality

REQUESTER = {"exception.submit", "exception.read"}
APPROVER = {"exception.read", "exception.review", "exception.approve", "evidence.read"}
RISK_OWNER = {"exception.read", "exception.review", "risk.manage", "evidence.read", "report.export"}
AUDITOR = {"exception.read", "evidence.read", "audit.read", "report.export"}


async def access_of(pool, org, name, scope=None):
    async with tenant_transaction(pool, org.tenant.id, readonly=True) as conn:
        return await access.load(conn, org.users[name], org.units.get(scope) if scope else None)


async def test_the_capability_catalogue_in_code_is_the_one_in_the_database(admin):
    rows = await admin.fetch("SELECT code, meaning FROM capability")
    assert {r["code"]: r["meaning"] for r in rows} == CAPABILITIES


async def test_a_new_tenant_has_the_five_default_roles(admin, pool, tenant):
    async with tenant_transaction(pool, tenant.id, readonly=True) as conn:
        roles = {r["seeded_as"]: set(r["caps"]) for r in await conn.fetch(
            "SELECT r.seeded_as, array_agg(c.capability) AS caps FROM role r"
            " JOIN role_capability c ON c.role_id = r.id GROUP BY r.seeded_as")}
    assert roles == {"requester": REQUESTER, "approver": APPROVER, "risk_owner": RISK_OWNER,
                     "auditor": AUDITOR, "admin": set(CAPABILITIES)}


async def test_the_effective_capability_matrix(admin, pool, tenant):
    org = await municipality(admin, tenant)
    expected = {  # user: (scopes they may work in, default scope first; capabilities there)
        "Direct": (["Whole organisation"], REQUESTER),
        "Nested": (["Whole organisation"], AUDITOR),
        "Teacher": (["Whole organisation"], AUDITOR),
        "Principal": (["City / District North / School A"], APPROVER),
        "Inspector": (["City / District North"], RISK_OWNER),
        "Mixed": (["Whole organisation", "City / District North / School B"], REQUESTER),
        "Nobody": (["Whole organisation"], set()),
        "Gone": (["Whole organisation"], set()),
    }
    seen = {}
    for name in expected:
        got = await access_of(pool, org, name)
        seen[name] = ([s.label for s in got.scopes], set(got.capabilities))
    assert seen == expected

    mixed_in_b = await access_of(pool, org, "Mixed", "School B")
    assert mixed_in_b.scope.label.endswith("School B") and mixed_in_b.capabilities == REQUESTER | APPROVER
    # A scope the user holds nothing in is not theirs: they stay in their default one.
    assert (await access_of(pool, org, "Mixed", "School A")).scope == access.WHOLE_TENANT
    assert (await access_of(pool, org, "Principal", "School B")).scope.label.endswith("School A")
    assert access.WHOLE_TENANT not in (await access_of(pool, org, "Principal")).scopes


async def test_why_shows_the_path_through_nested_groups_and_units(admin, pool, tenant):
    org = await municipality(admin, tenant)
    nested = await access_of(pool, org, "Nested")
    [grant] = nested.why("audit.read")
    assert [step["name"] for step in grant.via] == ["Maths", "Teachers", "Staff", "Auditor (read-only)"]
    assert [step["kind"] for step in grant.via] == ["group", "group", "group", "role"]
    assert nested.why("exception.approve") == []

    principal = await access_of(pool, org, "Principal")
    [grant] = principal.why("exception.approve")
    assert grant.unit_names == ("City", "District North", "School A") and grant.role["name"] == "Approver"


async def test_changes_to_groups_and_assignments_take_effect_on_the_next_load(admin, pool, tenant):
    org = await municipality(admin, tenant)
    assert (await access_of(pool, org, "Nested")).has("audit.read")
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        # Maths leaves Teachers: the path to Staff is cut.
        await admin.execute("UPDATE user_group SET parent_id = NULL WHERE id = $1", org.groups["Maths"])
    assert not (await access_of(pool, org, "Nested")).has("audit.read")
    assert (await access_of(pool, org, "Teacher")).has("audit.read")
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        await admin.execute("DELETE FROM role_capability WHERE role_id = $1 AND capability = 'audit.read'",
                            org.roles["auditor"])
    assert not (await access_of(pool, org, "Teacher")).has("audit.read")


async def test_a_cycle_in_groups_is_refused(admin, pool, tenant):
    org = await municipality(admin, tenant)
    async with tenant_transaction(pool, tenant.id) as conn:
        with pytest.raises(asyncpg.CheckViolationError, match='"Staff" cannot be placed under') as refused:
            await conn.execute("UPDATE user_group SET parent_id = $1 WHERE id = $2",
                               org.groups["Maths"], org.groups["Staff"])
    assert refused.value.constraint_name == "hierarchy_cycle"
    for statement, args, message in (
        ("UPDATE user_group SET parent_id = id WHERE id = $1", (org.groups["Teachers"],), "user group"),
        ("UPDATE org_unit SET parent_id = $1 WHERE id = $2", (org.units["Class A1"], org.units["District North"]),
         'org unit "District North"'),
    ):
        async with tenant_transaction(pool, tenant.id) as conn:
            with pytest.raises(asyncpg.CheckViolationError, match=message):
                await conn.execute(statement, *args)
    async with tenant_transaction(pool, tenant.id, readonly=True) as conn:
        assert await conn.fetchval("SELECT parent_id FROM user_group WHERE id = $1", org.groups["Staff"]) is None


async def test_two_concurrent_moves_cannot_close_a_loop_between_them(admin, pool, tenant):
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        org = type("O", (), {})()
        org.tenant, org.groups = tenant, {}
        a = await add_group(admin, org, "A")
        b = await add_group(admin, org, "B")
    first, second = await pool.acquire(), await pool.acquire()
    try:
        t1, t2 = first.transaction(), second.transaction()
        await t1.start()
        await t2.start()
        await set_tenant(first, tenant.id)
        await set_tenant(second, tenant.id)
        await first.execute("UPDATE user_group SET parent_id = $1 WHERE id = $2", b, a)   # A under B
        blocked = asyncio.create_task(second.execute("UPDATE user_group SET parent_id = $1 WHERE id = $2", a, b))
        await asyncio.sleep(0.2)
        assert not blocked.done()  # waits for the first move to commit
        await t1.commit()
        with pytest.raises(asyncpg.CheckViolationError):
            await blocked
        await t2.rollback()
    finally:
        await pool.release(first)
        await pool.release(second)
