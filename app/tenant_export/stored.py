"""A finished archive in object storage: encrypted with the tenant's key on the way in, checked whole on the way out.

The archive holds all of a tenant's personal data, so it is stored like
evidence: STREAM-encrypted (app.crypto.stream) under the tenant's current
data key, bound to its tenant and export id (an archive object cannot be
served as another export's or another tenant's), under a random name.

On the way out it is decrypted into a private temporary file while its
SHA-256 and size are recomputed; only when both match the row is a byte
sent (as app.evidence.deliver does, for the same reasons: a cut or changed
object shows only at its end).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import tempfile
from contextlib import aclosing
from typing import IO, AsyncIterator
from uuid import UUID

import asyncpg

from app.config import Settings
from app.crypto import Tampered, stream
from app.crypto.keys import UnknownKey, current_key, key_by_id
from app.db import tenant_transaction
from app.evidence.intake import spool_dir
from app.storage import ObjectMissing, ObjectStore, new_object_name
from app.tenant_export.requests import Export

READ = 256 * 1024


class NotServable(Exception):
    """The stored archive is gone or not what was made."""


def aad_for(tenant_id: UUID, export_id: UUID) -> bytes:
    return b"exceptao/tenant_export/v1" + tenant_id.bytes + export_id.bytes


def scratch_file(settings: Settings) -> IO[bytes]:
    """A private, unnamed temporary file under the data dir (gone when closed, or when the process dies)."""
    return tempfile.TemporaryFile(dir=spool_dir(settings.data_dir))


async def store_archive(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, tenant_id: UUID,
                        export_id: UUID, archive: IO[bytes]) -> tuple[str, int, bytes]:
    """Encrypt `archive` (read from its start) into the store: (object key, plaintext size, plaintext SHA-256)."""
    async with tenant_transaction(pool, tenant_id) as conn:
        key = await current_key(conn, settings)
    digest = hashlib.sha256()
    size = 0

    async def plaintext() -> AsyncIterator[bytes]:
        nonlocal size
        await asyncio.to_thread(archive.seek, 0)
        while piece := await asyncio.to_thread(archive.read, READ):
            digest.update(piece)
            size += len(piece)
            yield piece

    name = new_object_name("exports")
    await store.put(name, stream.encrypt(key, plaintext(), aad=aad_for(tenant_id, export_id)))
    return name, size, digest.digest()


async def opened_archive(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, tenant_id: UUID,
                         export: Export) -> IO[bytes]:
    """The decrypted archive in a temporary file at position 0, checked against the row; NotServable otherwise."""
    copy = scratch_file(settings)
    try:
        digest = hashlib.sha256()
        size = 0
        async with tenant_transaction(pool, tenant_id, readonly=True) as conn:
            async def lookup(key_id: UUID):
                return await key_by_id(conn, settings, key_id)

            async with (aclosing(store.get(export.object_key)) as sealed,
                        aclosing(stream.decrypt(lookup, sealed, aad=aad_for(tenant_id, export.id))) as plaintext):
                async for piece in plaintext:
                    size += len(piece)
                    if size > export.size:
                        raise NotServable("the stored archive is longer than the one made")
                    digest.update(piece)
                    await asyncio.to_thread(copy.write, piece)
        if size != export.size or not hmac.compare_digest(digest.digest(), export.sha256):
            raise NotServable("the stored archive is not the one made (size or SHA-256 differ)")
        await asyncio.to_thread(copy.flush)
        await asyncio.to_thread(copy.seek, 0)
        return copy
    except (Tampered, UnknownKey) as error:
        copy.close()
        raise NotServable(str(error)) from None
    except ObjectMissing:
        copy.close()
        raise NotServable("the stored archive is gone") from None
    except BaseException:
        copy.close()
        raise
