"""Rotating the key-encryption key: a new version, then every tenant's data keys rewrapped under it.

Files are not touched: they are encrypted under data keys, which do not
change; only the wrapping of each data key does. Vault rewraps without the data
key ever leaving Vault; the local key file unwraps and wraps in this process.
A data key still wrapped by the other provider (moving from the embedded key
file to Vault) is moved across the same way.

Each tenant's keys are rewrapped in one transaction with an event in its
audit chain naming the key ids and versions (never key material). A tenant
whose keys cannot be rewrapped is reported and left as it was, readable under
its old version; old local-file versions are dropped only once no key refers
to them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from app.audit import AuditAction, Target, record
from app.audit.events import system_actor
from app.config import Settings
from app.crypto.kek import KekError, KeyEncryptionKey, key_encryption_key, key_encryption_key_named
from app.crypto.keys import ROTATION_LOCK
from app.db import set_tenant


@dataclass
class Rotation:
    provider: str
    version: int
    rewrapped: int = 0
    tenants: int = 0
    failed: dict[UUID, str] = field(default_factory=dict)  # tenant id -> why
    old_versions_dropped: bool = False


async def rotate_kek(admin: asyncpg.Connection, settings: Settings, *, actor: str = system_actor("cli")) -> Rotation:
    """Rotate the configured key-encryption key and rewrap every data key under the new version.

    `admin` is an administrator connection (the app role cannot update keys).
    One rotation at a time; new data keys wait for it to finish.
    """
    kek = key_encryption_key(settings)
    await admin.execute("SELECT pg_advisory_lock($1)", ROTATION_LOCK)
    try:
        rotation = Rotation(kek.name, await asyncio.to_thread(kek.rotate))
        tenants = await admin.fetch("SELECT DISTINCT tenant_id FROM tenant_key ORDER BY tenant_id")
        for tenant in tenants:
            tenant_id = tenant["tenant_id"]
            try:
                rotation.rewrapped += await _rewrap_tenant(admin, settings, kek, rotation.version, tenant_id, actor)
                rotation.tenants += 1
            except KekError as exc:
                rotation.failed[tenant_id] = str(exc)
        left = await admin.fetchval(
            "SELECT count(*) FROM tenant_key WHERE kek_provider <> $1 OR kek_version <> $2", kek.name, rotation.version)
        if left == 0:
            rotation.old_versions_dropped = await asyncio.to_thread(kek.forget_before, rotation.version)
        return rotation
    finally:
        await admin.execute("SELECT pg_advisory_unlock($1)", ROTATION_LOCK)


async def _rewrap_tenant(admin: asyncpg.Connection, settings: Settings, kek: KeyEncryptionKey, version: int,
                         tenant_id: UUID, actor: str) -> int:
    async with admin.transaction():
        await set_tenant(admin, tenant_id)
        rows = await admin.fetch(
            "SELECT id, wrapped, kek_provider, kek_version FROM tenant_key WHERE tenant_id = $1 ORDER BY created_at"
            " FOR UPDATE", tenant_id)
        keys = []
        for row in rows:
            wrapped = await asyncio.to_thread(_rewrapped, settings, kek, row["kek_provider"], bytes(row["wrapped"]))
            now = kek.version_of(wrapped)
            await admin.execute(
                "UPDATE tenant_key SET wrapped = $2, kek_provider = $3, kek_version = $4, rewrapped_at = now()"
                " WHERE id = $1", row["id"], wrapped, kek.name, now)
            keys.append({"key": str(row["id"]), "from": {"kek": row["kek_provider"], "version": row["kek_version"]},
                         "to": {"kek": kek.name, "version": now}})
        await record(admin, AuditAction.KEY_ROTATE, actor=actor, target=Target("tenant", str(tenant_id)),
                     data={"kek": kek.name, "version": version, "keys": keys})
    return len(keys)


def _rewrapped(settings: Settings, kek: KeyEncryptionKey, provider: str, wrapped: bytes) -> bytes:
    if provider == kek.name:
        return kek.rewrap(wrapped)
    return kek.wrap(key_encryption_key_named(settings, provider).unwrap(wrapped))
