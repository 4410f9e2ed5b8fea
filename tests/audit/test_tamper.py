"""Tampering behind the app's back, as a superuser, is found with the right broken_at."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timezone

import asyncpg
import pytest

from app.audit import AuditAction, Pii, Target, record
from app.audit.anchor import anchor_tenant
from app.audit.verify import verify_chain
from app.db import tenant_transaction
from tests.conftest import tampering

N = 10  # seq 1 is the tenant's creation; 2..10 are appended below
PII_SEQ = 4


@pytest.fixture
async def chain(pool, tenant):
    async with tenant_transaction(pool, tenant.id) as conn:
        for seq in range(2, N + 1):
            pii = Pii(email="ada@example.com", ip="203.0.113.9", user_agent="curl/8") if seq == PII_SEQ else None
            await record(conn, AuditAction.USER_CREATE, actor="system:test",
                         target=Target("user", f"u{seq}"), data={"seq": seq, "note": "ünïcode"}, pii=pii)
    assert (await verify_chain(pool, tenant.id)).ok
    return tenant


@pytest.fixture(params=["one walk", "three parallel ranges"])
def verdict(request, app_url):
    """The verifier, walking the chain in one pass or split across worker processes."""

    async def verdict(pool, tenant):
        if request.param == "one walk":
            return await verify_chain(pool, tenant.id, batch=3)
        return await verify_chain(pool, tenant.id, batch=2, workers=3, dsn=app_url, parallel_from=1)

    return verdict


async def test_updating_a_hashed_column_is_found(pool, admin, chain, verdict):
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{\"seq\": 5, \"note\": \"edited\"}'"
                            " WHERE tenant_id = $1 AND seq = 5", chain.id)
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at, v.reason) == (False, 5, "hash_mismatch")


async def test_updating_the_actor_of_the_first_row_is_found(pool, admin, chain, verdict):
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET actor = 'system:someone_else' WHERE tenant_id = $1 AND seq = 1",
                            chain.id)
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at, v.reason) == (False, 1, "hash_mismatch")


async def test_deleting_a_middle_row_is_found(pool, admin, chain, verdict):
    async with tampering(admin):
        await admin.execute("DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 6", chain.id)
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at, v.reason) == (False, 6, "row_missing")
    assert v.total_rows == N - 1


async def test_a_forged_row_at_the_end_is_found(pool, admin, chain, verdict):
    head = await admin.fetchval("SELECT row_hash FROM audit_log WHERE tenant_id = $1 AND seq = $2", chain.id, N)
    async with tampering(admin):
        await admin.execute(
            """INSERT INTO audit_log (tenant_id, seq, occurred_at, actor, action, data, hash_v, prev_hash, row_hash)
               VALUES ($1, $2, now(), 'system:forger', 'identity:user:create', '{}', 1, $3, $4)""",
            chain.id, N + 1, head, hashlib.sha256(b"forged").digest(),
        )
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at, v.reason) == (False, N + 1, "hash_mismatch")


async def test_a_forged_fork_fails_loudly(admin, chain):
    """A second row claiming an existing predecessor violates UNIQUE (prev_hash, tenant_id)."""
    prev = await admin.fetchval("SELECT prev_hash FROM audit_log WHERE tenant_id = $1 AND seq = 5", chain.id)
    with pytest.raises(asyncpg.UniqueViolationError):
        async with tampering(admin):
            await admin.execute(
                """INSERT INTO audit_log (tenant_id, seq, occurred_at, actor, action, data, hash_v, prev_hash, row_hash)
                   VALUES ($1, $2, now(), 'system:forger', 'identity:user:create', '{}', 1, $3, $3)""",
                chain.id, N + 1, prev,
            )


async def test_swapping_two_rows_is_found(pool, admin, chain, verdict):
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET seq = 1000003 WHERE tenant_id = $1 AND seq = 3", chain.id)
        await admin.execute("UPDATE audit_log SET seq = 3 WHERE tenant_id = $1 AND seq = 7", chain.id)
        await admin.execute("UPDATE audit_log SET seq = 7 WHERE tenant_id = $1 AND seq = 1000003", chain.id)
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at) == (False, 3)
    assert v.reason in ("link_mismatch", "hash_mismatch")


async def test_editing_the_head_is_found(pool, admin, chain, verdict):
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET action = 'tenant:tenant:create' WHERE tenant_id = $1 AND seq = $2",
                            chain.id, N)
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at, v.reason) == (False, N, "hash_mismatch")


async def test_rewriting_the_head_hash_is_found(pool, admin, chain, verdict):
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET row_hash = $2 WHERE tenant_id = $1 AND seq = $3",
                            chain.id, hashlib.sha256(b"new head").digest(), N)
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at, v.reason) == (False, N, "hash_mismatch")


async def test_changing_the_email_is_a_commitment_mismatch_not_a_broken_link(pool, admin, chain, verdict):
    async with tampering(admin):
        await admin.execute("UPDATE audit_pii SET email = 'eve@example.com' WHERE tenant_id = $1 AND seq = $2",
                            chain.id, PII_SEQ)
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at, v.reason) == (False, PII_SEQ, "pii_commitment_mismatch")


async def test_deleting_the_personal_data_row_is_found(pool, admin, chain, verdict):
    async with tampering(admin):
        await admin.execute("DELETE FROM audit_pii WHERE tenant_id = $1 AND seq = $2", chain.id, PII_SEQ)
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at, v.reason) == (False, PII_SEQ, "pii_missing")


async def test_an_anchor_off_the_chain_is_found(pool, admin, chain, verdict, settings, tsa):
    """Truncating the tail behind an anchor: the anchored row is no longer on the chain."""
    now = datetime.now(timezone.utc)
    assert await anchor_tenant(pool, chain.id, now, replace(settings, tsa_url=tsa.url)) == {"anchored": 1}
    ok = await verdict(pool, chain)
    assert ok.ok and ok.last_anchor_at is not None
    async with tampering(admin):
        await admin.execute("DELETE FROM audit_log WHERE tenant_id = $1 AND seq = $2", chain.id, N)
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at, v.reason) == (False, N, "anchor_not_on_chain")


async def test_other_tenants_are_unaffected(pool, admin, chain, verdict, make_tenant):
    other = await make_tenant("other")
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{}' WHERE tenant_id = $1 AND seq = 2", chain.id)
    assert not (await verdict(pool, chain)).ok
    assert (await verdict(pool, other)).ok


async def test_personal_data_filed_against_an_event_without_a_commitment_is_found(pool, admin, chain, verdict):
    async with tampering(admin):
        await admin.execute(
            "INSERT INTO audit_pii (tenant_id, seq, salt, email) VALUES ($1, 6, $2, 'framed@example.com')",
            chain.id, bytes(32),
        )
    v = await verdict(pool, chain)
    assert (v.ok, v.broken_at, v.reason) == (False, 6, "pii_commitment_mismatch")
