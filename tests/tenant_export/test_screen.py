"""The export screen and its job: who may ask, the step-up, the polling fragment from queued to done, the download."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile
from datetime import datetime, timezone

from app.jobs import run_job
from app.jobs.tenant_export import export_tenant
from tests.exceptions.test_screens import person, stale_second_factor
from tests.web import code_at

FRAGMENT = {"HX-Request": "true"}


async def exports(admin, tenant) -> list:
    return await admin.fetch("SELECT * FROM tenant_export WHERE tenant_id = $1 ORDER BY requested_at", tenant.id)


async def actions(admin, tenant) -> list[str]:
    return [r[0] for r in await admin.fetch(
        "SELECT action FROM audit_log WHERE tenant_id = $1 AND action LIKE 'tenant:export:%' ORDER BY seq", tenant.id)]


async def ask(ada) -> object:
    """Ada asks for an export, giving her second factor when asked for it."""
    response = await ada.browser.post("/admin/export")
    if 'name="step_up_code"' in ada.browser.last_body:
        response = await ada.browser.post("/admin/export", {"step_up_code": code_at(ada.secret, 1)})
    return response


async def test_only_a_whole_tenant_admin_may_export(full_team, admin, tenant):
    auditor = full_team["Aud"].browser
    assert (await auditor.get("/admin/export")).status_code == 403
    assert (await auditor.post("/admin/export")).status_code == 403
    assert await exports(admin, tenant) == []
    page = await full_team["Ada"].browser.get("/admin/export")
    assert page.status_code == 200 and "Export all data" in full_team["Ada"].browser.last_body
    index = await full_team["Ada"].browser.get("/admin")
    assert index.status_code == 200 and 'href="/admin/export"' in full_team["Ada"].browser.last_body


async def test_asking_needs_a_fresh_second_factor(full_team, admin, tenant):
    ada = full_team["Ada"]
    await stale_second_factor(admin, ada)
    prompt = await ada.browser.post("/admin/export")
    assert prompt.status_code == 200 and 'name="step_up_code"' in ada.browser.last_body
    assert await exports(admin, tenant) == []
    wrong = await ada.browser.post("/admin/export", {"step_up_code": "000000"})
    assert wrong.status_code == 401 and await exports(admin, tenant) == []
    done = await ada.browser.post("/admin/export", {"step_up_code": code_at(ada.secret, 1)})
    assert done.status_code == 303
    [export] = await exports(admin, tenant)
    assert done.headers["Location"] == f"/admin/export/{export['id']}"
    assert export["state"] == "queued" and export["requested_by"] == ada.id
    assert await actions(admin, tenant) == ["tenant:export:request"]
    # A second request while one is under way makes no second export.
    again = await ada.browser.post("/admin/export")
    assert again.status_code == 303 and again.headers["Location"] == "/admin/export?notice=busy"
    assert len(await exports(admin, tenant)) == 1


async def test_the_job_makes_it_while_the_fragment_shows_progress_then_it_downloads(
        full_team, populated, admin, pool, settings, tenant, admin_url):
    ada = full_team["Ada"]
    assert (await ask(ada)).status_code == 303
    [export] = await exports(admin, tenant)
    path = f"/admin/export/{export['id']}"

    await ada.browser.get(path, headers=FRAGMENT)
    queued = ada.browser.last_body
    assert "queued" in queued and 'hx-trigger="every 2s"' in queued and "<html" not in queued
    assert f'href="{path}"' in queued   # the reload link, for browsers without JavaScript

    # The mail outbox table is held by someone else for a moment: the job stops there, part-way through the tables.
    import asyncpg
    blocker = await asyncpg.connect(admin_url)
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("LOCK TABLE mail_outbox IN ACCESS EXCLUSIVE MODE")
    job = asyncio.create_task(run_job(pool, "tenant-export", lambda p, now, s: export_tenant(p, tenant.id, now, s),
                                      settings=settings))
    try:
        for _ in range(600):
            if await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                    " AND query LIKE '%mail_outbox%' AND datname = current_database()"):
                break
            await asyncio.sleep(0.05)
        progress = json.loads((await exports(admin, tenant))[0]["progress"])
        await ada.browser.get(path, headers=FRAGMENT)
        running = ada.browser.last_body
        assert "running" in running and "Writing the tables" in running and 'hx-trigger="every 2s"' in running
        assert f"{progress['done']} of {progress['total']}" in running and 0 < progress["done"] < progress["total"]
    finally:
        await transaction.rollback()
        await blocker.close()
    run_id = await job
    assert await admin.fetchval("SELECT outcome FROM job_run WHERE id = $1", run_id) == "ok"

    [export] = await exports(admin, tenant)
    assert export["state"] == "done" and export["expires_at"] > datetime.now(timezone.utc)
    await ada.browser.get(path, headers=FRAGMENT)
    done = ada.browser.last_body
    assert "done" in done and "hx-trigger" not in done and f'href="{path}/download"' in done
    assert export["sha256"].hex() in done
    page = await ada.browser.get(path)
    assert page.status_code == 200 and "<html" in ada.browser.last_body and "hx-trigger" not in ada.browser.last_body

    response = await ada.browser.client.get(f"{path}/download", headers=ada.browser._headers(),
                                            scope_base=ada.browser._scope())
    body = await response.get_data()
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/zip"
    assert len(body) == export["size"] and hashlib.sha256(body).digest() == export["sha256"]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["tenant"]["slug"] == tenant.slug
        assert archive.read(f"evidence/{populated.evidence_id}/firewall rules.txt") == populated.evidence_bytes
    assert manifest["chain_head"]["seq"] == export["chain_seq"]
    assert await actions(admin, tenant) == ["tenant:export:request", "tenant:export:start", "tenant:export:finish",
                                            "tenant:export:download"]
    # What is stored is encrypted: the evidence's words are nowhere in the object store.
    stored = [p.read_bytes() for p in (settings.data_dir / "objects" / "exports").rglob("*") if p.is_file()]
    assert len(stored) == 1 and b"manifest.json" not in stored[0] and b"Firewall rule" not in stored[0]


async def test_a_download_needs_a_fresh_second_factor_and_another_tenant_sees_nothing(
        site, full_team, admin, pool, settings, tenant, make_tenant):
    ada = full_team["Ada"]
    await ask(ada)
    [export] = await exports(admin, tenant)
    await run_job(pool, "tenant-export", lambda p, now, s: export_tenant(p, tenant.id, now, s), settings=settings)
    # Her step-up is over: the download asks for her second factor again, and nothing is recorded.
    await stale_second_factor(admin, ada)
    prompt = await ada.browser.get(f"/admin/export/{export['id']}/download")
    assert prompt.status_code == 200 and 'name="step_up_code"' in ada.browser.last_body
    assert "tenant:export:download" not in await actions(admin, tenant)
    # The administrator of another tenant, on their own host, finds no such export.
    otto = await person(site, admin, await make_tenant("other"), "Otto", "admin", totp=True)
    assert (await otto.browser.get(f"/admin/export/{export['id']}")).status_code == 404
    await otto.browser.post("/step-up", {"step_up_code": code_at(otto.secret, 1), "next": "/admin/export"})
    assert (await otto.browser.get(f"/admin/export/{export['id']}/download")).status_code == 404
    await otto.browser.get("/admin/export")
    assert str(export["id"]) not in otto.browser.last_body


async def test_an_interrupted_export_is_failed_and_an_expired_archive_is_deleted(full_team, admin, pool, settings,
                                                                                  tenant):
    ada = full_team["Ada"]
    await ask(ada)
    await run_job(pool, "tenant-export", lambda p, now, s: export_tenant(p, tenant.id, now, s), settings=settings)
    await admin.execute("INSERT INTO tenant_export (tenant_id, requested_by, state, started_at)"
                        " VALUES ($1, $2, 'running', now())", tenant.id, ada.id)
    later = datetime.now(timezone.utc).replace(year=datetime.now().year + 1)
    await run_job(pool, "tenant-export", lambda p, now, s: export_tenant(p, tenant.id, now, s), settings=settings,
                  now=later)
    first, second = await exports(admin, tenant)
    assert first["state"] == "done" and first["object_key"] is None
    assert second["state"] == "failed" and "interrupted" in second["error"]
    assert not [p for p in (settings.data_dir / "objects" / "exports").rglob("*") if p.is_file()]
    await ada.browser.get(f"/admin/export/{second['id']}")
    assert "The export failed" in ada.browser.last_body
    gone = await ada.browser.get(f"/admin/export/{first['id']}/download")
    assert gone.status_code == 410
