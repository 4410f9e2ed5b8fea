"""`exceptao tenant export`, then `exceptao tenant import` into an empty database: the same chain, the same head.

A changed archive is refused.
"""

from __future__ import annotations

import json
import os
import uuid
import zipfile
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest

from app.audit.verify import verify_chain
from app.config import Settings, url_for_role
from app.db import tenant_transaction
from app.evidence import get_evidence
from app.evidence.deliver import verified_copy
from app.migrations import migrate
from app.storage import open_store
from app.tenant_export.command import export_to_file, import_from_file
from tests.conftest import create_database, drop_database


@asynccontextmanager
async def empty_database(server_url: str):
    """A new database, migrated and holding no tenant; dropped afterwards. Yields its administrator URL."""
    name = f"exceptao_import_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = await create_database(server_url, name)
    try:
        await migrate(url)
        yield url
    finally:
        await drop_database(server_url, name)


@pytest.fixture
async def exported(populated, settings, tenant, tmp_path, capsys) -> Path:
    path = tmp_path / "export.zip"
    assert await export_to_file(settings, tenant.slug, path) == 0
    assert json.loads(capsys.readouterr().out)["archive"] == str(path)
    return path


def target(url: str, directory: Path) -> Settings:
    """Another installation: its own database, its own data dir (so its own key file and object store)."""
    directory.mkdir()
    return Settings(database_url=url, data_dir=directory, jobs=False)


def rewritten(source: Path, dest: Path, change) -> Path:
    """A copy of the archive with `change(name, data)` applied to each member's bytes (None drops it)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as new:
        for name in old.namelist():
            data = change(name, old.read(name))
            if data is not None:
                new.writestr(name, data)
    return dest


async def test_a_reimport_into_an_empty_database_reproduces_the_chain_head(
        exported, populated, server_url, admin, tenant, tmp_path, capsys):
    with zipfile.ZipFile(exported) as archive:
        head = json.loads(archive.read("manifest.json"))["chain_head"]
    original = [bytes(r[0]).hex() for r in await admin.fetch(
        "SELECT row_hash FROM audit_log WHERE tenant_id = $1 AND seq <= $2 ORDER BY seq", tenant.id, head["seq"])]
    assert original[-1] == head["hash"]

    async with empty_database(server_url) as url:
        settings = target(url, tmp_path / "elsewhere")
        assert await import_from_file(settings, exported) == 0
        said = json.loads(capsys.readouterr().out)
        assert said["chain_head"] == head and said["evidence_files"] == 1

        pool = await asyncpg.create_pool(url_for_role(url, "exceptao_app"), min_size=1, max_size=4)
        store = open_store(settings)
        try:
            verdict = await verify_chain(pool, tenant.id)
            assert verdict.ok and verdict.total_rows == head["seq"] and verdict.head == head["hash"]
            conn = await asyncpg.connect(url)
            try:
                restored = [bytes(r[0]).hex() for r in await conn.fetch(
                    "SELECT row_hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq", tenant.id)]
                slug = await conn.fetchval("SELECT slug FROM tenant WHERE id = $1", tenant.id)
                people = await conn.fetchval("SELECT count(*) FROM app_user WHERE tenant_id = $1"
                                             " AND password_hash IS NULL AND totp_enrolled_at IS NULL", tenant.id)
                # The chain trigger is back on: the next event joins the restored chain after its head.
                await conn.execute("SELECT set_config('app.current_tenant_id', $1, false)", str(tenant.id))
                await conn.execute("SELECT audit_append('system:test', 'tenant:tenant:restore', NULL, NULL,"
                                   " '{}'::jsonb, NULL, NULL)")
                after = await conn.fetchrow("SELECT seq, prev_hash FROM audit_log WHERE tenant_id = $1"
                                            " ORDER BY seq DESC LIMIT 1", tenant.id)
            finally:
                await conn.close()
            assert restored == original and slug == tenant.slug and people == 5
            assert after["seq"] == head["seq"] + 1 and bytes(after["prev_hash"]).hex() == head["hash"]
            assert (await verify_chain(pool, tenant.id)).ok
            # The evidence file is stored again, encrypted under the new installation's key, and reads back whole.
            async with tenant_transaction(pool, tenant.id) as conn:
                evidence = await get_evidence(conn, populated.evidence_id)
            copy = await verified_copy(pool, store, settings, tenant.id, evidence)
            with copy:
                assert copy.read() == populated.evidence_bytes
        finally:
            await store.close()
            await pool.close()

        # Once there, the tenant is not imported twice.
        assert await import_from_file(settings, exported) == 1
        assert "already exists" in capsys.readouterr().err


async def no_tenant(url: str, tenant_id) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return not await conn.fetchval("SELECT count(*) FROM tenant WHERE id = $1", tenant_id)
    finally:
        await conn.close()


async def test_a_changed_member_or_an_unlisted_one_is_refused_before_the_database_is_touched(
        exported, server_url, tenant, tmp_path, capsys):
    def flip_byte(name, data):
        return data[:-3] + bytes([data[-3] ^ 1]) + data[-2:] if name == "tables/audit_log.json" else data

    changed = rewritten(exported, tmp_path / "changed.zip", flip_byte)
    dropped = rewritten(exported, tmp_path / "dropped.zip",
                        lambda name, data: None if name.startswith("evidence/") else data)
    extra = rewritten(exported, tmp_path / "extra.zip", lambda name, data: data)
    with zipfile.ZipFile(extra, "a") as archive:
        archive.writestr("tables/smuggled.json", b"[\n]\n")
    async with empty_database(server_url) as url:
        settings = target(url, tmp_path / "elsewhere")
        for archive, reason in ((changed, "tables/audit_log.json does not match the manifest"),
                                (dropped, "is in the manifest but not in the archive"),
                                (extra, "tables/smuggled.json is in the archive but not in its manifest")):
            assert await import_from_file(settings, archive) == 1
            assert reason in capsys.readouterr().err
            assert await no_tenant(url, tenant.id)
        assert not [p for p in (tmp_path / "elsewhere").rglob("*") if p.is_file() and "objects" in p.parts]


async def test_a_rewritten_audit_row_with_a_matching_manifest_is_refused_and_rolled_back(
        exported, server_url, tenant, tmp_path, capsys):
    """Someone changes an audit row and recomputes the manifest's sums: the chain, walked after the insert, says no."""
    import hashlib

    with zipfile.ZipFile(exported) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        lines = archive.read("tables/audit_log.json").decode().split("\n")
    row = json.loads(lines[1].rstrip(","))
    row["actor"] = "system:someone-else"
    lines[1] = json.dumps(row) + ("," if lines[1].endswith(",") else "")
    forged_rows = "\n".join(lines).encode()
    for member in manifest["members"]:
        if member["path"] == "tables/audit_log.json":
            member.update(size=len(forged_rows), sha256=hashlib.sha256(forged_rows).hexdigest())

    def forge(name, data):
        return {"tables/audit_log.json": forged_rows, "manifest.json": json.dumps(manifest).encode()}.get(name, data)

    forged = rewritten(exported, tmp_path / "forged.zip", forge)
    async with empty_database(server_url) as url:
        settings = target(url, tmp_path / "elsewhere")
        assert await import_from_file(settings, forged) == 1
        assert "the restored chain does not verify: seq 1 (hash_mismatch)" in capsys.readouterr().err
        assert await no_tenant(url, tenant.id)
        conn = await asyncpg.connect(url)
        try:
            # Rolled back with everything else: the chain trigger is on again.
            assert await conn.fetchval("SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'audit_log_chain'") == "A"
        finally:
            await conn.close()
        assert not [p for p in (tmp_path / "elsewhere").rglob("*") if p.is_file() and "objects" in p.parts]


