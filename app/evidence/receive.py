"""Taking a received file in: DLP scan, the tenant's policy, encryption into the object store, then the record.

Order, and why:
1. The file is complete in its spool (intake.py), with its SHA-256 and size.
2. The scanner reads the spool in a worker thread; the type is what the
   scanner found in the content, never the name's extension.
3. The tenant's policy decides on findings or an unscannable file: block
   (refused with 422, nothing stored; the refusal is audited with the kinds
   and counts), quarantine, or accept with a warning.
4. The tenant's data key is fetched (made on first use) in a short
   transaction of its own, so no connection is held during the upload.
5. The spool is encrypted chunk by chunk on its way into the store, bound
   to the tenant and the new evidence id (aad), under an opaque name.
6. Only then, in one transaction: the evidence row, its findings and the
   audit entries. If that fails, the object is deleted.
The spool is deleted at the end whatever happened. `take` is meant to run
shielded from the request's cancellation (a client that goes away after
sending the whole file): it either finishes or cleans up, never neither.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator
from uuid import UUID, uuid4

import asyncpg

from app.audit import AuditAction, Target, record
from app.audit.events import user_actor
from app.config import Settings
from app.crypto import stream
from app.crypto.keys import current_key
from app.db import tenant_transaction
from app.evidence import CLOSED_EXCEPTION_STATES, Evidence, Finding, Parent, aad_for, dlp_policy, get_evidence
from app.evidence.intake import Spool
from app.evidence.names import content_type_for
from app.storage import ObjectStore, new_object_name

log = logging.getLogger("exceptao.evidence")
READ_CHUNK = 1024 * 1024
SAMPLE_LIMIT = 200


class UploadRefused(Exception):
    """The upload is not taken; `status` and `message` say why, `findings` what the scanner found (masked)."""

    def __init__(self, status: int, message: str, findings: tuple[Finding, ...] = (), unscannable: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.findings = findings
        self.unscannable = unscannable


@dataclass(frozen=True)
class Uploader:
    tenant_id: UUID
    user_id: UUID
    may_submit: bool         # holds exception.submit
    may_manage_risks: bool   # holds risk.manage


@dataclass(frozen=True)
class Received:
    evidence: Evidence
    warning: bool            # accepted with a warning: findings or unscannable, shown to the uploader


async def check_may_upload(conn: asyncpg.Connection, uploader: Uploader, parent: Parent) -> None:
    """Who may add evidence: to an exception, its requester or its owner while its record is open, holding
    exception.submit (what requesters hold) or risk.manage (what owners of risks hold); to a risk, whoever holds
    risk.manage. Reviewers, approvers and auditors judge evidence, they do not supply it. What is not visible
    here is 404, as if absent."""
    if parent.kind == "exception":
        row = await conn.fetchrow("SELECT requester_id, owner_id, state FROM exception WHERE id = $1", parent.id)
        if row is None:
            raise UploadRefused(404, "There is no such exception.")
        if uploader.user_id not in (row["requester_id"], row["owner_id"]):
            raise UploadRefused(403, "Only the exception's requester or owner can add evidence to it.")
        if not (uploader.may_submit or uploader.may_manage_risks):
            raise UploadRefused(403, "Adding evidence to an exception needs exception.submit or risk.manage.")
        if row["state"] in CLOSED_EXCEPTION_STATES:
            raise UploadRefused(409, f"This exception is {row['state'].lower()}: its record is closed, "
                                     "evidence can no longer be added.")
    else:
        if not await conn.fetchval("SELECT EXISTS (SELECT FROM risk WHERE id = $1)", parent.id):
            raise UploadRefused(404, "There is no such risk.")
        if not uploader.may_manage_risks:
            raise UploadRefused(403, "Adding evidence to a risk needs risk.manage.")


def _scan(path: Path):
    from app.dlp import scan_path

    return scan_path(path)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as file:
        while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
            yield chunk


def _finding_data(findings: tuple[Finding, ...]) -> dict:
    return {f.kind: f.count for f in findings}


async def take(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, uploader: Uploader, parent: Parent,
               filename: str, spool: Spool) -> Received:
    """Scan, decide, encrypt, store and record one received file; UploadRefused when it is not taken."""
    try:
        scan = await asyncio.to_thread(_scan, spool.path)
        findings = tuple(Finding(f.kind, f.count, f.sample[:SAMPLE_LIMIT]) for f in scan.findings)
        flagged = bool(findings or scan.unscannable)
        receipt = {**parent.audit_data, "sha256": spool.sha256.hex(), "size": spool.size,
                   "file_type": scan.file_type, "findings": _finding_data(findings)}
        if scan.unscannable:
            receipt["unscannable"] = scan.unscannable[:200]
        async with tenant_transaction(pool, uploader.tenant_id) as conn:
            await check_may_upload(conn, uploader, parent)
            policy = await dlp_policy(conn)
            if flagged and policy == "block":
                await record(conn, AuditAction.EVIDENCE_BLOCK, actor=user_actor(uploader.user_id),
                             target=Target(parent.kind, str(parent.id)), data=receipt)
            else:
                key = await current_key(conn, settings)
        if flagged and policy == "block":
            raise UploadRefused(422, "This file was refused: this workspace blocks files in which the scanner finds "
                                     "personal or payment data, or which it cannot read. Nothing was stored.",
                                findings, scan.unscannable)
        state = "quarantined" if flagged and policy == "quarantine" else "stored"
        evidence_id = uuid4()
        name = new_object_name("evidence")
        sealed = stream.encrypt(key, _chunks(spool.path), aad=aad_for(uploader.tenant_id, evidence_id))
        await store.put(name, sealed)
        try:
            async with tenant_transaction(pool, uploader.tenant_id) as conn:
                evidence = await _record(conn, uploader, parent, evidence_id, filename, scan, findings, state,
                                         spool, name, key.id, receipt)
        except BaseException:
            await _delete_quietly(store, name)
            raise
        return Received(evidence, warning=flagged and state == "stored")
    finally:
        await asyncio.to_thread(spool.discard)


async def _record(conn, uploader: Uploader, parent: Parent, evidence_id: UUID, filename: str, scan, findings,
                  state: str, spool: Spool, name: str, key_id: UUID, receipt: dict) -> Evidence:
    await conn.execute(
        """
        INSERT INTO evidence (tenant_id, id, exception_id, risk_id, filename, content_type, file_type, size, sha256,
                              object_name, data_key_id, state, unscannable, uploaded_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        """,
        uploader.tenant_id, evidence_id, parent.id if parent.kind == "exception" else None,
        parent.id if parent.kind == "risk" else None, filename, content_type_for(scan.file_type),
        (scan.file_type or "unknown")[:40], spool.size, spool.sha256, name, key_id, state,
        scan.unscannable[:500] if scan.unscannable else None, uploader.user_id)
    await conn.executemany(
        "INSERT INTO evidence_finding (tenant_id, evidence_id, kind, count, sample) VALUES ($1, $2, $3, $4, $5)",
        [(uploader.tenant_id, evidence_id, f.kind, f.count, f.sample) for f in findings])
    actor = user_actor(uploader.user_id)
    target = Target("evidence", str(evidence_id))
    await record(conn, AuditAction.EVIDENCE_UPLOAD, actor=actor, target=target, data={**receipt, "state": state})
    for finding in findings:
        await record(conn, AuditAction.EVIDENCE_FINDING, actor=actor, target=target,
                     data={"kind": finding.kind, "count": finding.count})
    return await get_evidence(conn, evidence_id)


async def _delete_quietly(store: ObjectStore, name: str) -> None:
    """Remove an object whose row could not be written; if even that fails, say so loudly (an orphan)."""
    try:
        await asyncio.shield(store.delete(name))
    except Exception:
        log.error("evidence object %s was stored but not recorded, and could not be deleted: remove it by hand",
                  name, exc_info=True)
