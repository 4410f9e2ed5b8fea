"""The audit chain v1: assigned by the trigger, append-only for every role."""

from __future__ import annotations

import hashlib
import json
import time

import asyncpg
import pytest
import rfc8785

from app.audit import AuditAction, Pii, Target, record
from app.audit.canonical import NotCanonicalizable
from app.audit.verify import verify_chain
from app.db import set_tenant, tenant_transaction

GENESIS = bytes(32)


async def append(pool, tenant, n: int = 1, **kw) -> list[int]:
    """Record n events in one transaction; the seqs they were given at commit."""
    async with tenant_transaction(pool, tenant.id) as conn:
        before = await conn.fetchval("SELECT max(seq) FROM audit_log")
        for i in range(n):
            await record(
                conn, AuditAction.USER_CREATE, actor="system:test",
                target=Target("user", f"u{i}"), data=kw.get("data", {"i": i}), pii=kw.get("pii"),
            )
        # Not in the chain until the transaction commits.
        assert await conn.fetchval("SELECT max(seq) FROM audit_log") == before
    async with tenant_transaction(pool, tenant.id) as conn:
        return [r[0] for r in await conn.fetch(
            "SELECT seq FROM audit_log WHERE seq > $1 ORDER BY seq", before)]


async def rows(admin, tenant) -> list[asyncpg.Record]:
    return await admin.fetch("SELECT * FROM audit_log WHERE tenant_id = $1 ORDER BY seq", tenant.id)


