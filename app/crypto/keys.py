"""Tenant data keys: one AES-256 key per tenant, made on first use, stored only wrapped (sql/0014_tenant_keys.sql).

Rows live under forced row-level security, so a tenant transaction sees its
own tenant's keys and no other's. The caller owns the transaction: a key made
on first use commits with whatever it first encrypted.

Unwrapped keys are kept in this process for at most five minutes and 256
keys: without that every TOTP check and every evidence download would wait on
Vault, and with it a key revoked in Vault stops working here within minutes.
The cache is consulted only after the key's row was read in the caller's
tenant transaction (it is keyed by tenant, key id and the wrapped bytes), so it
never hands one tenant a key its own row does not name. Keys are never
written anywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import asyncpg

from app.audit import AuditAction, Target, record
from app.audit.events import system_actor
from app.config import Settings
from app.crypto import Tampered
from app.crypto.kek import key_encryption_key, key_encryption_key_named

# Taken shared by whoever wraps a new data key, exclusively by a rotation: a
# key wrapped under the old version cannot slip in while a rotation finishes.
ROTATION_LOCK = 0x4B454B52  # "KEKR"

CACHE_SECONDS = 300
CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class DataKey:
    id: UUID
    key: bytes = field(repr=False)


class UnknownKey(LookupError):
    """No data key of that id for the current tenant."""


_COLUMNS = "tenant_id, id, wrapped, binding, kek_provider, kek_version"
_cache: OrderedDict[tuple[UUID, UUID, bytes], tuple[float, DataKey]] = OrderedDict()


def binding(key: bytes, tenant_id: UUID, key_id: UUID) -> bytes:
    """What ties a data key to its tenant and id; stored beside the wrapped key, checked after each unwrap."""
    return hmac.new(key, b"exceptao/tenant_key/v1" + tenant_id.bytes + key_id.bytes, hashlib.sha256).digest()


async def current_key(conn: asyncpg.Connection, settings: Settings) -> DataKey:
    """The current tenant's data key, made and wrapped on first use. `conn` is in a tenant transaction."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tenant_key WHERE retired_at IS NULL")
    if row is None:
        return await _first_key(conn, settings)
    return await _unwrapped(settings, row)


async def key_by_id(conn: asyncpg.Connection, settings: Settings, key_id: UUID) -> DataKey:
    """One of the current tenant's data keys, retired or not; UnknownKey if this tenant has none of that id."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tenant_key WHERE id = $1", key_id)
    if row is None:
        raise UnknownKey(f"no data key {key_id} for this tenant")
    return await _unwrapped(settings, row)


async def _first_key(conn: asyncpg.Connection, settings: Settings) -> DataKey:
    tenant_id = await conn.fetchval("SELECT app_current_tenant()")
    if tenant_id is None:
        raise RuntimeError("a data key belongs to a tenant: call current_key inside a tenant transaction")
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", ROTATION_LOCK)
    kek = key_encryption_key(settings)
    key = DataKey(uuid4(), secrets.token_bytes(32))
    wrapped = await asyncio.to_thread(kek.wrap, key.key)
    # A first use racing this one waits here for it, then finds its key instead.
    made = await conn.fetchrow(
        f"""
        INSERT INTO tenant_key (tenant_id, id, wrapped, binding, kek_provider, kek_version)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_id) WHERE retired_at IS NULL DO NOTHING
        RETURNING {_COLUMNS}
        """,
        tenant_id, key.id, wrapped, binding(key.key, tenant_id, key.id), kek.name, kek.version_of(wrapped),
    )
    if made is None:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tenant_key WHERE retired_at IS NULL")
        if row is None:
            raise RuntimeError("another transaction made this tenant's data key but it cannot be seen (isolation level"
                               " above READ COMMITTED?)")
        return await _unwrapped(settings, row)
    await record(conn, AuditAction.KEY_CREATE, actor=system_actor("crypto"), target=Target("tenant_key", str(key.id)),
                 data={"kek": made["kek_provider"], "version": made["kek_version"]})
    _remember((tenant_id, key.id, wrapped), key)
    return key


async def _unwrapped(settings: Settings, row: asyncpg.Record) -> DataKey:
    now = time.monotonic()
    for stale in [slot for slot, (until, _) in _cache.items() if until <= now]:
        del _cache[stale]
    slot = (row["tenant_id"], row["id"], bytes(row["wrapped"]))
    cached = _cache.get(slot)
    if cached is not None:
        _cache.move_to_end(slot)
        return cached[1]
    kek = key_encryption_key_named(settings, row["kek_provider"])
    key = DataKey(row["id"], await asyncio.to_thread(kek.unwrap, slot[2]))
    if not hmac.compare_digest(binding(key.key, row["tenant_id"], row["id"]), row["binding"]):
        raise Tampered(f"data key {row['id']} is not bound to this tenant: its row was copied or changed")
    _remember(slot, key)
    return key


def _remember(slot: tuple[UUID, UUID, bytes], key: DataKey) -> None:
    _cache[slot] = (time.monotonic() + CACHE_SECONDS, key)
    _cache.move_to_end(slot)
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)


def forget_keys() -> None:
    """Drop every unwrapped key this process holds (tests, and after a rotation in the same process)."""
    _cache.clear()
