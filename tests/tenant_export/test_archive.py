"""The export archive: its manifest matches its files, every tenant table is in it, secrets and others' rows are not."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest

from app.storage import open_store
from app.tenant_export import LEFT_OUT_TABLES
from app.tenant_export.archive import write_archive
from tests.tenant_export.conftest import members

# Every table holding tenant rows, asked of the catalogue here independently of the writer.
TENANT_TABLES = """
SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
   AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
"""


async def archive_of(pool, settings, tenant) -> dict[str, bytes]:
    store = open_store(settings)
    out = io.BytesIO()
    try:
        await write_archive(pool, store, settings, tenant.id, out)
    finally:
        await store.close()
    return members(out.getvalue())


@pytest.fixture
async def archive(pool, settings, tenant, populated) -> dict[str, bytes]:
    return await archive_of(pool, settings, tenant)


def manifest_of(archive: dict[str, bytes]) -> dict:
    return json.loads(archive["manifest.json"])


def json_rows(archive: dict[str, bytes], table: str) -> list[dict]:
    return json.loads(archive[f"tables/{table}.json"])


async def test_the_manifest_lists_every_member_with_its_size_and_sha256(archive, tenant):
    manifest = manifest_of(archive)
    listed = {m["path"]: m for m in manifest["members"]}
    assert set(listed) == set(archive) - {"manifest.json"}
    for path, data in archive.items():
        if path != "manifest.json":
            assert listed[path]["size"] == len(data), path
            assert listed[path]["sha256"] == hashlib.sha256(data).hexdigest(), path
    assert manifest["tenant"] == {"id": str(tenant.id), "slug": tenant.slug, "name": tenant.name}
    last = json_rows(archive, "audit_log")[-1]
    assert manifest["chain_head"] == {"seq": last["seq"], "hash": last["row_hash"].removeprefix("\\x")}
    assert "tables" in manifest["left_out"] and "app_user.password_hash" in manifest["left_out"]["columns"]


async def test_every_tenant_table_is_in_json_and_csv_unless_left_out_for_a_reason(archive, admin, tenant):
    tables = {r[0] for r in await admin.fetch(TENANT_TABLES)}
    assert set(LEFT_OUT_TABLES) <= tables, "a left-out table that no longer exists: drop it from the list"
    for table in sorted(tables - set(LEFT_OUT_TABLES)) + ["tenant"]:
        rows = json_rows(archive, table)
        lines = list(csv.reader(io.StringIO(archive[f"tables/{table}.csv"].decode("utf-8"))))
        assert len(lines) == len(rows) + 1, table
        if table != "tenant":
            # Exactly this tenant's rows, all of them (counted behind row-level security's back).
            count = await admin.fetchval(f'SELECT count(*) FROM "{table}" WHERE tenant_id = $1', tenant.id)
            assert len(rows) == count, table
            assert all(r["tenant_id"] == str(tenant.id) for r in rows), table
    for table in LEFT_OUT_TABLES:
        assert f"tables/{table}.json" not in archive and f"tables/{table}.csv" not in archive
    assert len(json_rows(archive, "app_user")) == 5
    assert json_rows(archive, "tenant")[0]["slug"] == tenant.slug


async def test_csv_holds_the_same_values_as_json(archive):
    rows = json_rows(archive, "exception")
    lines = list(csv.DictReader(io.StringIO(archive["tables/exception.csv"].decode("utf-8"))))
    assert [line["id"] for line in lines] == [r["id"] for r in rows]
    assert lines[0]["title"] == rows[0]["title"] and lines[0]["likelihood"] == str(rows[0]["likelihood"])
    evidence = json_rows(archive, "evidence")[0]
    line = next(csv.DictReader(io.StringIO(archive["tables/evidence.csv"].decode("utf-8"))))
    assert line["sha256"] == evidence["sha256"] and evidence["sha256"].startswith("\\x")


async def test_evidence_files_are_in_it_decrypted(archive, populated):
    path = f"evidence/{populated.evidence_id}/firewall rules.txt"
    assert archive[path] == populated.evidence_bytes
    assert manifest_of(archive)["evidence_not_included"] == []


async def test_the_audit_bundle_is_in_it(archive, tenant):
    pytest.importorskip("app.audit.bundle")
    assert manifest_of(archive)["audit_bundle"] == "audit/bundle.jsonl"
    assert str(tenant.id).encode() in archive["audit/bundle.jsonl"]


async def test_no_credential_leaves(archive, admin, tenant):
    secrets = []
    for query in ("SELECT password_hash FROM app_user WHERE tenant_id = $1 AND password_hash IS NOT NULL",
                  "SELECT encode(totp_secret, 'hex') FROM app_user WHERE tenant_id = $1 AND totp_secret IS NOT NULL",
                  "SELECT encode(token_hash, 'hex') FROM api_token WHERE tenant_id = $1",
                  "SELECT encode(token_hash, 'hex') FROM user_session WHERE tenant_id = $1",
                  "SELECT id::text FROM user_session WHERE tenant_id = $1",
                  "SELECT encode(code_hash, 'hex') FROM recovery_code WHERE tenant_id = $1",
                  "SELECT encode(wrapped, 'hex') FROM tenant_key WHERE tenant_id = $1",
                  "SELECT encode(binding, 'hex') FROM tenant_key WHERE tenant_id = $1"):
        secrets += [r[0] for r in await admin.fetch(query, tenant.id)]
    kinds = {"password": 5, "totp": 2, "token": 1, "session": 5, "key": 1}
    assert len(secrets) >= sum(kinds.values()), "the tenant must hold every kind of secret for this to mean anything"
    for path, data in archive.items():
        text = data.decode("utf-8", "replace")
        for secret in secrets:
            assert secret not in text, f"a secret is in {path}"
    users = json_rows(archive, "app_user")
    assert all("password_hash" not in u and "totp_secret" not in u for u in users)
    assert all("token_hash" not in t for t in json_rows(archive, "api_token"))


async def test_another_tenants_rows_are_not_in_it(archive, populated):
    for path, data in archive.items():
        assert populated.canary.encode() not in data, path


async def test_csv_cells_a_spreadsheet_would_run_are_quoted_and_json_keeps_them_exact(pool, settings, admin, tenant,
                                                                                      populated):
    await admin.execute("UPDATE exception SET title = '=HYPERLINK(\"http://evil.example\")', likelihood = 2"
                        " WHERE tenant_id = $1", tenant.id)
    archive = await archive_of(pool, settings, tenant)
    line = next(csv.DictReader(io.StringIO(archive["tables/exception.csv"].decode("utf-8"))))
    assert line["title"] == "'=HYPERLINK(\"http://evil.example\")" and line["likelihood"] == "2"
    assert json_rows(archive, "exception")[0]["title"] == "=HYPERLINK(\"http://evil.example\")"
