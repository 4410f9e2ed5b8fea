"""Verification from the latest anchor (the default) and the full walk, against a real RFC 3161 authority."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from app.audit import AuditAction, Pii, Target, record
from app.audit.anchor import anchor_tenant, timestamp_request
from app.audit.verify import verify_tenant
from app.db import tenant_transaction
from tests.conftest import tampering

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
SAME_IN_BOTH_MODES = ("ok", "total_rows", "head", "last_anchor_at", "broken_at", "erased_rows", "anchor")


@pytest.fixture
def checked(settings, tsa):
    """Anchoring on, and tokens checked against the authority's CA."""
    return replace(settings, tsa_url=tsa.url, tsa_ca_file=tsa.ca)


async def append(pool, tenant, n: int = 1, *, pii: bool = False) -> None:
    async with tenant_transaction(pool, tenant.id) as conn:
        for k in range(n):
            await record(conn, AuditAction.USER_CREATE, actor="system:test", target=Target("user", f"u{k}"),
                         data={"k": k}, pii=Pii(email=f"p{k}@example.com", ip="203.0.113.7", user_agent="ua")
                         if pii else None)


async def anchor_now(pool, tenant, settings, now=NOW) -> int:
    assert await anchor_tenant(pool, tenant.id, now, settings) == {"anchored": 1}
    return await pool_max_seq(pool, tenant)


async def pool_max_seq(pool, tenant) -> int:
    async with tenant_transaction(pool, tenant.id) as conn:
        return await conn.fetchval("SELECT max(seq) FROM audit_log WHERE tenant_id = $1", tenant.id)


async def both(pool, tenant, settings):
    fast = (await verify_tenant(pool, tenant.id, settings)).as_json()
    full = (await verify_tenant(pool, tenant.id, settings, full=True)).as_json()
    assert {k: fast[k] for k in SAME_IN_BOTH_MODES} == {k: full[k] for k in SAME_IN_BOTH_MODES}
    assert full["mode"] == "full" and full["checked_from"] == 1
    return fast, full


async def test_the_default_walks_from_the_latest_anchor_with_the_same_answer_as_the_full_walk(
        pool, admin, tenant, checked):
    await append(pool, tenant, 3)
    anchored = await anchor_now(pool, tenant, checked)
    await append(pool, tenant, 2)

    fast, full = await both(pool, tenant, checked)
    assert fast["ok"] and fast["total_rows"] == anchored + 2
    assert (fast["mode"], fast["checked_from"]) == ("from_anchor", anchored + 1)
    assert fast["anchor"]["seq"] == anchored and fast["anchor"]["token"] == "verified"
    assert fast["anchor"]["token_note"] is None and fast["anchor"]["on_chain"]
    # last_anchor_at is the authority's time in the token.
    detail = await admin.fetchval("SELECT detail FROM audit_anchor WHERE tenant_id = $1", tenant.id)
    assert fast["last_anchor_at"] == json.loads(detail)["gen_time"]
    assert fast["anchor"]["gen_time"] == fast["last_anchor_at"]


async def test_without_a_ca_file_the_verdict_says_the_signature_was_not_checked(pool, tenant, checked):
    anchored = await anchor_now(pool, tenant, checked)
    fast = (await verify_tenant(pool, tenant.id, replace(checked, tsa_ca_file=None))).as_json()
    assert fast["ok"] and fast["mode"] == "from_anchor" and fast["checked_from"] == anchored + 1
    assert fast["anchor"]["token"] == "signature_not_checked"
    assert "signature was not checked" in fast["anchor"]["token_note"]


async def test_another_authoritys_ca_fails_the_anchor(pool, tenant, checked, tmp_path):
    import subprocess

    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "other.pem"), "-days", "1",
                    "-subj", "/CN=Someone Else"], check=True, capture_output=True)
    anchored = await anchor_now(pool, tenant, checked)
    v = (await verify_tenant(pool, tenant.id, replace(checked, tsa_ca_file=tmp_path / "other.pem"))).as_json()
    assert (v["ok"], v["broken_at"], v["reason"]) == (False, anchored, "anchor_token_invalid")
    assert v["anchor"]["token"] == "invalid" and "does not verify" in v["anchor"]["token_note"]
    # No usable anchor: the whole chain was walked, and no anchor time is vouched for.
    assert (v["mode"], v["checked_from"], v["last_anchor_at"]) == ("full", 1, None)