def expected_hash(row, prev: bytes) -> bytes:
    """Recompute a row hash straight from DESIGN.md with the rfc8785 package."""
    record_ = {
        "v": 1,
        "tenant": str(row["tenant_id"]),
        "seq": row["seq"],
        "at": row["occurred_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": row["actor"],
        "action": row["action"],
        "target": {"type": row["target_type"], "id": row["target_id"]} if row["target_type"] else None,
        "data": json.loads(row["data"]),
        "pii": row["pii_commitment"].hex() if row["pii_commitment"] else None,
    }
    return hashlib.sha256(prev + rfc8785.dumps(record_)).digest()


async def test_the_trigger_assigns_a_gapless_linked_chain(pool, admin, tenant):
    assert await append(pool, tenant, 5) == [2, 3, 4, 5, 6]  # seq 1 is the tenant's creation
    chain = await rows(admin, tenant)
    assert [json.loads(r["data"]) for r in chain[1:]] == [{"i": i} for i in range(5)]  # recorded order
    assert [r["seq"] for r in chain] == [1, 2, 3, 4, 5, 6]
    prev = GENESIS
    for row in chain:
        assert row["prev_hash"] == prev
        assert row["row_hash"] == expected_hash(row, prev)
        assert row["hash_v"] == 1
        assert row["occurred_at"].tzinfo is not None
        prev = row["row_hash"]
    times = [r["occurred_at"] for r in chain]
    assert times == sorted(times)
    # The same check inside the database, for auditors working in SQL.
    assert await admin.fetchval(
        "SELECT bool_and(sha256(prev_hash || convert_to(audit_record_jcs(l), 'UTF8')) = row_hash)"
        " FROM audit_log l WHERE tenant_id = $1", tenant.id) is True


async def test_what_the_caller_sends_for_seq_time_and_hashes_is_ignored(admin, tenant):
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        await admin.execute(
            """INSERT INTO audit_log (tenant_id, seq, occurred_at, actor, action, data, hash_v, prev_hash, row_hash)
               VALUES ($1, 999, '2001-01-01', 'system:forger', 'identity:user:create', '{}', 1, $2, $2)""",
            tenant.id, b"\x01" * 32,
        )
    chain = await rows(admin, tenant)
    assert chain[-1]["seq"] == 2
    assert chain[-1]["prev_hash"] == chain[0]["row_hash"]
    assert chain[-1]["occurred_at"].year >= 2026
    assert chain[-1]["row_hash"] == expected_hash(chain[-1], chain[0]["row_hash"])


async def test_personal_data_is_outside_the_chain_behind_a_salted_commitment(pool, admin, tenant):
    pii = Pii(email="ada@example.com", ip="192.0.2.7", user_agent="Mozilla/5.0 (X11)")
    [seq] = await append(pool, tenant, pii=pii)
    row = (await rows(admin, tenant))[-1]
    stored = await admin.fetchrow("SELECT * FROM audit_pii WHERE tenant_id = $1 AND seq = $2", tenant.id, seq)
    assert (stored["email"], stored["ip"], stored["user_agent"]) == (pii.email, pii.ip, pii.user_agent)
    assert len(stored["salt"]) == 32
    commitment = hashlib.sha256(
        stored["salt"] + rfc8785.dumps({"email": pii.email, "ip": pii.ip, "ua": pii.user_agent})
    ).digest()
    assert row["pii_commitment"] == commitment
    # The email is nowhere in the hashed record.
    assert pii.email not in row["data"] and pii.email not in row["actor"]


async def test_update_delete_and_truncate_are_refused_for_every_role(pool, admin, tenant):
    await append(pool, tenant, 2)
    statements = [
        "UPDATE audit_log SET data = '{\"x\": 1}' WHERE tenant_id = $1",
        "DELETE FROM audit_log WHERE tenant_id = $1",
        "UPDATE audit_anchor SET seq = 1 WHERE tenant_id = $1",
        "DELETE FROM audit_pii WHERE tenant_id = $1",
    ]
    async with pool.acquire() as app:
        for sql in statements + ["TRUNCATE audit_log"]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with app.transaction():
                    await set_tenant(app, tenant.id)
                    await app.execute(sql, *([tenant.id] if "$1" in sql else []))
    for role in ("postgres", "exceptao_migrator", "exceptao_audit_writer", "exceptao_operator"):
        for sql in statements + ["TRUNCATE audit_log, audit_pii, audit_anchor", "TRUNCATE audit_anchor"]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with admin.transaction():
                    await admin.execute(f"SET LOCAL ROLE {role}")
                    await set_tenant(admin, tenant.id)
                    await admin.execute(sql, *([tenant.id] if "$1" in sql else []))
    assert len(await rows(admin, tenant)) == 3


async def test_personal_data_may_be_erased_but_not_edited(pool, admin, tenant):
    [seq] = await append(pool, tenant, pii=Pii(email="bo@example.com", ip="198.51.100.1"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="erased"):
        await admin.execute(
            "UPDATE audit_pii SET email = 'eve@example.com' WHERE tenant_id = $1 AND seq = $2", tenant.id, seq
        )
    tombstone = "actor_tombstone_00000000-0000-4000-8000-000000000001"
    await admin.execute(
        "UPDATE audit_pii SET email = $3, ip = $3, user_agent = NULL, salt = NULL WHERE tenant_id = $1 AND seq = $2",
        tenant.id, seq, tombstone,
    )
    verdict = await verify_chain(pool, tenant.id)
    assert verdict.ok and verdict.erased_rows == 1


async def test_the_app_cannot_write_the_table_directly_or_for_another_tenant(pool, make_tenant):
    a, b = await make_tenant("a"), await make_tenant("b")
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await set_tenant(conn, a.id)
                await conn.execute(
                    "INSERT INTO audit_log (tenant_id, actor, action) VALUES ($1, 'system:x', 'a:b:c')", a.id
                )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="no tenant"):
            await conn.fetchval("SELECT audit_append('system:x', 'a:b:c', NULL, NULL, '{}', NULL, NULL)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await set_tenant(conn, a.id)
                await conn.execute("INSERT INTO audit_pending (tenant_id, actor, action, data)"
                                   " VALUES ($1, 'system:x', 'a:b:c', '{}')", a.id)
    assert (await verify_chain(pool, b.id)).total_rows == 1


async def test_events_of_a_rolled_back_transaction_never_enter_the_chain(pool, tenant):
    with pytest.raises(RuntimeError):
        async with tenant_transaction(pool, tenant.id) as conn:
            await record(conn, AuditAction.USER_CREATE, actor="system:test")
            raise RuntimeError("the change failed")
    await append(pool, tenant)
    verdict = await verify_chain(pool, tenant.id)
    assert verdict.ok and verdict.total_rows == 2


async def test_a_tenant_switch_before_commit_cannot_move_events(pool, make_tenant):
    a, b = await make_tenant("a"), await make_tenant("b")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_transaction(pool, a.id) as conn:
            await record(conn, AuditAction.USER_CREATE, actor="system:test")
            await set_tenant(conn, b.id)
    assert (await verify_chain(pool, a.id)).total_rows == 1
    assert (await verify_chain(pool, b.id)).total_rows == 1


async def test_record_refuses_bad_events_and_writes_nothing(pool, tenant):
    bad = [
        dict(action="not:an_enum:member"),
        dict(actor="root"),
        dict(data={"n": 2**60}),
        dict(data={"x": float("nan")}),
        dict(data={"s": "\ud800"}),
        dict(data={"s": "nul\x00"}),
        dict(data=["not", "an", "object"]),
        dict(pii=Pii(ip="not-an-address")),
    ]
    for kwargs in bad:
        args = {"action": AuditAction.USER_CREATE, "actor": "system:test", **kwargs}
        with pytest.raises((ValueError, NotCanonicalizable)):
            async with tenant_transaction(pool, tenant.id) as conn:
                await record(conn, args.pop("action"), **args)
    assert (await verify_chain(pool, tenant.id)).total_rows == 1


async def test_data_the_database_cannot_canonicalise_fails_the_commit_and_the_change(pool, tenant):
    with pytest.raises(asyncpg.NumericValueOutOfRangeError, match="IEEE-754"):
        async with tenant_transaction(pool, tenant.id) as conn:
            await conn.execute("INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, 'a@b.c', 'A')",
                               tenant.id)
            await conn.execute("SELECT audit_append('system:test', 'identity:user:create', NULL, NULL,"
                               " '{\"x\": 1e400}', NULL, NULL)")
    async with tenant_transaction(pool, tenant.id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM app_user") == 0
    assert (await verify_chain(pool, tenant.id)).total_rows == 1


async def test_finding_one_event_by_seq_uses_the_primary_key_even_without_statistics(admin):
    """audit_pii's foreign-key check looks up (tenant_id, seq); a plan through the fork
    index would scan the tenant's whole chain for every event with personal data."""
    async with admin.transaction():
        await admin.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await admin.execute("PREPARE find_event (uuid, bigint) AS"
                            " SELECT 1 FROM audit_log WHERE tenant_id = $1 AND seq = $2")
        plan = "\n".join(r[0] for r in await admin.fetch("EXPLAIN EXECUTE find_event (gen_random_uuid(), 1)"))
        await admin.execute("DEALLOCATE find_event")
    assert "audit_log_pkey" in plan, plan


async def test_action_names_are_domain_subject_verb():
    for action in AuditAction:
        domain, subject, verb = action.value.split(":")
        assert domain and subject and verb


@pytest.mark.slow
async def test_one_transaction_of_100000_appends_takes_linear_time(pool, make_tenant):
    """A quadratic append (a head row updated once per row) would take ~16x, not ~4x."""

    async def one_transaction(n: int) -> float:
        tenant = await make_tenant("bulk")
        async with tenant_transaction(pool, tenant.id) as conn:
            started = time.perf_counter()
            await conn.execute(
                "SELECT audit_append('system:bulk', 'identity:user:create', 'user', g::text,"
                " jsonb_build_object('n', g), NULL, NULL) FROM generate_series(1, $1) g",
                n,
            )
        elapsed = time.perf_counter() - started  # including the commit, where events are chained
        verdict = await verify_chain(pool, tenant.id, batch=50000)
        assert verdict.ok and verdict.total_rows == n + 1
        return elapsed

    small = await one_transaction(25_000)
    large = await one_transaction(100_000)
    assert large / small < 8, f"25k rows: {small:.2f}s, 100k rows: {large:.2f}s"
