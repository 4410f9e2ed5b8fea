"""`exceptao tenant export --tenant SLUG --out FILE` and `exceptao tenant import ARCHIVE`, for operators.

The export is the screen's archive (same writer), written to a local file
instead of object storage: the operator handling a written request under DPA
9.1 hands it over. It is recorded in the tenant's chain like any export. The
import is app.tenant_export.restore; it prints one line of JSON and exits 0,
or the reason and 1 (nothing written).
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

from app.config import Settings


async def export_to_file(settings: Settings, slug: str, out: Path) -> int:
    from app.audit import AuditAction, Target, record
    from app.audit.events import system_actor
    from app.db import open_pool, tenant_transaction
    from app.storage import open_store
    from app.tenant_export.archive import write_archive
    from app.tenants import tenant_by_slug

    pool = await open_pool(settings)
    store = open_store(settings)
    try:
        tenant = await tenant_by_slug(pool, slug.lower())
        if tenant is None:
            print(f"no tenant {slug!r}", file=sys.stderr)
            return 2
        # Written under a temporary name, renamed when whole: a half-written archive never looks finished.
        partial = out.with_name(out.name + ".partial")
        try:
            with partial.open("wb") as file:
                manifest = await write_archive(pool, store, settings, tenant.id, file)
            async with tenant_transaction(pool, tenant.id) as conn:
                await record(conn, AuditAction.TENANT_EXPORT_DONE, actor=system_actor("cli"),
                             target=Target("tenant", str(tenant.id)),
                             data={"chain_seq": manifest.chain_head["seq"], "members": len(manifest.members),
                                   "by": "command"})
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(out)
    finally:
        await store.close()
        await pool.close()
    print(json.dumps({"archive": str(out), "tenant": manifest.tenant["slug"], "members": len(manifest.members),
                      "chain_head": manifest.chain_head,
                      "evidence_not_included": len(manifest.evidence_not_included)}))
    return 0


async def import_from_file(settings: Settings, path: Path) -> int:
    import asyncpg

    from app.storage import open_store
    from app.tenant_export.restore import ImportRefused, import_tenant

    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        print(f"tenant not imported: {path} cannot be read as a ZIP archive ({error})", file=sys.stderr)
        return 1
    store = open_store(settings)
    conn = await asyncpg.connect(settings.database_url)
    try:
        with archive:
            restored = await import_tenant(conn, store, settings, archive)
    except ImportRefused as refusal:
        print(f"tenant not imported: {refusal}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
        await store.close()
    print(json.dumps({"tenant": restored.slug, "id": str(restored.tenant_id), "rows": restored.rows,
                      "evidence_files": restored.evidence_files,
                      "chain_head": {"seq": restored.chain_seq, "hash": restored.chain_hash},
                      "note": "users choose a new password and enrol their second factor again; "
                              "API tokens are made anew"}))
    return 0