@pytest.mark.parametrize("ca", [True, False], ids=["with the CA", "imprint only"])
async def test_a_replaced_token_is_named_in_both_modes(pool, admin, tenant, checked, tsa, ca):
    settings = checked if ca else replace(checked, tsa_ca_file=None)
    first = await anchor_now(pool, tenant, settings)
    await append(pool, tenant, 2)
    head = await pool_max_seq(pool, tenant)
    row_hash = await admin.fetchval("SELECT row_hash FROM audit_log WHERE tenant_id = $1 AND seq = $2",
                                    tenant.id, head)
    # A genuine token of the same authority, but for another hash, filed as the newest anchor.
    other = tsa.reply(timestamp_request(bytes(32), 1))
    from asn1crypto import tsp
    token = tsp.TimeStampResp.load(other)["time_stamp_token"].dump()
    await admin.execute("INSERT INTO audit_anchor (tenant_id, seq, row_hash, tsa_token) VALUES ($1, $2, $3, $4)",
                        tenant.id, head, row_hash, token)
    fast, full = await both(pool, tenant, settings)
    assert (fast["ok"], fast["broken_at"], fast["reason"]) == (False, head, "anchor_token_invalid")
    assert fast["anchor"]["token"] == "invalid"
    # The earlier, good anchor still counts as the last one, and the fast walk starts there.
    assert (fast["mode"], fast["checked_from"]) == ("from_anchor", first + 1)
    assert fast["last_anchor_at"] is not None


async def test_a_discontinuity_newer_than_the_last_good_anchor_fails_the_verdict(pool, admin, tenant, checked):
    await append(pool, tenant, 2)
    anchored = await anchor_now(pool, tenant, checked)
    original = await admin.fetchval("SELECT row_hash FROM audit_log WHERE tenant_id = $1 AND seq = $2",
                                    tenant.id, anchored)
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET row_hash = sha256(row_hash) WHERE tenant_id = $1 AND seq = $2",
                            tenant.id, anchored)
    with pytest.raises(Exception, match="chain discontinuity"):
        await anchor_tenant(pool, tenant.id, NOW + timedelta(hours=1), checked)
    # Put back behind the app's back: the anchor is on the chain again, but what happened stays on record.
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET row_hash = $3 WHERE tenant_id = $1 AND seq = $2",
                            tenant.id, anchored, original)
    fast, _ = await both(pool, tenant, checked)
    assert (fast["ok"], fast["broken_at"], fast["reason"]) == (False, anchored, "chain_discontinuity")
    assert fast["anchor"]["on_chain"] and fast["anchor"]["token"] == "verified"


async def test_a_break_after_the_anchor_is_found_from_the_anchor(pool, admin, tenant, checked):
    anchored = await anchor_now(pool, tenant, checked)
    await append(pool, tenant, 4)
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{\"k\": 99}' WHERE tenant_id = $1 AND seq = $2",
                            tenant.id, anchored + 2)
    fast, _ = await both(pool, tenant, checked)
    assert (fast["ok"], fast["broken_at"], fast["reason"]) == (False, anchored + 2, "hash_mismatch")
    assert fast["checked_from"] == anchored + 1


async def test_a_row_deleted_before_the_anchor_is_found_without_walking_it(pool, admin, tenant, checked):
    await append(pool, tenant, 4)
    await anchor_now(pool, tenant, checked)
    async with tampering(admin):
        await admin.execute("DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 3", tenant.id)
    fast, full = await both(pool, tenant, checked)
    assert (fast["ok"], fast["broken_at"], fast["reason"]) == (False, 3, "row_missing")
    assert fast["mode"] == "from_anchor"


