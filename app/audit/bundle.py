"""The audit bundle: a tenant's chain, anchors, tokens and the authority's certificates in one file.

What an auditor takes away to check the chain without us: every row with
exactly what its hash covers, every anchor with its RFC 3161 token, and the
certificates the tokens verify under. docs/audit-bundle.md specifies the
format; app/audit/offline.py checks it with no database.

One UTF-8 JSON Lines file, because any language reads it line by line and a
changed byte in a row stays in that row's line, where the verifier can name
its seq. It is written from one repeatable-read snapshot, read in batches, so
a chain of millions of rows streams in bounded memory and the file is one
consistent state. No personal data: audit_pii stays behind (the record keeps
only the salted commitment); only whether a row's actor was erased is said.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncIterator, Awaitable, BinaryIO, Callable
from uuid import UUID

import asyncpg
import orjson
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.audit.events import AuditAction, record
from app.db import tenant_transaction

FORMAT = "exceptao-audit-bundle"
VERSION = 1
ANCHOR_BATCH = 500

# The record's "at" exactly as the chain trigger hashed it (sql/0003_audit_chain.sql).
AT = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

HEAD = """
SELECT count(*) AS rows,
       (SELECT seq FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1) AS seq,
       (SELECT row_hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1) AS row_hash,
       (SELECT count(*) FROM audit_anchor WHERE tenant_id = $1) AS anchors
  FROM audit_log WHERE tenant_id = $1
"""
# Whether the actor was erased is a boolean of audit_pii; nothing else of it is read.
ROWS = f"""
SELECT l.seq, {AT.format("l.occurred_at")}, l.actor, l.action, l.target_type, l.target_id, l.data::text,
       l.pii_commitment, l.hash_v, l.prev_hash, l.row_hash, p.seq IS NOT NULL AND p.salt IS NULL
  FROM audit_log l
  LEFT JOIN audit_pii p ON p.tenant_id = l.tenant_id AND p.seq = l.seq
 WHERE l.tenant_id = $1 AND l.seq > $2
 ORDER BY l.seq
 LIMIT $3
"""
ANCHORS = f"""
SELECT anchored_at, {AT.format("anchored_at")}, kind, seq, row_hash, tsa_token, detail::text
  FROM audit_anchor
 WHERE tenant_id = $1 AND anchored_at > $2
 ORDER BY anchored_at
 LIMIT $3
