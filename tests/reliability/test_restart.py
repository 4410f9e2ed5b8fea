"""PostgreSQL restarted, cleanly and by a crash, while the app is writing to the audit chain.

A private cluster (tests/reliability/cluster.py, fsync and synchronous_commit
on) is migrated and served by the app in process, with its real pool. Writers
append audit events through that pool, one transaction each, with a canary in
the event; a canary goes in the ledger only when its COMMIT returned. Mid-
stream PostgreSQL is restarted with `pg_ctl restart -m fast`, then again with
`-m immediate` (a crash: the server recovers from its WAL). Afterwards:

- every acknowledged canary is in audit_log (what the app said was written was);
- the chain verifies in a full walk (a crash cannot leave a gap or a bad link);
- /healthz and an append through the same pool succeed again within a few
  seconds of PostgreSQL being back, without the app restarting: the pool
  drops the connections the restart killed.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from app.audit import AuditAction, Target, record
from app.audit.verify import verify_chain
from app.config import Settings
from app.db import tenant_transaction
from app.migrations import migrate
from app.tenants import create_tenant
from tests.reliability.cluster import PrivateCluster

WRITERS = 4
# What a write may raise while the server goes away: the socket closing, the
# server refusing connections while it shuts down or recovers, and asyncpg's
# InternalClientError when a connection lost mid-commit is reset on release
# (the pool then terminates that connection).
CONNECTION_LOST = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
RECOVERY_BOUND_SECONDS = 10


@pytest.fixture
def cluster():
    cluster = PrivateCluster().init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
async def served(cluster, tmp_path):
    """The app on the private cluster, and a tenant on it."""
    from app import create_app

    await migrate(cluster.url)
    admin = await asyncpg.connect(cluster.url)
    try:
        tenant = await create_tenant(admin, "restart", "Restart", actor="system:test")
    finally:
        await admin.close()
    app = create_app(Settings(database_url=cluster.url, data_dir=tmp_path, jobs=False))
    async with app.test_app() as test_app:
        yield app, test_app.test_client(), tenant


class Load:
    """Writers appending canaries through the app's pool; the ledger holds the acknowledged ones."""

    def __init__(self, pool, tenant_id):
        self.pool, self.tenant_id = pool, tenant_id
        self.acknowledged: list[str] = []
        self.failed = 0
        self.running = True

    async def append(self) -> str:
        canary = uuid.uuid4().hex
        async with tenant_transaction(self.pool, self.tenant_id) as conn:
            await record(conn, AuditAction.USER_CREATE, actor="system:load", target=Target("user", canary),
                         data={"canary": canary})
        return canary

    async def writer(self) -> None:
        while self.running:
            try:
                self.acknowledged.append(await self.append())
            except CONNECTION_LOST:
                self.failed += 1
                await asyncio.sleep(0.02)


async def until_ok(attempt) -> float:
    """Seconds until `attempt()` first returns True, retrying every 20 ms (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < 3 * RECOVERY_BOUND_SECONDS:
        try:
            if await attempt():
                return time.monotonic() - started
        except CONNECTION_LOST:
            pass
        await asyncio.sleep(0.02)
    return float("inf")


async def test_acknowledged_writes_survive_restarts_and_the_app_serves_again(cluster, served):
    app, client, tenant = served
    load = Load(app.extensions["pool"], tenant.id)

    async def healthy() -> bool:
        return (await client.get("/healthz")).status_code == 200

    async def appends() -> bool:
        load.acknowledged.append(await load.append())
        return True

    writers = [asyncio.create_task(load.writer()) for _ in range(WRITERS)]
    recovery = {}
    try:
        for mode in ("fast", "immediate"):
            await asyncio.sleep(0.5)
            before = len(load.acknowledged)
            await asyncio.to_thread(cluster.restart, mode)
            recovery[mode] = (await until_ok(healthy), await until_ok(appends))
            assert len(load.acknowledged) > before
        await asyncio.sleep(0.5)
    finally:
        load.running = False
        await asyncio.gather(*writers)

    print(f"restart recovery (s, /healthz then append): {recovery}; "
          f"acknowledged {len(load.acknowledged)}, failed {load.failed}")
    for mode, (health, append) in recovery.items():
        assert health < RECOVERY_BOUND_SECONDS and append < RECOVERY_BOUND_SECONDS, (mode, recovery)

    admin = await asyncpg.connect(cluster.url)
    try:
        stored = {r[0] for r in await admin.fetch(
            "SELECT target_id FROM audit_log WHERE tenant_id = $1 AND actor = 'system:load'", tenant.id)}
    finally:
        await admin.close()
    lost = set(load.acknowledged) - stored
    assert not lost, f"{len(lost)} acknowledged appends are gone"
    verdict = await verify_chain(app.extensions["pool"], tenant.id, full=True)
    assert verdict.ok, verdict.as_json()
    assert verdict.total_rows >= len(load.acknowledged) + 1
