"""A row forged by a superuser between two concurrent appends of one tenant.

Two app connections append to one tenant at once while a superuser, with the
audit triggers disabled, slips a row in between them, with the seq and
prev_hash an honest row would have had. The order is forced, not hoped for:
appends A and B are both open with their events recorded; A commits; the
forger's ALTER TABLE ... DISABLE TRIGGER takes the table lock; B's commit,
which is when its event enters audit_log, queues behind that lock; the forger
inserts and commits. So the forged row follows A, and B's trigger (which
links to the newest row under the tenant's append lock) links B to it.

What the chain can and cannot see:

- A forged row whose row_hash is not SHA-256(prev_hash || JCS(record)) is
  found: the full walk and the fast walk from an anchor that precedes it both
  stop at its seq with hash_mismatch. B's honest link to it does not hide it.
- A forged row whose hash is computed correctly over the forged content is NOT
  found, in either mode: the hash is a public algorithm with no secret, the
  forged row links to A, B links to it, and every recomputation agrees. The
  chain proves what was appended after an anchor only as far as the database
  was not written behind the trigger's back; the next anchor then vouches for
  the forged row too. Only rows before an anchor are protected against such a
  rewrite (any rewrite there changes the anchored row_hash: test_verify_anchors).
- session_replication_role = replica is no way round the trigger: the chain
  triggers are ENABLE ALWAYS, so the hashes a forger supplies are replaced.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from app.audit import AuditAction, Target, record
from app.audit.anchor import anchor_tenant
from app.audit.verify import GENESIS, hash_input, second_prefix, verify_tenant
from app.db import set_tenant, tenant_transaction
from tests.conftest import tampering

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
FORGED_DATA = '{"forged": true}'


@pytest.fixture
def checked(settings, tsa):
    """Anchoring on, and tokens checked against the authority's CA."""
    return replace(settings, tsa_url=tsa.url, tsa_ca_file=tsa.ca)


async def append(pool, tenant_id, name: str) -> None:
    async with tenant_transaction(pool, tenant_id) as conn:
        await record(conn, AuditAction.USER_CREATE, actor="system:test", target=Target("user", name),
                     data={"name": name})


async def waiting_on_locks(watcher: asyncpg.Connection, n: int) -> None:
    """Return once n sessions of this database wait for a lock."""
    for _ in range(1000):
        waiting = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        if waiting >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{n} session(s) never waited for a lock")


