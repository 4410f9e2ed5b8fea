"""The four roles of DESIGN.md, and that the runtime pool is the least of them."""

import asyncpg
import pytest


async def test_runtime_pool_is_the_app_role_without_privileges(pool):
    row = await pool.fetchrow(
        "SELECT current_user AS name, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb"
        " FROM pg_roles WHERE rolname = current_user"
    )
    assert row["name"] == "exceptao_app"
    assert row["rolsuper"] is False
    assert row["rolbypassrls"] is False
    assert row["rolcreaterole"] is False
    assert row["rolcreatedb"] is False


async def test_app_role_owns_nothing(pool):
    owned = await pool.fetch(
        """
        SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND pg_has_role(current_user, c.relowner, 'USAGE')
        UNION ALL
        SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public' AND pg_has_role(current_user, p.proowner, 'USAGE')
        """
    )
    assert owned == []
    owner = await pool.fetchval("SELECT relowner::regrole::text FROM pg_class WHERE relname = 'audit_log'")
    assert owner == "exceptao_migrator"


async def test_app_role_cannot_do_ddl_or_become_another_role(pool):
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE sneaky (tenant_id uuid)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for role in ("exceptao_operator", "exceptao_migrator", "exceptao_audit_writer", "postgres"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"SET ROLE {role}")


async def test_other_roles_have_what_design_gives_them(admin):
    roles = {
        r["rolname"]: r
        for r in await admin.fetch(
            "SELECT rolname, rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname LIKE 'exceptao_%'"
        )
    }
    assert set(roles) == {"exceptao_migrator", "exceptao_app", "exceptao_audit_writer", "exceptao_operator"}
    assert not any(r["rolsuper"] for r in roles.values())
    assert [n for n, r in roles.items() if r["rolbypassrls"]] == ["exceptao_operator"]
    assert roles["exceptao_migrator"]["rolcanlogin"] is False
    assert roles["exceptao_audit_writer"]["rolcanlogin"] is False

    privileges = await admin.fetchrow(
        """
        SELECT has_table_privilege('exceptao_audit_writer', 'audit_log', 'INSERT') AS writer_insert,
               has_table_privilege('exceptao_audit_writer', 'audit_log', 'UPDATE') AS writer_update,
               has_table_privilege('exceptao_audit_writer', 'audit_log', 'DELETE') AS writer_delete,
               has_table_privilege('exceptao_app', 'audit_log', 'INSERT') AS app_insert,
               has_table_privilege('exceptao_app', 'audit_log', 'UPDATE') AS app_update,
               has_function_privilege('exceptao_app',
                   'audit_append(text, text, text, text, jsonb, jsonb, bytea)', 'EXECUTE') AS app_append,
               (SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'audit_append') AS append_owner,
               (SELECT prosecdef FROM pg_proc WHERE proname = 'audit_append') AS append_definer
        """
    )
    assert privileges["writer_insert"] is True
    assert privileges["writer_update"] is False
    assert privileges["writer_delete"] is False
    assert privileges["app_insert"] is False
    assert privileges["app_update"] is False
    assert privileges["app_append"] is True
    assert privileges["append_owner"] == "exceptao_audit_writer"
    assert privileges["append_definer"] is True


async def test_operator_bypasses_rls_where_the_app_sees_nothing(admin, app_url, tenant):
    from app.config import url_for_role

    operator = await asyncpg.connect(url_for_role(app_url, "exceptao_operator"))
    app = await asyncpg.connect(app_url)
    try:
        assert await operator.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1", tenant.id) == 1
        assert await app.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1", tenant.id) == 0
    finally:
        await operator.close()
        await app.close()
