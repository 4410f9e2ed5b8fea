"""Tenant isolation by the database: forced RLS on every tenant table."""

import asyncio

import asyncpg
import pytest

from app.db import set_tenant, tenant_transaction, unprotected_tenant_tables
from app.migrations import SQL_DIR, MigrationError, migrate
from tests.conftest import scratch_database

TENANT_TABLES = {"app_user", "audit_log", "audit_pii", "audit_anchor"}


async def test_every_tenant_table_has_forced_rls_and_a_policy(admin):
    assert await unprotected_tenant_tables(admin) == []
    # The check is not vacuous: it looked at the tables that hold tenant data.
    checked = {r["table_name"] for r in await admin.fetch(
        "SELECT DISTINCT table_name::text FROM information_schema.columns"
        " WHERE column_name = 'tenant_id' AND table_schema = 'public'"
    )}
    assert TENANT_TABLES <= checked


FIXTURES = {
    "9001_unprotected.sql": ("CREATE TABLE fixture_note (tenant_id uuid NOT NULL, body text);",
                             "fixture_note: lacks ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY, "
                             "a tenant_id = app_current_tenant() policy"),
    "9001_not_forced.sql": ("CREATE TABLE fixture_note (tenant_id uuid NOT NULL, body text);\n"
                            "ALTER TABLE fixture_note ENABLE ROW LEVEL SECURITY;\n"
                            "CREATE POLICY p ON fixture_note USING (tenant_id = app_current_tenant());",
                            "fixture_note: lacks FORCE ROW LEVEL SECURITY"),
    "9001_no_policy.sql": ("CREATE TABLE fixture_note (tenant_id uuid NOT NULL, body text);\n"
                           "ALTER TABLE fixture_note ENABLE ROW LEVEL SECURITY;\n"
                           "ALTER TABLE fixture_note FORCE ROW LEVEL SECURITY;",
                           "fixture_note: lacks a tenant_id = app_current_tenant() policy"),
}


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_a_migration_that_adds_an_unprotected_tenant_table_fails(server_url, tmp_path, fixture):
    sql, complaint = FIXTURES[fixture]
    (tmp_path / fixture).write_text(sql)
    with scratch_database(server_url) as url:
        asyncio.run(migrate(url))
        with pytest.raises(MigrationError) as refused:
            asyncio.run(migrate(url, SQL_DIR, tmp_path))
        assert complaint in str(refused.value)

        async def catalog_check_after_bypassing_migrate():
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("SET ROLE exceptao_migrator")
                await conn.execute(sql)
                return await unprotected_tenant_tables(conn)
            finally:
                await conn.close()

        assert asyncio.run(catalog_check_after_bypassing_migrate()) == [complaint]


async def test_a_query_without_where_sees_only_its_own_tenant(pool, admin, make_tenant):
    a, b = await make_tenant("a"), await make_tenant("b")
    for t in (a, b):
        async with admin.transaction():
            await set_tenant(admin, t.id)
            await admin.execute(
                "INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, $2, 'X')",
                t.id, f"someone@{t.slug}.example",
            )
    async with tenant_transaction(pool, a.id) as conn:
        emails = [r["email"] for r in await conn.fetch("SELECT email FROM app_user")]
        tenants = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM audit_log")}
    assert emails == [f"someone@{a.slug}.example"]
    assert tenants == {a.id}


async def test_no_tenant_means_no_rows_and_no_writes(pool, tenant):
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM app_user") == 0
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, 'x@y.z', 'X')", tenant.id
            )


async def test_the_tenant_setting_ends_with_the_transaction(pool, tenant):
    async with pool.acquire() as conn:
        async with conn.transaction():
            await set_tenant(conn, tenant.id)
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == 1
        # Same connection, next transaction: nothing leaks (safe behind pgbouncer).
        assert await conn.fetchval("SELECT current_setting('app.current_tenant_id', true)") == ""
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_writing_into_another_tenant_is_refused(pool, make_tenant):
    a, b = await make_tenant("a"), await make_tenant("b")
    async with pool.acquire() as conn:
        async with conn.transaction():
            await set_tenant(conn, a.id)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    "INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, 'x@y.z', 'X')", b.id
                )
    async with tenant_transaction(pool, a.id) as conn:
        await conn.execute("INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, 'x@y.z', 'X')", a.id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_transaction(pool, a.id) as conn:
            await conn.execute("UPDATE app_user SET tenant_id = $1", b.id)