async def insert_forged(admin: asyncpg.Connection, tenant_id, *, consistent: bool) -> int:
    """Insert the next row (inside `tampering`); its hash right over its content, or not."""
    seq, prev, at = await admin.fetchrow(
        "SELECT seq, row_hash, occurred_at FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
        tenant_id)
    at += timedelta(milliseconds=1)
    row_hash = hashlib.sha256(b"forged").digest()
    if consistent:
        micros = round(at.timestamp() * 1_000_000)
        row_hash = hashlib.sha256(hash_input(
            prev, str(tenant_id).encode("ascii"), seq + 1, second_prefix(micros // 1_000_000),
            micros % 1_000_000, "system:forger", AuditAction.USER_CREATE.value, "user", "forged",
            FORGED_DATA, None)).digest()
    await admin.execute(
        "INSERT INTO audit_log (tenant_id, seq, occurred_at, actor, action, target_type, target_id, data,"
        "                       hash_v, prev_hash, row_hash)"
        " VALUES ($1, $2, $3, 'system:forger', $4, 'user', 'forged', $5::jsonb, 1, $6, $7)",
        tenant_id, seq + 1, at, AuditAction.USER_CREATE.value, FORGED_DATA, prev, row_hash)
    return seq + 1


async def forged_between_two_appends(pool, admin, admin_url, tenant_id, *, consistent: bool) -> int:
    """B records, A records and commits, the forger inserts while B's commit waits for it; the forged seq.

    Events enter audit_log at commit (sql/0003: audit_pending), so "between"
    means between the two commits: B's commit is sent while the forger holds
    the table lock its ALTER TABLE took, and so queues behind the forged row.
    """
    recorded, commit_b = asyncio.Event(), asyncio.Event()

    async def append_b():
        async with tenant_transaction(pool, tenant_id) as b:
            await record(b, AuditAction.USER_CREATE, actor="system:test", target=Target("user", "b"),
                         data={"name": "b"})
            recorded.set()
            await commit_b.wait()

    watcher = await asyncpg.connect(admin_url)
    b = asyncio.create_task(append_b())
    try:
        await recorded.wait()
        await append(pool, tenant_id, "a")
        async with tampering(admin):
            commit_b.set()
            await waiting_on_locks(watcher, 1)
            forged = await insert_forged(admin, tenant_id, consistent=consistent)
        await b
    finally:
        commit_b.set()
        await watcher.close()
    return forged


async def chain_rows(admin, tenant_id) -> list:
    return await admin.fetch("SELECT seq, target_id, prev_hash, row_hash FROM audit_log WHERE tenant_id = $1"
                             " ORDER BY seq", tenant_id)


async def verdicts(pool, tenant_id, settings):
    fast = await verify_tenant(pool, tenant_id, settings)
    full = await verify_tenant(pool, tenant_id, settings, full=True)
    return fast, full


async def test_a_forged_row_with_a_wrong_hash_is_named_by_both_walks(pool, admin, admin_url, tenant, checked):
    await append(pool, tenant.id, "before")
    assert await anchor_tenant(pool, tenant.id, NOW, checked) == {"anchored": 1}
    forged = await forged_between_two_appends(pool, admin, admin_url, tenant.id, consistent=False)

    rows = await chain_rows(admin, tenant.id)
    assert [r["target_id"] for r in rows[-3:]] == ["a", "forged", "b"]
    assert rows[-1]["prev_hash"] == rows[-2]["row_hash"]  # B linked to the forged row
    fast, full = await verdicts(pool, tenant.id, checked)
    assert (fast.mode, fast.checked_from) == ("from_anchor", 3)
    assert (fast.ok, fast.broken_at, fast.reason) == (False, forged, "hash_mismatch")
    assert (full.ok, full.broken_at, full.reason) == (False, forged, "hash_mismatch")


async def test_a_forged_row_with_a_self_consistent_hash_is_not_detectable(pool, admin, admin_url, tenant, checked):
    await append(pool, tenant.id, "before")
    assert await anchor_tenant(pool, tenant.id, NOW, checked) == {"anchored": 1}
    await forged_between_two_appends(pool, admin, admin_url, tenant.id, consistent=True)

    rows = await chain_rows(admin, tenant.id)
    assert [r["target_id"] for r in rows[-3:]] == ["a", "forged", "b"]
    assert rows[-1]["prev_hash"] == rows[-2]["row_hash"] and rows[-2]["prev_hash"] == rows[-3]["row_hash"]
    fast, full = await verdicts(pool, tenant.id, checked)
    # The limit, asserted: no walk can tell this row from an honest one.
    assert (fast.ok, fast.mode, fast.total_rows) == (True, "from_anchor", 5)
    assert (full.ok, full.total_rows) == (True, 5)
    # And the next anchor vouches for it.
    assert await anchor_tenant(pool, tenant.id, NOW + timedelta(hours=1), checked) == {"anchored": 1}
    assert (await verify_tenant(pool, tenant.id, checked)).ok


async def test_replica_mode_does_not_bypass_the_chain_trigger(pool, admin, tenant, checked):
    head = await admin.fetchval("SELECT row_hash FROM audit_log WHERE tenant_id = $1 AND seq = 1", tenant.id)
    planted = hashlib.sha256(b"forged").digest()
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        await admin.execute("SET LOCAL session_replication_role = replica")
        await admin.execute(
            "INSERT INTO audit_log (tenant_id, seq, occurred_at, actor, action, data, hash_v, prev_hash, row_hash)"
            " VALUES ($1, 2, now(), 'system:forger', $2, '{}', 1, $3, $4)",
            tenant.id, AuditAction.USER_CREATE.value, GENESIS, planted)
    stored = await admin.fetchrow("SELECT prev_hash, row_hash FROM audit_log WHERE tenant_id = $1 AND seq = 2",
                                  tenant.id)
    assert (stored["prev_hash"], stored["row_hash"] != planted) == (head, True)
    assert (await verify_tenant(pool, tenant.id, checked, full=True)).ok
