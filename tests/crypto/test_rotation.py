"""Rotating the key-encryption key, in OpenBao transit and in the local key file: data keys rewrapped, files untouched."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import hvac

from app.audit.verify import verify_tenant
from app.cli import main
from app.crypto.kek import KEY_FILE_NAME
from app.crypto.keys import current_key, forget_keys, key_by_id
from app.crypto.rotation import rotate_kek
from app.crypto.stream import decrypt_bytes, encrypt_bytes
from app.db import tenant_transaction
from app.tenants import create_tenant


async def tenants_with_files(admin, pool, settings, count=2):
    """Tenants, each with its data key and a file encrypted under it: [(tenant, key, plaintext, sealed)]."""
    made = []
    for _ in range(count):
        slug = f"rot-{uuid.uuid4().hex[:8]}"
        tenant = await create_tenant(admin, slug, slug, actor="system:test")
        async with tenant_transaction(pool, tenant.id) as conn:
            key = await current_key(conn, settings)
        plaintext = uuid.uuid4().bytes * 5000
        made.append((tenant, key, plaintext, encrypt_bytes(key, plaintext, aad=tenant.id.bytes)))
    return made


async def still_open(pool, settings, made) -> None:
    forget_keys()  # unwrap again from the rewrapped rows
    for tenant, key, plaintext, sealed in made:
        async with tenant_transaction(pool, tenant.id) as conn:
            assert await key_by_id(conn, settings, key.id) == key
        assert decrypt_bytes(key, sealed, aad=tenant.id.bytes) == plaintext


async def rotation_events(admin, tenant):
    rows = await admin.fetch("SELECT actor, data FROM audit_log WHERE tenant_id = $1 AND action = 'crypto:kek:rotate'"
                             " ORDER BY seq", tenant.id)
    return [(r["actor"], json.loads(r["data"])) for r in rows]


async def test_local_key_file_rotation_rewraps_every_data_key_and_drops_the_old_version(own):
    admin, pool, settings = own
    made = await tenants_with_files(admin, pool, settings)
    before = {r["id"]: bytes(r["wrapped"]) for r in await admin.fetch("SELECT id, wrapped FROM tenant_key")}

    rotation = await rotate_kek(admin, settings)
    assert (rotation.provider, rotation.version, rotation.rewrapped, rotation.tenants) == ("local-file", 2, 2, 2)
    assert not rotation.failed and rotation.old_versions_dropped
    lines = (settings.data_dir / KEY_FILE_NAME).read_text().splitlines()
    assert [line.split()[0] for line in lines if not line.startswith("#")] == ["v2"]

    rows = await admin.fetch("SELECT id, wrapped, kek_provider, kek_version, rewrapped_at FROM tenant_key")
    assert {(r["kek_provider"], r["kek_version"]) for r in rows} == {("local-file", 2)}
    assert all(r["rewrapped_at"] is not None and bytes(r["wrapped"]) != before[r["id"]] for r in rows)
    await still_open(pool, settings, made)

    for tenant, key, _, _ in made:
        [(actor, data)] = await rotation_events(admin, tenant)
        assert actor == "system:cli"
        assert data == {"kek": "local-file", "version": 2, "keys": [
            {"key": str(key.id), "from": {"kek": "local-file", "version": 1}, "to": {"kek": "local-file", "version": 2}}]}
        assert base64.b64encode(key.key).decode() not in json.dumps(data) and key.key.hex() not in json.dumps(data)
        assert (await verify_tenant(pool, tenant.id, settings)).ok


async def test_openbao_transit_rotation_rewraps_without_touching_files(own, vault):
    admin, pool, base = own
    transit_key = f"exceptao-{uuid.uuid4().hex[:8]}"
    settings = vault.configure(base, transit_key)
    made = await tenants_with_files(admin, pool, settings)
    rows = await admin.fetch("SELECT kek_provider, kek_version, wrapped FROM tenant_key")
    assert {(r["kek_provider"], r["kek_version"]) for r in rows} == {("vault-transit", 1)}
    assert all(bytes(r["wrapped"]).startswith(b"vault:v1:") for r in rows)
    old_wrapped = bytes(rows[0]["wrapped"])

    rotation = await rotate_kek(admin, settings)
    assert (rotation.provider, rotation.version, rotation.rewrapped, rotation.tenants) == ("vault-transit", 2, 2, 2)
    assert not rotation.failed and not rotation.old_versions_dropped  # retiring v1 is Vault's min_decryption_version
    rows = await admin.fetch("SELECT kek_provider, kek_version, wrapped FROM tenant_key")
    assert {(r["kek_provider"], r["kek_version"]) for r in rows} == {("vault-transit", 2)}
    assert all(bytes(r["wrapped"]).startswith(b"vault:v2:") for r in rows)
    await still_open(pool, settings, made)

    client = hvac.Client(url=vault.addr, token=vault.token)
    assert client.secrets.transit.read_key(transit_key)["data"]["latest_version"] == 2
    # Version 1 stays readable in Vault until an operator raises min_decryption_version.
    assert client.secrets.transit.decrypt_data(transit_key, ciphertext=old_wrapped.decode())["data"]["plaintext"]
    for tenant, key, _, _ in made:
        [(_, data)] = await rotation_events(admin, tenant)
        assert data["keys"] == [{"key": str(key.id), "from": {"kek": "vault-transit", "version": 1},
                                 "to": {"kek": "vault-transit", "version": 2}}]


async def test_rotation_moves_keys_from_the_local_file_into_vault(own, vault):
    admin, pool, local = own
    made = await tenants_with_files(admin, pool, local, count=1)
    settings = vault.configure(local, f"exceptao-{uuid.uuid4().hex[:8]}")
    rotation = await rotate_kek(admin, settings)
    assert rotation.rewrapped == 1 and not rotation.failed
    assert await admin.fetchval("SELECT kek_provider FROM tenant_key") == "vault-transit"
    await still_open(pool, settings, made)


async def test_exceptao_keys_rotate_prints_how_many_keys_it_rewrapped(own, monkeypatch, capsys):
    admin, pool, settings = own
    made = await tenants_with_files(admin, pool, settings, count=3)
    for name in ("EXCEPTAO_VAULT_ADDR", "VAULT_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("EXCEPTAO_DATA_DIR", str(settings.data_dir))
    assert await asyncio.to_thread(main, ["keys", "rotate"]) == 0
    out = capsys.readouterr().out
    assert "version 2" in out and "rewrapped 3 data keys of 3 tenants" in out
    await still_open(pool, settings, made)

    # A key file that lost the version a key was wrapped under: that tenant is reported, the command exits 1.
    (settings.data_dir / KEY_FILE_NAME).write_text("v7 " + base64.b64encode(b"k" * 32).decode() + "\n")
    assert await asyncio.to_thread(main, ["keys", "rotate"]) == 1
    err = capsys.readouterr().err
    assert err.count("not rewrapped") == 3 and "no longer holds version 2" in err
