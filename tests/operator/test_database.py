"""Operator data is platform data: the operator role's alone, credentials never in clear."""

from __future__ import annotations

import asyncpg
import pytest

from app.config import url_for_role


@pytest.mark.parametrize("table", ["operator_account", "operator_session", "tenant_chain_status"])
async def test_app_role_cannot_read_operator_data(pool, operator, table):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.fetch(f"SELECT * FROM {table}")


async def test_operator_role_cannot_make_operators_or_change_their_factor(admin_url, operator):
    conn = await asyncpg.connect(url_for_role(admin_url, "exceptao_operator"))
    try:
        assert await conn.fetchval("SELECT count(*) FROM operator_account WHERE id = $1", operator.operator.id) == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO operator_account (id, email, display_name, password_hash, totp_secret)"
                               " VALUES (gen_random_uuid(), 'x@example.com', 'X', 'x', '\\x00')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE operator_account SET totp_secret = '\\x00' WHERE id = $1", operator.operator.id)
    finally:
        await conn.close()


async def test_credentials_are_not_stored_in_clear(admin, operator):
    row = await admin.fetchrow("SELECT password_hash, totp_secret FROM operator_account WHERE id = $1",
                               operator.operator.id)
    assert row["password_hash"].startswith("$argon2id$") and operator.password not in row["password_hash"]
    assert operator.totp_secret.encode() not in row["totp_secret"]
