"""The tenant-export job: writes the archives administrators asked for, one at a time, and drops expired ones.

Every minute, tenant by tenant: an export still 'running' from a run that
died is marked failed (the job's advisory lock means no other run is at
it); then each queued export is claimed (FOR UPDATE SKIP LOCKED), written
(app.tenant_export.archive) into a private temporary file with its progress
saved after every table and file, encrypted into object storage, and marked
done, or failed with the reason. An export that fails fails the run too, so
the operators hear of it (app.jobs alerts) as well as the administrator who
sees it on the screen. Archives past their expiry are deleted from storage.
"""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

import asyncpg

from app.config import Settings
from app.db import tenant_transaction
from app.storage import ObjectStore, open_store
from app.tenant_export import requests
from app.tenant_export.archive import write_archive
from app.tenant_export.stored import scratch_file, store_archive

log = logging.getLogger(__name__)


class ExportFailed(RuntimeError):
    pass


async def export_tenant(pool: asyncpg.Pool, tenant_id: UUID, now: datetime, settings: Settings) -> dict[str, int]:
    async with tenant_transaction(pool, tenant_id) as conn:
        interrupted = await requests.fail_interrupted(conn)
        busy = await requests.has_work(conn, now)
    if not busy:
        # Most tenants, most minutes: one short transaction, and no connection to the object store.
        return {"exports_interrupted": interrupted}
    store = open_store(settings)
    try:
        made, failed = 0, []
        while True:
            async with tenant_transaction(pool, tenant_id) as conn:
                export_id = await requests.claim_next(conn)
            if export_id is None:
                break
            try:
                await produce(pool, store, settings, tenant_id, export_id, now)
                made += 1
            except Exception as exc:
                log.exception("tenant export %s failed", export_id)
                async with tenant_transaction(pool, tenant_id) as conn:
                    await requests.fail(conn, export_id, f"{type(exc).__name__}: {exc}")
                failed.append(export_id)
        expired = await drop_expired(pool, store, tenant_id, now)
    finally:
        await store.close()
    if failed:
        raise ExportFailed(f"{len(failed)} export(s) failed, first {failed[0]} (its reason is on the export)")
    return {"exports_made": made, "exports_interrupted": interrupted, "exports_expired": expired}


async def produce(pool: asyncpg.Pool, store: ObjectStore, settings: Settings, tenant_id: UUID, export_id: UUID,
                  now: datetime) -> None:
    steps = {"total": 0}

    async def progress(step: str, done: int, total: int) -> None:
        steps["total"] = total
        async with tenant_transaction(pool, tenant_id) as conn:
            await requests.set_progress(conn, export_id, step, done, total)

    with scratch_file(settings) as archive:
        manifest = await write_archive(pool, store, settings, tenant_id, archive, progress)
        await progress("storing", steps["total"], steps["total"] + 1)
        name, size, sha256 = await store_archive(pool, store, settings, tenant_id, export_id, archive)
    head = manifest.chain_head
    try:
        async with tenant_transaction(pool, tenant_id) as conn:
            await requests.finish(conn, export_id, object_key=name, size=size, sha256=sha256, chain_seq=head["seq"],
                                  chain_hash=bytes.fromhex(head["hash"]) if head["hash"] else None, now=now)
    except BaseException:
        await store.delete(name)   # no stored archive that no row names
        raise


async def drop_expired(pool: asyncpg.Pool, store: ObjectStore, tenant_id: UUID, now: datetime) -> int:
    async with tenant_transaction(pool, tenant_id) as conn:
        gone = await requests.expired(conn, now)
        for export_id, name in gone:
            await store.delete(name)
            await requests.forget_object(conn, export_id)
    return len(gone)
