"""GET /audit/bundle: the bundle for users with audit.read, on the record, verifying offline."""

from __future__ import annotations

import json

import pytest

from app import create_app
from app.audit.anchor import anchor_tenant
from app.cli import main
from app.db import tenant_transaction
from tests.audit import bundle_chain
from tests.audit.bundle_chain import NOW, append
from tests.views.test_sessions import enrolled
from tests.views.test_tokens import give_role

anchoring = bundle_chain.anchoring


@pytest.fixture
async def site(anchoring):
    app = create_app(anchoring)
    async with app.test_app() as test_app:
        yield test_app


async def test_an_auditor_downloads_a_bundle_that_verifies_and_the_download_is_recorded(
        site, pool, admin, tenant, anchoring, tmp_path, capsys):
    await append(pool, tenant, {"k": 1})
    assert await anchor_tenant(pool, tenant.id, NOW, anchoring) == {"anchored": 1}
    browser, email, _ = await enrolled(site, admin, tenant)
    await give_role(admin, tenant, email, "auditor")

    response = await browser.client.get("/audit/bundle", headers=browser._headers(), scope_base=browser._scope())
    assert response.status_code == 200
    body = await response.get_data()
    header = json.loads(body.split(b"\n", 1)[0])
    head = header["head"]["seq"]
    assert response.headers["Content-Disposition"] == f'attachment; filename="audit-bundle-{tenant.slug}-seq{head}.jsonl"'
    assert response.headers["Cache-Control"] == "no-store"
    path = tmp_path / "downloaded.jsonl"
    path.write_bytes(body)
    assert main(["audit", "verify-bundle", str(path), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert (verdict["rows"], verdict["anchors"]) == (head, 1)
    assert email.encode() not in body

    async with tenant_transaction(pool, tenant.id) as conn:
        event = await conn.fetchrow("SELECT seq, actor, data FROM audit_log WHERE tenant_id = $1 AND action = $2",
                                    tenant.id, "audit:bundle:export")
        user_id = await conn.fetchval("SELECT id FROM app_user WHERE lower(email) = lower($1)", email)
    assert event["actor"] == f"user:{user_id}"
    assert json.loads(event["data"])["head_seq"] == head and event["seq"] > head


async def test_without_audit_read_there_is_no_bundle_and_nothing_recorded(site, pool, admin, tenant):
    browser, email, _ = await enrolled(site, admin, tenant)
    await give_role(admin, tenant, email, "requester")
    response = await browser.get("/audit/bundle")
    assert response.status_code == 403
    head = await browser.client.head("/audit/bundle", headers=browser._headers(), scope_base=browser._scope())
    assert head.status_code == 403
    async with tenant_transaction(pool, tenant.id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = $2",
                                   tenant.id, "audit:bundle:export") == 0


async def test_head_is_refused_rather_than_recording_a_download(site, admin, tenant):
    browser, email, _ = await enrolled(site, admin, tenant)
    await give_role(admin, tenant, email, "auditor")
    head = await browser.client.head("/audit/bundle", headers=browser._headers(), scope_base=browser._scope())
    assert head.status_code == 405
