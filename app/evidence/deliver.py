"""Handing a stored file back: decrypted and checked whole before its first byte leaves.

A change to a stored object shows only at its end: a cut tail fails the
final chunk's tag, a wrong SHA-256 is known after the last byte. Streaming
while decrypting would have sent most of a bad file by then. So the file is
decrypted into a private, unnamed temporary file (gone when closed, or when
the process dies) while its SHA-256 and size are recomputed; only when both
match the row written at upload is the copy streamed out.

Why not verify in one pass and stream in a second: the object would be read
twice, and what the second read returns is not what the first one checked
(a change between the two would be served). One read, one verified copy,
and the bytes served are exactly the bytes checked. The cost is local disk
for the seconds of a download, under the data dir like the upload spool.

A mismatch (the tag, the hash, the size, the object or its key gone) is a
`Mismatch`: the caller answers 409, and `record_mismatch` writes the audit
entry and raises the alert.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import tempfile
from contextlib import aclosing
from typing import IO, AsyncIterator
from uuid import UUID

import asyncpg

from app.audit import AuditAction, Target, record
from app.audit.events import user_actor
from app.config import Settings
from app.crypto import Tampered, stream
from app.crypto.keys import UnknownKey, key_by_id
from app.db import tenant_transaction
from app.evidence import Evidence, aad_for
from app.evidence.intake import spool_dir
from app.storage import ObjectMissing, ObjectStore

log = logging.getLogger("exceptao.evidence")
SEND_CHUNK = 256 * 1024


class Mismatch(Exception):
    """The stored file is not what was uploaded. `reason`: tampered, sha256, size, missing_object or missing_key."""

    def __init__(self, reason: str, detail: str, computed_sha256: str | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.computed_sha256 = computed_sha256


async def verified_copy(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, tenant_id: UUID,
                        evidence: Evidence) -> IO[bytes]:
    """The plaintext in a temporary file, at position 0, checked against the row; Mismatch otherwise."""
    async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
        try:
            key = await key_by_id(conn, settings, evidence.data_key_id)
        except UnknownKey:
            raise Mismatch("missing_key", f"data key {evidence.data_key_id} is gone") from None
        except Tampered as error:
            raise Mismatch("tampered", str(error)) from None
    copy = tempfile.TemporaryFile(dir=spool_dir(settings.data_dir))
    try:
        digest = hashlib.sha256()
        size = 0
        async with (aclosing(store.get(evidence.object_name)) as sealed,
                    aclosing(stream.decrypt(key, sealed, aad=aad_for(tenant_id, evidence.id))) as plaintext):
            async for piece in plaintext:
                size += len(piece)
                if size > evidence.size:
                    raise Mismatch("size", f"the stored file is longer than the {evidence.size} bytes uploaded")
                digest.update(piece)
                await asyncio.to_thread(copy.write, piece)
        computed = digest.digest()
        if size != evidence.size:
            raise Mismatch("size", f"the stored file has {size} bytes, {evidence.size} were uploaded", computed.hex())
        if not hmac.compare_digest(computed, evidence.sha256):
            raise Mismatch("sha256", "the SHA-256 of the stored file differs from the one taken on receipt",
                           computed.hex())
        await asyncio.to_thread(copy.flush)
        await asyncio.to_thread(copy.seek, 0)
        return copy
    except Tampered as error:
        copy.close()
        raise Mismatch("tampered", str(error)) from None
    except ObjectMissing:
        copy.close()
        raise Mismatch("missing_object", "the stored object is gone") from None
    except BaseException:
        copy.close()
        raise


async def send(copy: IO[bytes]) -> AsyncIterator[bytes]:
    """The verified copy as response chunks; closed (and so deleted) when sent or when the client leaves."""
    try:
        while chunk := await asyncio.to_thread(copy.read, SEND_CHUNK):
            yield chunk
    finally:
        copy.close()


async def record_download(conn: asyncpg.Connection, user_id: UUID, evidence: Evidence) -> None:
    await record(conn, AuditAction.EVIDENCE_DOWNLOAD, actor=user_actor(user_id), target=Target("evidence", str(evidence.id)),
                 data={**evidence.parent.audit_data, "sha256": evidence.sha256_hex, "size": evidence.size,
                       "state": evidence.state})


async def record_mismatch(pool: asyncpg.Pool, tenant_id: UUID, user_id: UUID, evidence: Evidence,
                          mismatch: Mismatch) -> None:
    """The alert and the audit entry of a stored file that is not what was uploaded.

    There is no operator alert channel in the product yet: the alert is a
    CRITICAL log record on the `exceptao.evidence` logger (what a log
    shipper pages on), with the tenant and evidence ids and the reason.
    """
    log.critical("evidence %s of tenant %s does not match what was uploaded (%s: %s); nothing was served",
                 evidence.id, tenant_id, mismatch.reason, mismatch.detail)
    data = {**evidence.parent.audit_data, "reason": mismatch.reason, "recorded_sha256": evidence.sha256_hex,
            "size": evidence.size}
    if mismatch.computed_sha256:
        data["computed_sha256"] = mismatch.computed_sha256
    async with tenant_transaction(pool, tenant_id) as conn:
        await record(conn, AuditAction.EVIDENCE_MISMATCH, actor=user_actor(user_id),
                     target=Target("evidence", str(evidence.id)), data=data)
