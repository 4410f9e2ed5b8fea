"""GET /api/audit/verify, /api/audit/public and /healthz, as an auditor calls them."""

from __future__ import annotations

import uuid

from dataclasses import replace
from datetime import datetime, timezone

import asyncpg
import pytest

from app import create_app
from app.audit import walk_limits
from app.audit.anchor import anchor_tenant
from app.config import Settings
from tests.conftest import tampering

FIVE_KEYS = {"ok", "total_rows", "head", "last_anchor_at", "broken_at"}
# What the verdict says about how it was reached, in both modes.
VERDICT_KEYS = FIVE_KEYS | {"mode", "checked_from", "erased_rows", "anchor"}


async def test_verify_an_intact_chain(client, admin, tenant):
    response = await client.get("/api/audit/verify", headers={"X-Tenant": tenant.slug})
    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == VERDICT_KEYS
    head = await admin.fetchval(
        "SELECT row_hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1", tenant.id)
    assert body == {"ok": True, "total_rows": 1, "head": head.hex(), "last_anchor_at": None, "broken_at": None,
                    "mode": "full", "checked_from": 1, "erased_rows": 0, "anchor": None}
    assert response.headers["Content-Type"].startswith("application/json")


async def test_verify_finds_the_tenant_by_host(client, tenant):
    response = await client.get("/api/audit/verify", headers={"Host": f"{tenant.slug}.localhost:8080"})
    assert response.status_code == 200
    assert (await response.get_json())["total_rows"] == 1


async def test_verify_a_broken_chain_answers_422(client, admin, tenant):
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{\"edited\": true}' WHERE tenant_id = $1", tenant.id)
    response = await client.get("/api/audit/verify", headers={"X-Tenant": tenant.slug})
    assert response.status_code == 422
    body = await response.get_json()
    assert body["ok"] is False and body["broken_at"] == 1 and body["reason"] == "hash_mismatch"
    assert FIVE_KEYS <= set(body)


async def test_unknown_or_missing_tenant_is_404_json(client):
    for headers in ({"X-Tenant": "no-such-tenant"}, {"X-Tenant": "../../etc"}, {}):
        response = await client.get("/api/audit/verify", headers=headers)
        assert response.status_code == 404
        body = await response.get_json()
        assert body["error"] == "Not Found" and body["message"]


async def test_public_lists_only_opted_in_tenants_without_content(client, make_tenant):
    shown = await make_tenant("shown", public=True)
    hidden = await make_tenant("hidden")
    response = await client.get("/api/audit/public")
    assert response.status_code == 200
    tenants = {t["slug"]: t for t in (await response.get_json())["tenants"]}
    assert hidden.slug not in tenants
    assert set(tenants[shown.slug]) == {"slug", "total_rows", "head", "last_anchor_at"}
    assert tenants[shown.slug]["total_rows"] == 1 and len(tenants[shown.slug]["head"]) == 64


async def test_healthz_follows_the_database(server_url, tmp_path):
    from tests.conftest import create_database, drop_database
    from app.migrations import migrate

    name = f"exceptao_health_{uuid.uuid4().hex[:12]}"  # other suites may share the server
    url = await create_database(server_url, name)
    try:
        await migrate(url)
        app = create_app(Settings(database_url=url, data_dir=tmp_path))
        async with app.test_app() as test_app:
            client = test_app.test_client()
            assert (await client.get("/healthz")).status_code == 200
            admin = await asyncpg.connect(server_url)
            try:
                await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
                down = await client.get("/healthz")
                assert down.status_code == 503
                assert (await down.get_json())["database"] == "unreachable"
                await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
                assert (await client.get("/healthz")).status_code == 200
            finally:
                await admin.close()
    finally:
        await drop_database(server_url, name)


async def test_verify_full_walks_every_row_in_the_same_format(client, admin, tenant):
    fast = await client.get("/api/audit/verify", headers={"X-Tenant": tenant.slug})
    full = await client.get("/api/audit/verify?full=1", headers={"X-Tenant": tenant.slug})
    assert fast.status_code == full.status_code == 200
    fast, full = await fast.get_json(), await full.get_json()
    assert set(fast) == set(full) == VERDICT_KEYS and full["mode"] == "full"
    # Tampering before any anchor: both modes walk it and answer 422.
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{\"edited\": true}' WHERE tenant_id = $1", tenant.id)
    broken = await client.get("/api/audit/verify?full=1", headers={"X-Tenant": tenant.slug})
    assert broken.status_code == 422
    assert (await broken.get_json())["broken_at"] == 1


async def walk(client, tenant, address: str, query: str = "?full=1"):
    return await client.get(f"/api/audit/verify{query}", headers={"X-Tenant": tenant.slug},
                            scope_base={"client": (address, 50000)})


@pytest.fixture
def long_from_one_row(monkeypatch):
    """Every walk of one row or more counts as long, so a test chain of a few rows stands for a million."""
    monkeypatch.setattr(walk_limits, "LONG_WALK", 0)


async def test_long_walks_are_limited_per_address_and_per_tenant(client, tenant, long_from_one_row):
    """A long walk costs seconds of CPU per million rows and anyone may ask: an address gets 6 an hour, a tenant 30."""
    assert [(await walk(client, tenant, "192.0.2.1")).status_code for _ in range(6)] == [200] * 6
    refused = await walk(client, tenant, "192.0.2.1")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "3600"
    body = await refused.get_json()
    assert body["error"] == "Too Many Requests" and "full=1" in body["message"] and "bundle" in body["message"]
    # This chain has no anchor: the default check walks every row too, so leaving out ?full=1 is no way round.
    assert (await walk(client, tenant, "192.0.2.1", "")).status_code == 429
    # Other addresses go on until the tenant's 30 are spent, counted from all of them.
    others = [(await walk(client, tenant, f"192.0.2.{n}")).status_code for n in range(2, 26)]
    assert others == [200] * 24
    assert (await walk(client, tenant, "192.0.2.99")).status_code == 429
    assert (await walk(client, tenant, "192.0.2.99", "")).status_code == 429


async def test_short_walks_are_not_limited(client, tenant):
    """A full walk of a small chain costs less than a page view: no count, however often."""
    assert [(await walk(client, tenant, "192.0.2.1")).status_code for _ in range(10)] == [200] * 10


async def test_the_walk_from_a_recent_anchor_is_not_limited(pool, tenant, settings, tsa, long_from_one_row):
    """With an anchor on the head, the default check walks nothing and stays free; ?full=1 is still counted."""
    anchoring = replace(settings, tsa_url=tsa.url, tsa_ca_file=tsa.ca)
    assert await anchor_tenant(pool, tenant.id, datetime.now(timezone.utc), anchoring) == {"anchored": 1}
    app = create_app(anchoring)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert [(await walk(client, tenant, "192.0.2.1")).status_code for _ in range(6)] == [200] * 6
        assert (await walk(client, tenant, "192.0.2.1")).status_code == 429
        fast = [await walk(client, tenant, "192.0.2.1", "") for _ in range(10)]
        assert [r.status_code for r in fast] == [200] * 10
        assert (await fast[-1].get_json())["mode"] == "from_anchor"

