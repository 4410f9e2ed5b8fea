"""Writing one tenant's export archive (the format is in app.tenant_export's docstring).

Everything is streamed: rows come through a server-side cursor and go into
the ZIP member as they come, evidence files are decrypted into a checked
temporary copy one at a time (app.evidence.deliver.verified_copy, the same
check a download gets), and the archive itself is written to a file the
caller gives. Nothing holds a whole table or a whole file in memory.

The tables and the chain head are read in one repeatable-read snapshot, so
manifest.json's head is the last row of tables/audit_log.json. Rows are read
as the app role in a tenant transaction: row-level security, not a WHERE
clause, is what keeps other tenants' rows out.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Awaitable, Callable
from uuid import UUID

import asyncpg

from app.config import Settings
from app.db import tenant_transaction
from app.evidence import get_evidence
from app.evidence.deliver import Mismatch, verified_copy
from app.storage import ObjectStore
from app.tenant_export import FORMAT, MANIFEST, Table, exported_tables, identifier, left_out_summary

log = logging.getLogger("exceptao.tenant_export")

FLUSH = 256 * 1024
CURSOR_PREFETCH = 500

# step, done, total: what the polling fragment shows.
Progress = Callable[[str, int, int], Awaitable[None]]


@dataclass
class Manifest:
    tenant: dict
    made_at: str
    chain_head: dict
    members: list[dict] = field(default_factory=list)
    evidence_not_included: list[dict] = field(default_factory=list)
    audit_bundle: str | None = None

    def as_json(self) -> dict:
        return {"format": FORMAT, "tenant": self.tenant, "made_at": self.made_at, "chain_head": self.chain_head,
                "members": self.members, "left_out": left_out_summary(),
                "evidence_not_included": self.evidence_not_included, "audit_bundle": self.audit_bundle}


class _Member:
    """One file of the archive, written in pieces; its size and SHA-256 are taken on the way in."""

    def __init__(self, archive: zipfile.ZipFile, path: str):
        self.path = path
        self._handle = archive.open(path, "w", force_zip64=True)
        self._digest = hashlib.sha256()
        self._size = 0
        self._pending = bytearray()

    async def write(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= FLUSH:
            await self._flush()

    async def _flush(self) -> None:
        piece = bytes(self._pending)
        self._pending.clear()
        self._digest.update(piece)
        self._size += len(piece)
        await asyncio.to_thread(self._handle.write, piece)

    async def close(self) -> dict:
        await self._flush()
        await asyncio.to_thread(self._handle.close)
        return {"path": self.path, "size": self._size, "sha256": self._digest.hexdigest()}


class _Number(str):
    """A JSON number as written: the CSV shows what the JSON holds, not a float's rounding."""


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Number):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # Text a spreadsheet would run as a formula is quoted with a leading ' (as app.exceptions.query.to_csv does).
    return "'" + value if value[:1] in _FORMULA_STARTS else value


def _csv_line(values: list) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([_csv_value(v) for v in values])
    return out.getvalue().encode("utf-8")


def _select(table: Table) -> str:
    order = ", ".join(identifier(c) for c in table.order_by)
    where = " WHERE t.id = $2" if table.name == "tenant" else ""
    return (f"SELECT (to_jsonb(t) - $1::text[])::text FROM {identifier(table.name)} AS t{where}"
            + (f" ORDER BY {order}" if order else ""))


async def _write_table(conn: asyncpg.Connection, archive: zipfile.ZipFile, table: Table, tenant_id: UUID) -> list[dict]:
    as_json = _Member(archive, f"tables/{table.name}.json")
    await as_json.write(b"[")
    # Each member is open on its own: ZipFile writes one member at a time, so the CSV is kept in a
    # temporary file while the JSON is written and added after it.
    with tempfile.TemporaryFile() as csv_copy:
        await asyncio.to_thread(csv_copy.write, _csv_line(list(table.columns)))
        args = [list(table.left_out)] + ([tenant_id] if table.name == "tenant" else [])
        first = True
        pending = bytearray()
        async for (text,) in conn.cursor(_select(table), *args, prefetch=CURSOR_PREFETCH):
            await as_json.write((b"\n" if first else b",\n") + text.encode("utf-8"))
            first = False
            row = json.loads(text, parse_float=_Number, parse_int=_Number)
            pending += _csv_line([row.get(c) for c in table.columns])
            if len(pending) >= FLUSH:
                await asyncio.to_thread(csv_copy.write, bytes(pending))
                pending.clear()
        await asyncio.to_thread(csv_copy.write, bytes(pending))
        await as_json.write(b"\n]\n")
        entries = [await as_json.close()]
        await asyncio.to_thread(csv_copy.seek, 0)
        as_csv = _Member(archive, f"tables/{table.name}.csv")
        while piece := await asyncio.to_thread(csv_copy.read, FLUSH):
            await as_csv.write(piece)
        entries.append(await as_csv.close())
    return entries


