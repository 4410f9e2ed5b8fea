"""`exceptao tenant import ARCHIVE`: a tenant's export restored into an empty, migrated database.

In this order, and nothing is written before the archive is checked:
1. the archive: every member listed in manifest.json with the size and
   SHA-256 it has, and no member that the manifest does not list;
2. the database: migrated, and holding no tenant with the archive's id or slug;
3. one transaction, as the administrator: the tenant row, then its tables,
   parents before the tables that refer to them (the target's own catalogue
   decides the order and the columns; names are never taken from the
   archive into SQL), the audit rows exactly as they were; new data keys made
   under this installation's key-encryption key with the exported keys' ids,
   and the evidence files encrypted with them into this object store;
4. still in that transaction: the chain walked and recomputed
   (app.audit.verify) and its head compared with the manifest's. Any
   mismatch rolls everything back (and deletes the objects stored).

The chain trigger (sql/0003) assigns seq, occurred_at and the hashes of
every inserted audit row, whatever the insert says; restoring the rows as
they were needs it off. It is ENABLE ALWAYS, so session_replication_role =
replica does not silence it: the import disables it with ALTER TABLE inside
its own transaction and enables it again before commit. That is safe: ALTER
TABLE takes an ACCESS EXCLUSIVE lock on audit_log until the transaction ends,
so no other session can append (or read) while it is off; a failure rolls
the ALTER back with everything else; and the rows so written are then
checked hash by hash (step 4), so the bypass cannot let in a row the trigger
would not have made. The append-only triggers stay on throughout.

What never left the old installation (app.tenant_export's docstring) is not
restored: users choose a new password (a reset) and enrol their second
factor again, API tokens are made anew. The import writes no event of its
own into the chain: the restored chain is the exported one, head included;
the next event continues it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import zipfile
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterator
from uuid import UUID

import asyncpg

from app.audit.verify import walk_range
from app.config import Settings
from app.crypto import stream
from app.crypto.kek import key_encryption_key
from app.crypto.keys import DataKey, binding
from app.db import set_tenant
from app.evidence import aad_for as evidence_aad
from app.storage import ObjectStore
from app.tenant_export import (FORMAT, MANIFEST, NOT_RESTORED, REFERENCES, TENANT_TABLES, describe, identifier,
                               parents_first)

BATCH = 1000
READ = 256 * 1024


class ImportRefused(Exception):
    """The archive or the database is not fit for the import; nothing was written."""


@dataclass
class Restored:
    tenant_id: UUID
    slug: str
    rows: dict[str, int] = field(default_factory=dict)
    evidence_files: int = 0
    chain_seq: int = 0
    chain_hash: str | None = None


def checked_manifest(archive: zipfile.ZipFile) -> dict:
    """The manifest, once every member matches it; ImportRefused naming the first that does not."""
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise ImportRefused("not a tenant export: it has no manifest.json") from None
    except ValueError:
        raise ImportRefused("manifest.json is not JSON") from None
    if manifest.get("format") != FORMAT:
        raise ImportRefused(f"unknown archive format {manifest.get('format')!r} (this version reads {FORMAT})")
    listed = {m["path"]: m for m in manifest["members"]}
    present = set(archive.namelist()) - {MANIFEST}
    if unlisted := sorted(present - set(listed)):
        raise ImportRefused(f"{unlisted[0]} is in the archive but not in its manifest")
    for path, member in listed.items():
        if path not in present:
            raise ImportRefused(f"{path} is in the manifest but not in the archive")
        digest, size = hashlib.sha256(), 0
        with archive.open(path) as source:
            while piece := source.read(READ):
                digest.update(piece)
                size += len(piece)
        if size != member["size"] or not hmac.compare_digest(digest.hexdigest(), member["sha256"]):
            raise ImportRefused(f"{path} does not match the manifest (size or SHA-256 differ): it was changed")
    return manifest


def rows_of(archive: zipfile.ZipFile, table: str) -> Iterator[dict]:
    """The rows of tables/<table>.json, one a line (the writer's layout), read as they come."""
    with archive.open(f"tables/{table}.json") as source:
        for raw in source:
            line = raw.decode("utf-8").strip().rstrip(",")
            if line not in ("[", "]", ""):
                yield json.loads(line)


def _batches(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _insert(conn: asyncpg.Connection, archive: zipfile.ZipFile, name: str, refers_to_itself: bool) -> int:
    table = await describe(conn, name)
    insertable = [c for c in table.columns if c not in table.generated]
    count = 0
    # A table referring to itself (org units under org units) goes in one statement: its
    # foreign keys are checked at the statement's end, whatever order the rows come in.
    for batch in _batches(rows_of(archive, name), 10**12 if refers_to_itself else BATCH):
        present = [c for c in insertable if c in batch[0]]
        columns = ", ".join(identifier(c) for c in present)
        await conn.execute(f"INSERT INTO {identifier(name)} ({columns}) SELECT {columns}"
                           f" FROM jsonb_populate_recordset(NULL::{identifier(name)}, $1::jsonb)",
                           json.dumps(batch, ensure_ascii=False))
        count += len(batch)
    return count


async def _new_keys(conn: asyncpg.Connection, archive: zipfile.ZipFile, settings: Settings,
                    tenant_id: UUID) -> dict[UUID, DataKey]:
    """A new data key for each exported one, with its id, wrapped by this installation's key-encryption key."""
    kek = key_encryption_key(settings)
    keys = {}
    for row in rows_of(archive, "tenant_key"):
        key = DataKey(UUID(row["id"]), secrets.token_bytes(32))
        wrapped = await asyncio.to_thread(kek.wrap, key.key)
        await conn.execute(
            "INSERT INTO tenant_key (tenant_id, id, wrapped, binding, kek_provider, kek_version, created_at,"
            " retired_at) VALUES ($1, $2, $3, $4, $5, $6, $7::text::timestamptz, $8::text::timestamptz)",
            tenant_id, key.id, wrapped, binding(key.key, tenant_id, key.id), kek.name, kek.version_of(wrapped),
            row["created_at"], row.get("retired_at"))
        keys[key.id] = key
    return keys


async def _member_chunks(archive: zipfile.ZipFile, path: str, expected_sha256: str) -> AsyncIterator[bytes]:
    digest = hashlib.sha256()
    with archive.open(path) as source:
        while piece := await asyncio.to_thread(source.read, READ):
            digest.update(piece)
            yield piece
    if digest.hexdigest() != expected_sha256:
        raise ImportRefused(f"{path} is not the file its evidence row names (SHA-256 differs)")


async def _store_evidence(archive: zipfile.ZipFile, store: ObjectStore, tenant_id: UUID, keys: dict[UUID, DataKey],
                          stored: list[str]) -> int:
    files = {path.split("/")[1]: path for path in archive.namelist() if path.startswith("evidence/")}
    for row in rows_of(archive, "evidence"):
        path = files.get(row["id"])
        if path is None:
            continue   # rejected in review, or left out of the export (the manifest says why)
        evidence_id = UUID(row["id"])
        sealed = stream.encrypt(keys[UUID(row["data_key_id"])],
                                _member_chunks(archive, path, row["sha256"].removeprefix("\\x")),
                                aad=evidence_aad(tenant_id, evidence_id))
        stored.append(row["object_name"])
        await store.put(row["object_name"], sealed)
    return len(stored)


async def _refuse_if_present(conn: asyncpg.Connection, tenant: dict) -> None:
    if not await conn.fetchval("SELECT to_regclass('public.tenant') IS NOT NULL"):
        raise ImportRefused("the database is not migrated: run `exceptao migrate` first")
    if await conn.fetchval("SELECT EXISTS (SELECT FROM tenant WHERE id = $1 OR slug = $2)",
                           UUID(tenant["id"]), tenant["slug"]):
        raise ImportRefused(f"tenant {tenant['slug']} (or its id) already exists in this database")


async def _check_chain(conn: asyncpg.Connection, tenant_id: UUID, head: dict) -> None:
    end = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM audit_log WHERE tenant_id = $1", tenant_id)
    walked = await walk_range(conn, tenant_id, 1, end, 5000, watch=frozenset([end]))
    if walked.broken_at is not None:
        raise ImportRefused(f"the restored chain does not verify: seq {walked.broken_at} ({walked.reason})")
    found = walked.seen.get(end)
    if end != head["seq"] or (found.hex() if found else None) != head["hash"]:
        raise ImportRefused(f"the restored chain's head (seq {end}) is not the manifest's (seq {head['seq']},"
                            f" {head['hash']})")


async def import_tenant(conn: asyncpg.Connection, store: ObjectStore, settings: Settings,
                        archive: zipfile.ZipFile) -> Restored:
    """Restore the archive's tenant on `conn` (an administrator connection); ImportRefused leaves nothing behind."""
    manifest = checked_manifest(archive)
    tenant = manifest["tenant"]
    await _refuse_if_present(conn, tenant)
    tenant_id = UUID(tenant["id"])
    restored = Restored(tenant_id, tenant["slug"])
    in_archive = {p.removeprefix("tables/").removesuffix(".json") for p in archive.namelist()
                  if p.startswith("tables/") and p.endswith(".json")}
    known = {"tenant"} | {r[0] for r in await conn.fetch(TENANT_TABLES)}
    if unknown := sorted(in_archive - known):
        raise ImportRefused(f"this database has no table {unknown[0]}: migrate it to the version that made the archive")
    edges = [(r[0], r[1]) for r in await conn.fetch(REFERENCES)]
    stored: list[str] = []
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_chain")
            await set_tenant(conn, tenant_id)
            keys: dict[UUID, DataKey] = {}
            for name in parents_first(sorted(in_archive), edges):
                if name in NOT_RESTORED:
                    continue
                if name == "tenant_key":
                    keys = await _new_keys(conn, archive, settings, tenant_id)
                    restored.rows[name] = len(keys)
                    continue
                restored.rows[name] = await _insert(conn, archive, name, (name, name) in edges)
            await conn.execute("ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_chain")
            # The credentials stayed behind: a second factor without its secret would lock the user out.
            await conn.execute("UPDATE app_user SET totp_enrolled_at = NULL, totp_key_id = NULL, totp_last_step = NULL"
                               " WHERE tenant_id = $1 AND totp_secret IS NULL", tenant_id)
            await _check_chain(conn, tenant_id, manifest["chain_head"])
            restored.evidence_files = await _store_evidence(archive, store, tenant_id, keys, stored)
    except BaseException:
        for name in stored:
            await store.delete(name)
        raise
    restored.chain_seq = manifest["chain_head"]["seq"]
    restored.chain_hash = manifest["chain_head"]["hash"]
    return restored