"""
BEGINNING = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class BundleSummary:
    tenant_id: UUID
    rows: int
    head_seq: int | None
    head_hash: str | None  # hex
    anchors: int
    certificates: int


def _line(value: object) -> bytes:
    return orjson.dumps(value) + b"\n"


def _json(text: str | None) -> bytes:
    return b"null" if text is None else orjson.dumps(text)


def _row_line(tenant: bytes, row: asyncpg.Record) -> bytes:
    """One chain row: the record as hashed (data as stored), its links, and whether its actor was erased."""
    seq, at, actor, action, ttype, tid, data, pii, hash_v, prev_hash, row_hash, erased = row
    target = b"null" if ttype is None else b'{"type":%b,"id":%b}' % (_json(ttype), _json(tid))
    return (b'{"record":{"v":%d,"tenant":"%b","seq":%d,"at":"%b","actor":%b,"action":%b,"target":%b,'
            b'"data":%b,"pii":%b},"prev_hash":"%b","row_hash":"%b","erased":%b}\n') % (
        hash_v, tenant, seq, at.encode("ascii"), _json(actor), _json(action), target, data.encode("utf-8"),
        b"null" if pii is None else b'"%b"' % pii.hex().encode("ascii"),
        prev_hash.hex().encode("ascii"), row_hash.hex().encode("ascii"), b"true" if erased else b"false")


def token_certificates(token: bytes) -> list[bytes]:
    """The DER certificates a TimeStampToken carries (the signer's, when it was asked for).

    A token that cannot be parsed carries none: it still goes into the bundle,
    where the verifier reports it, rather than stopping the export.
    """
    try:
        signed = cms.ContentInfo.load(token)["content"]
        return [choice.chosen.dump() for choice in signed["certificates"] or [] if choice.name == "certificate"]
    except Exception:  # asn1crypto parses lazily and raises its own kinds
        return []


def _certificate_line(der: bytes, source: str) -> bytes:
    certificate = x509.load_der_x509_certificate(der)
    return _line({"certificate": certificate.public_bytes(Encoding.PEM).decode("ascii"), "source": source,
                  "subject": certificate.subject.rfc4514_string(), "sha256": hashlib.sha256(der).hexdigest()})


async def _anchor_batches(conn: asyncpg.Connection, tenant_id: UUID) -> AsyncIterator[list[asyncpg.Record]]:
    after = BEGINNING
    while rows := await conn.fetch(ANCHORS, tenant_id, after, ANCHOR_BATCH):
        yield rows
        after = rows[-1][0]


async def _certificates(conn: asyncpg.Connection, tenant_id: UUID, settings) -> list[tuple[bytes, str]]:
    """(DER, source) of the configured root file's certificates, then those inside the tokens, each once."""
    found: dict[bytes, str] = {}
    if settings.tsa_ca_file:
        pem = await asyncio.to_thread(settings.tsa_ca_file.read_bytes)
        for root in x509.load_pem_x509_certificates(pem):
            found.setdefault(root.public_bytes(Encoding.DER), "configured_root")
    async for rows in _anchor_batches(conn, tenant_id):
        for row in rows:
            if row["tsa_token"] is not None:
                for der in token_certificates(row["tsa_token"]):
                    found.setdefault(der, "token")
    return list(found.items())


def _anchor_line(row: asyncpg.Record) -> bytes:
    _, at, kind, seq, row_hash, token, detail = row
    return (b'{"anchor":{"kind":%b,"seq":%d,"row_hash":"%b","anchored_at":"%b","tsa_token":%b,"detail":%b}}\n' % (
        _json(kind), seq, row_hash.hex().encode("ascii"), at.encode("ascii"),
        b"null" if token is None else b'"%b"' % base64.b64encode(token), detail.encode("utf-8")))


async def stream_bundle(
    pool: asyncpg.Pool, tenant_id: UUID, settings, *,
    opened: Callable[[BundleSummary], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """The tenant's bundle in chunks (a header line, certificates, anchors, rows, an end line).

    `opened(summary)` is awaited once the snapshot is taken and before the
    first byte, e.g. to record who took the bundle and up to which seq.
    """
    tenant = str(tenant_id).encode("ascii")
    async with tenant_transaction(pool, tenant_id, isolation="repeatable_read", readonly=True) as conn:
        head = await conn.fetchrow(HEAD, tenant_id)
        certificates = await _certificates(conn, tenant_id, settings)
        summary = BundleSummary(tenant_id, head["rows"], head["seq"],
                                head["row_hash"].hex() if head["row_hash"] else None, head["anchors"],
                                len(certificates))
        if opened is not None:
            await opened(summary)
        yield _line({
            "format": FORMAT, "version": VERSION, "tenant": str(tenant_id),
            "exported_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "head": None if summary.head_seq is None else {"seq": summary.head_seq, "row_hash": summary.head_hash},
            "rows": summary.rows, "anchors": summary.anchors, "certificates": summary.certificates,
            "hash_rule": "row_hash = SHA-256(prev_hash || UTF-8(RFC 8785 JCS(record))); prev_hash of seq 1 = 32 zero bytes",
            "personal_data": "not included; the record's pii is a salted commitment that only the controller's data can check",
        })
        yield b"".join(_certificate_line(der, source) for der, source in certificates)
        async for rows in _anchor_batches(conn, tenant_id):
            yield b"".join(_anchor_line(row) for row in rows)
        after = 0
        while rows := await conn.fetch(ROWS, tenant_id, after, settings.verify_batch):
            yield b"".join(_row_line(tenant, row) for row in rows)
            after = rows[-1][0]
        yield _line({"end": {"rows": summary.rows, "anchors": summary.anchors, "certificates": summary.certificates}})


async def record_export(pool: asyncpg.Pool, tenant_id: UUID, actor: str, summary: BundleSummary) -> None:
    """On the record: who took the chain out, and up to which row."""
    async with tenant_transaction(pool, tenant_id) as conn:
        await record(conn, AuditAction.AUDIT_BUNDLE_EXPORT, actor=actor,
                     data={"head_seq": summary.head_seq, "head": summary.head_hash, "rows": summary.rows,
                           "anchors": summary.anchors})


async def write_bundle(pool: asyncpg.Pool, tenant_id: UUID, out: BinaryIO, settings) -> BundleSummary:
    """Write the tenant's bundle to `out` (binary, left open) and say what it holds."""
    kept: list[BundleSummary] = []

    async def keep(summary: BundleSummary) -> None:
        kept.append(summary)

    async for chunk in stream_bundle(pool, tenant_id, settings, opened=keep):
        await asyncio.to_thread(out.write, chunk)
    return kept[0]