async def _copy_into(archive: zipfile.ZipFile, path: str, source: IO[bytes]) -> dict:
    member = _Member(archive, path)
    try:
        while piece := await asyncio.to_thread(source.read, FLUSH):
            await member.write(piece)
    finally:
        source.close()
    return await member.close()


async def _write_evidence(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, tenant_id: UUID,
                          conn: asyncpg.Connection, archive: zipfile.ZipFile, manifest: Manifest,
                          ids: list[UUID], progress: Progress, base: int, total: int) -> None:
    for done, evidence_id in enumerate(ids, 1):
        evidence = await get_evidence(conn, evidence_id)
        try:
            copy = await verified_copy(pool, store, settings, tenant_id, evidence)
        except Mismatch as mismatch:
            # Left out and said so in the manifest; the evidence row (with its SHA-256) is in tables/evidence.*.
            log.warning("tenant export: evidence %s of tenant %s left out (%s)", evidence_id, tenant_id,
                        mismatch.reason)
            manifest.evidence_not_included.append({"id": str(evidence_id), "reason": mismatch.reason,
                                                   "detail": mismatch.detail})
        else:
            manifest.members.append(await _copy_into(archive, f"evidence/{evidence_id}/{evidence.filename}", copy))
        await progress("evidence", base + done, total)


async def _write_bundle(pool: asyncpg.Pool, settings: Settings, tenant_id: UUID, archive: zipfile.ZipFile,
                        manifest: Manifest) -> None:
    try:
        from app.audit.bundle import write_bundle
    except ImportError:
        # The offline-verifiable audit bundle (issue 7, section 4) is not in this version yet.
        manifest.audit_bundle = None
        return
    name = "audit/bundle.jsonl"
    with tempfile.TemporaryFile() as bundle:
        await write_bundle(pool, tenant_id, bundle, settings)
        await asyncio.to_thread(bundle.seek, 0)
        member = _Member(archive, name)
        while piece := await asyncio.to_thread(bundle.read, FLUSH):
            await member.write(piece)
        manifest.members.append(await member.close())
    manifest.audit_bundle = name


async def _nothing(step: str, done: int, total: int) -> None:
    return None


async def write_archive(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, tenant_id: UUID,
                        out: IO[bytes], progress: Progress = _nothing) -> Manifest:
    """Write the tenant's archive into `out` (a binary file open for writing); its manifest."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        async with tenant_transaction(pool, tenant_id, isolation="repeatable_read", readonly=True) as conn:
            tables = await exported_tables(conn)
            tenant = await conn.fetchrow("SELECT id, slug, name FROM tenant WHERE id = $1", tenant_id)
            head = await conn.fetchrow("SELECT seq, row_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            evidence_ids = [r[0] for r in await conn.fetch(
                "SELECT id FROM evidence WHERE state <> 'rejected' ORDER BY uploaded_at, id")]
            manifest = Manifest(
                {"id": str(tenant["id"]), "slug": tenant["slug"], "name": tenant["name"]},
                datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                {"seq": head["seq"] if head else 0, "hash": bytes(head["row_hash"]).hex() if head else None})
            total = len(tables) + len(evidence_ids) + 1
            for done, table in enumerate(tables, 1):
                manifest.members += await _write_table(conn, archive, table, tenant_id)
                await progress("tables", done, total)
            await _write_evidence(pool, store, settings, tenant_id, conn, archive, manifest, evidence_ids, progress,
                                  len(tables), total)
        await _write_bundle(pool, settings, tenant_id, archive, manifest)
        await progress("audit", total, total)
        body = json.dumps(manifest.as_json(), ensure_ascii=False, indent=1).encode("utf-8")
        await asyncio.to_thread(archive.writestr, MANIFEST, body)
    return manifest
