"""The key-encryption keys on their own: least-privilege Vault tokens, failures that say why without secrets, the key file."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import replace
from pathlib import Path

import hvac
import pytest

from app.config import Settings
from app.crypto.kek import KekError, KekUnavailable, LocalKeyFile, VaultTransit, key_encryption_key
from app.crypto.keys import current_key, forget_keys, key_by_id
from app.crypto.rotation import rotate_kek
from app.db import tenant_transaction

POLICIES = Path(__file__).resolve().parents[2] / "deploy" / "vault"


def token_with(vault, policy_file: str, key_name: str) -> str:
    """A token holding only the policy in deploy/vault/, for the transit key `key_name`."""
    root = hvac.Client(url=vault.addr, token=vault.token)
    name = f"{policy_file}-{key_name}"
    policy = re.sub(r'/exceptao(?=["/])', f"/{key_name}", (POLICIES / f"{policy_file}.hcl").read_text())
    root.sys.create_or_update_policy(name, policy)
    return root.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]


async def test_the_deployed_policies_let_the_app_wrap_and_only_the_rotation_token_rotate(own, vault):
    admin, pool, base = own
    key_name = f"exceptao-{uuid.uuid4().hex[:8]}"
    hvac.Client(url=vault.addr, token=vault.token).secrets.transit.create_key(key_name)
    app = replace(vault.configure(base, key_name), vault_token=token_with(vault, "exceptao-app", key_name))
    rotator = replace(app, vault_token=token_with(vault, "exceptao-rotate", key_name))

    tenant = await admin.fetchval("INSERT INTO tenant (slug, name) VALUES ($1, 'Policies') RETURNING id",
                                  f"pol-{uuid.uuid4().hex[:8]}")
    async with tenant_transaction(pool, tenant) as conn:
        made = await current_key(conn, app)
    with pytest.raises(KekError, match="permission denied"):
        await rotate_kek(admin, app)
    assert (await rotate_kek(admin, rotator)).rewrapped == 1
    with pytest.raises(KekError, match="permission denied"):
        key_encryption_key(rotator).unwrap(bytes(await admin.fetchval("SELECT wrapped FROM tenant_key")))
    forget_keys()
    async with tenant_transaction(pool, tenant) as conn:
        assert await key_by_id(conn, app, made.id) == made


def test_vault_failures_name_the_reason_and_never_the_token(vault):
    token = "s." + uuid.uuid4().hex
    bad = VaultTransit(vault.addr, token, "exceptao")
    with pytest.raises(KekError) as refused:
        bad.wrap(os.urandom(32))
    assert "permission denied" in str(refused.value) and token not in str(refused.value)
    assert token not in repr(bad)
    assert token not in repr(Settings(vault_addr=vault.addr, vault_token=token))

    down = VaultTransit("http://127.0.0.1:9", token, "exceptao")
    with pytest.raises(KekUnavailable, match="could not be reached") as unreachable:   # a KekError, a 503 in a request
        down.wrap(os.urandom(32))
    assert token not in str(unreachable.value)

    good = VaultTransit(vault.addr, vault.token, f"exceptao-{uuid.uuid4().hex[:8]}")
    wrapped = good.wrap(b"k" * 32)
    with pytest.raises(KekError, match="failed"):
        good.unwrap(wrapped[:-6] + b"AAAAAA")


def test_the_local_key_file_is_private_keeps_versions_and_refuses_what_it_did_not_wrap(tmp_path):
    kek = LocalKeyFile(tmp_path / "kek.keys")
    with pytest.raises(KekError, match="missing"):
        kek.unwrap(b"local:v1:" + os.urandom(60))
    wrapped = kek.wrap(b"k" * 32)
    assert (tmp_path / "kek.keys").stat().st_mode & 0o777 == 0o600
    assert kek.version_of(wrapped) == 1 and kek.unwrap(wrapped) == b"k" * 32

    assert kek.rotate() == 2
    assert kek.version_of(kek.wrap(b"k" * 32)) == 2 and kek.unwrap(wrapped) == b"k" * 32  # v1 still readable
    assert kek.version_of(kek.rewrap(wrapped)) == 2
    kek.forget_before(2)
    with pytest.raises(KekError, match="no longer holds version 1"):
        kek.unwrap(wrapped)

    with pytest.raises(KekError, match="failed authentication"):
        kek.unwrap(wrapped.replace(b"local:v1:", b"local:v2:"))
    (tmp_path / "kek.keys").chmod(0o644)
    with pytest.raises(KekError, match="0600"):
        LocalKeyFile(tmp_path / "kek.keys").wrap(b"k" * 32)
