"""Many writers on one tenant while other tenants write too: no gap, no fork."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.audit import AuditAction, Target, record
from app.audit.verify import verify_chain
from app.db import tenant_transaction

WRITERS = 32
APPENDS = 1000


@pytest.mark.slow
async def test_32_writers_times_1000_appends_make_one_gapless_chain(app_url, make_tenant):
    busy = await make_tenant("busy")
    others = [await make_tenant("other") for _ in range(3)]
    # Commit durability is not what this tests; the locking is the same either way.
    pool = await asyncpg.create_pool(app_url, min_size=WRITERS + 6, max_size=WRITERS + 6,
                                     server_settings={"synchronous_commit": "off"})

    async def writer(tenant, n: int, w: int):
        for i in range(n):
            async with tenant_transaction(pool, tenant.id) as conn:
                await record(conn, AuditAction.USER_CREATE, actor=f"system:writer{w}",
                             target=Target("user", f"{w}-{i}"), data={"w": w, "i": i})

    try:
        await asyncio.gather(
            *(writer(busy, APPENDS, w) for w in range(WRITERS)),
            *(writer(t, 200, 100 + k) for k, t in enumerate(others) for _ in range(2)),
        )
        async with tenant_transaction(pool, busy.id) as conn:
            seqs = [r[0] for r in await conn.fetch("SELECT seq FROM audit_log ORDER BY seq")]
            per_writer = await conn.fetch(
                "SELECT data->>'w' AS w, count(*) FROM audit_log WHERE seq > 1 GROUP BY 1")
        assert seqs == list(range(1, WRITERS * APPENDS + 2))
        assert {int(r["w"]): r["count"] for r in per_writer} == {w: APPENDS for w in range(WRITERS)}
        verdict = await verify_chain(pool, busy.id)
        assert verdict.ok and verdict.total_rows == WRITERS * APPENDS + 1
        for t in others:
            v = await verify_chain(pool, t.id)
            assert v.ok and v.total_rows == 1 + 2 * 200
    finally:
        await pool.close()