def test_the_command_line_exports_and_refuses_what_is_not_an_archive(admin_url, monkeypatch, tmp_path, capsys):
    from app.cli import main

    monkeypatch.setenv("DATABASE_URL", admin_url)
    slug = f"cli-export-{uuid.uuid4().hex[:8]}"
    assert main(["--data-dir", str(tmp_path), "tenant", "create", slug, "--name", "Exported"]) == 0
    out = tmp_path / "out.zip"
    assert main(["--data-dir", str(tmp_path), "tenant", "export", "--tenant", slug, "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("manifest.json"))["tenant"]["slug"] == slug
    assert not (tmp_path / "out.zip.partial").exists()
    not_an_archive = tmp_path / "notes.txt"
    not_an_archive.write_text("hello")
    capsys.readouterr()
    assert main(["--data-dir", str(tmp_path), "tenant", "import", str(not_an_archive)]) == 1
    assert "cannot be read as a ZIP archive" in capsys.readouterr().err
    assert main(["--data-dir", str(tmp_path), "tenant", "export", "--tenant", "no-such", "--out", str(out)]) == 2


async def test_anchors_and_personal_data_come_along_and_verify_from_the_anchor_there(
        pool, tenant, settings, tsa, server_url, tmp_path, capsys):
    """The anchor's token still vouches for the restored chain: verification from the anchor agrees with a full walk."""
    from app.audit import AuditAction, Pii, Target, record
    from app.audit.anchor import anchor_tenant
    from app.audit.verify import verify_tenant

    checked = replace(settings, tsa_url=tsa.url, tsa_ca_file=tsa.ca)
    for k in range(2):
        async with tenant_transaction(pool, tenant.id) as conn:
            await record(conn, AuditAction.USER_CREATE, actor="system:test", target=Target("user", f"u{k}"),
                         data={"k": k, "naïve": 1.5},
                         pii=Pii(email=f"p{k}@example.com", ip="203.0.113.7", user_agent="ua"))
        if k == 0:
            assert await anchor_tenant(pool, tenant.id, datetime.now(timezone.utc), checked) == {"anchored": 1}
    path = tmp_path / "anchored.zip"
    assert await export_to_file(settings, tenant.slug, path) == 0
    with zipfile.ZipFile(path) as archive:
        head = json.loads(archive.read("manifest.json"))["chain_head"]
    async with empty_database(server_url) as url:
        there = replace(target(url, tmp_path / "elsewhere"), tsa_ca_file=tsa.ca)
        assert await import_from_file(there, path) == 0
        pool_there = await asyncpg.create_pool(url_for_role(url, "exceptao_app"), min_size=1, max_size=4)
        try:
            fast = await verify_tenant(pool_there, tenant.id, there)
            full = await verify_tenant(pool_there, tenant.id, there, full=True)
        finally:
            await pool_there.close()
    assert fast.ok and fast.mode == "from_anchor" and fast.head == head["hash"] and fast.total_rows == head["seq"]
    assert full.ok and full.head == head["hash"] and full.erased_rows == 0