async def test_damage_before_the_anchor_that_keeps_the_links_needs_the_full_walk(pool, admin, tenant, checked):
    """What the fast default cannot see, and why ?full=1 exists: a row edited without rehashing, before the anchor."""
    await append(pool, tenant, 3)
    await anchor_now(pool, tenant, checked)
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{\"k\": 99}' WHERE tenant_id = $1 AND seq = 2", tenant.id)
    assert (await verify_tenant(pool, tenant.id, checked)).ok
    full = await verify_tenant(pool, tenant.id, checked, full=True)
    assert (full.ok, full.broken_at, full.reason) == (False, 2, "hash_mismatch")


async def test_erased_rows_are_counted_in_both_modes(pool, admin, tenant, checked):
    await append(pool, tenant, 3, pii=True)
    await anchor_now(pool, tenant, checked)
    await append(pool, tenant, 1, pii=True)
    tombstone = "actor_tombstone_00000000-0000-4000-8000-000000000001"
    await admin.execute("UPDATE audit_pii SET salt = NULL, email = $2, ip = NULL, user_agent = NULL"
                        " WHERE tenant_id = $1 AND seq IN (2, 3)", tenant.id, tombstone)
    fast, full = await both(pool, tenant, checked)
    assert fast["ok"] and fast["erased_rows"] == 2 and full["erased_rows"] == 2


async def test_worker_processes_walk_from_the_anchor_too(pool, admin, tenant, checked, app_url):
    from app.audit.anchor_check import authority
    from app.audit.verify import verify_chain

    await append(pool, tenant, 3)
    anchored = await anchor_now(pool, tenant, checked)
    await append(pool, tenant, 7)

    async def verdict(full=False):
        return await verify_chain(pool, tenant.id, batch=2, workers=3, dsn=app_url, parallel_from=1, full=full,
                                  authority=authority(checked))

    fast = await verdict()
    assert fast.ok and (fast.mode, fast.checked_from) == ("from_anchor", anchored + 1)
    assert (await verdict(full=True)).ok
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{\"k\": 98}' WHERE tenant_id = $1 AND seq = $2",
                            tenant.id, anchored + 6)
    for full in (False, True):
        broken = await verdict(full)
        assert (broken.ok, broken.broken_at, broken.reason) == (False, anchored + 6, "hash_mismatch")


def test_the_command_verifies_from_the_anchor_or_in_full(admin_url, app_url, tsa, monkeypatch, capsys):
    import asyncio
    import uuid

    import asyncpg

    from app.cli import main
    from app.config import Settings
    from app.tenants import tenant_by_slug

    monkeypatch.setenv("DATABASE_URL", admin_url)
    monkeypatch.setenv("EXCEPTAO_TSA_CA_FILE", str(tsa.ca))
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    assert main(["tenant", "create", slug, "--name", "CLI Tenant"]) == 0
    capsys.readouterr()

    async def anchor():
        pool = await asyncpg.create_pool(app_url, min_size=1, max_size=2)
        try:
            tenant = await tenant_by_slug(pool, slug)
            await anchor_tenant(pool, tenant.id, NOW, replace(Settings.from_env(), tsa_url=tsa.url))
        finally:
            await pool.close()

    asyncio.run(anchor())
    assert main(["verify", "--tenant", slug]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert (fast["mode"], fast["checked_from"], fast["anchor"]["token"]) == ("from_anchor", 2, "verified")
    assert main(["verify", "--tenant", slug, "--full"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert (full["mode"], full["checked_from"], full["ok"]) == ("full", 1, True)


async def test_an_unreadable_ca_file_fails_the_anchor_without_naming_the_servers_paths(pool, tenant, checked, tmp_path):
    anchored = await anchor_now(pool, tenant, checked)
    missing = tmp_path / "secret-dir" / "ca.pem"
    v = (await verify_tenant(pool, tenant.id, replace(checked, tsa_ca_file=missing))).as_json()
    assert (v["ok"], v["broken_at"], v["reason"]) == (False, anchored, "anchor_token_invalid")
    assert "cannot be read" in v["anchor"]["token_note"] and "secret-dir" not in json.dumps(v)
