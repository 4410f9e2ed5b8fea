"""Tenant data keys: one per tenant, made once even when first used twice at once, stored only wrapped, isolated by RLS."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import asyncpg
import pytest

from app.crypto import Tampered
from app.crypto.kek import KEY_FILE_NAME
from app.crypto.keys import UnknownKey, current_key, forget_keys, key_by_id
from app.crypto.stream import decrypt, encrypt_bytes
from app.db import tenant_transaction


async def key_of(pool, settings, tenant):
    async with tenant_transaction(pool, tenant.id) as conn:
        return await current_key(conn, settings)


async def test_each_tenant_has_its_own_key_made_once_and_stored_only_wrapped(pool, admin, settings, make_tenant):
    a, b = await make_tenant("keys-a"), await make_tenant("keys-b")
    key_a, key_b = await key_of(pool, settings, a), await key_of(pool, settings, b)
    assert key_a.id != key_b.id and key_a.key != key_b.key and len(key_a.key) == 32
    forget_keys()
    assert await key_of(pool, settings, a) == key_a  # unwrapped again from its row, not made anew

    row = await admin.fetchrow("SELECT * FROM tenant_key WHERE id = $1", key_a.id)
    assert row["tenant_id"] == a.id and row["retired_at"] is None
    assert (row["kek_provider"], row["kek_version"]) == ("local-file", 1)
    assert key_a.key not in bytes(row["wrapped"]) and key_a.key.hex() not in bytes(row["wrapped"]).decode("latin-1")

    key_file = settings.data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.parent == settings.data_dir and key_a.key.hex() not in key_file.read_text()

    created = await admin.fetch(
        "SELECT actor, target_id, data FROM audit_log WHERE tenant_id = $1 AND action = 'crypto:data_key:create'", a.id)
    assert [(r["actor"], r["target_id"]) for r in created] == [("system:crypto", str(key_a.id))]
    assert json.loads(created[0]["data"]) == {"kek": "local-file", "version": 1}


async def test_two_first_uses_at_once_make_one_key(pool, admin, settings, tenant):
    keys = await asyncio.gather(*(key_of(pool, settings, tenant) for _ in range(12)))
    assert len({k.id for k in keys}) == 1 and len({k.key for k in keys}) == 1
    assert await admin.fetchval("SELECT count(*) FROM tenant_key WHERE tenant_id = $1", tenant.id) == 1
    assert await admin.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1"
                                " AND action = 'crypto:data_key:create'", tenant.id) == 1


async def test_one_tenant_cannot_read_or_use_another_tenants_key(pool, settings, make_tenant):
    a, b = await make_tenant("rls-a"), await make_tenant("rls-b")
    key_b = await key_of(pool, settings, b)
    await key_of(pool, settings, a)
    sealed = encrypt_bytes(key_b, b"evidence of tenant b", aad=b"evidence")
    async with tenant_transaction(pool, a.id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM tenant_key WHERE id = $1", key_b.id) == 0
        assert await conn.fetchval("SELECT count(*) FROM tenant_key WHERE tenant_id = $1", b.id) == 0
        with pytest.raises(UnknownKey):
            await key_by_id(conn, settings, key_b.id)

        async def stored():
            yield sealed

        with pytest.raises(Tampered, match="does not have"):
            async for _ in decrypt(lambda key_id: key_by_id(conn, settings, key_id), stored(), aad=b"evidence"):
                pass
    async with tenant_transaction(pool, a.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE tenant_key SET retired_at = now()")
    async with tenant_transaction(pool, a.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM tenant_key")
    async with tenant_transaction(pool, a.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute("INSERT INTO tenant_key (tenant_id, wrapped, binding, kek_provider, kek_version)"
                               " VALUES ($1, $2, $3, 'local-file', 1)", b.id, os.urandom(60), os.urandom(32))


async def test_a_wrapped_key_moved_to_another_tenant_is_refused(pool, admin, settings, make_tenant):
    a, b = await make_tenant("move-a"), await make_tenant("move-b")
    key_b = await key_of(pool, settings, b)
    await admin.execute("UPDATE tenant_key SET tenant_id = $2, retired_at = now() WHERE id = $1", key_b.id, a.id)
    forget_keys()
    async with tenant_transaction(pool, a.id) as conn:
        with pytest.raises(Tampered, match="not bound to this tenant"):
            await key_by_id(conn, settings, key_b.id)


async def test_a_retired_key_still_opens_what_it_encrypted(pool, admin, settings, tenant):
    old = await key_of(pool, settings, tenant)
    await admin.execute("UPDATE tenant_key SET retired_at = now() WHERE id = $1", old.id)
    new = await key_of(pool, settings, tenant)
    assert new.id != old.id
    async with tenant_transaction(pool, tenant.id) as conn:
        assert await key_by_id(conn, settings, old.id) == old
