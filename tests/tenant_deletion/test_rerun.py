"""A deletion stopped midway is run again and finishes, once; the object store's failure is said, not hidden."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from app.audit.verify import verify_tenant
from app.storage import open_store
from app.tenant_deletion.catalogue import tables_to_empty
from app.tenant_deletion.deletion import delete_tenant
from tests.evidence.conftest import on_s3
from tests.tenant_deletion.conftest import AUDIT_KEPT, counts, ended_days_ago, in_store, populate
from tests.web import Browser


async def test_a_run_the_store_stopped_is_run_again(cli, site, admin, pool, tenant, settings, capsys):
    world = await populate(site, admin, pool, tenant, settings)
    await ended_days_ago(cli, tenant, 40)
    capsys.readouterr()
    before = await counts(admin, tenant.id)
    # The second object cannot be removed: a folder stands where its file was (root can unlink any file).
    stuck = settings.storage_dir / world.objects[1]
    stuck.unlink()
    stuck.mkdir()
    (stuck / "inside").write_bytes(b"x")

    assert await cli("tenant", "delete", tenant.slug) == 1
    err = capsys.readouterr().err
    assert "the object store did not remove" in err and "run the command again" in err
    # Nothing of the database part happened, but the tenant is already out of reach.
    assert await counts(admin, tenant.id) == {**before, "tenant_deletion": 1, "audit_log": before["audit_log"] + 1}
    assert await admin.fetchval("SELECT action FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
                                tenant.id) == "tenant:deletion:start"
    assert await admin.fetchval("SELECT finished_at FROM tenant_deletion WHERE tenant_id = $1", tenant.id) is None
    assert (await Browser(site.test_client(), f"{tenant.slug}.localhost").get("/signin")).status_code == 404

    shutil.rmtree(stuck)
    assert await cli("tenant", "delete", tenant.slug) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["deleted"]["objects"] == 3 and report["deleted"]["rows"]["evidence"] == 2
    after = await counts(admin, tenant.id)
    assert {t: n for t, n in after.items() if n and t not in AUDIT_KEPT} == {}
    assert not any(in_store(settings.storage_dir, name) for name in world.objects)
    actions = [r["action"] for r in await admin.fetch(
        "SELECT action FROM audit_log WHERE tenant_id = $1 AND action IN ('tenant:tenant:delete',"
        " 'access:everyone:pseudonymise', 'tenant:deletion:start') ORDER BY seq", tenant.id)]
    assert actions == ["tenant:deletion:start", "access:everyone:pseudonymise", "tenant:tenant:delete"]  # once each
    assert (await verify_tenant(pool, tenant.id, settings)).ok


async def test_objects_in_s3_are_removed(s3_providers, site, admin, pool, tenant, settings):
    """Evidence and an export archive in an S3 bucket (a moto server): deletion removes each from the bucket."""
    from datetime import datetime, timedelta, timezone

    from tests.evidence.conftest import serving

    provider = s3_providers["r2"]
    on_bucket = await on_s3(settings, provider)
    async with serving(on_bucket) as s3_site:
        world = await populate(s3_site, admin, pool, tenant, on_bucket, files=1)
    await admin.execute("UPDATE tenant SET ended_at = now() - interval '31 days' WHERE id = $1", tenant.id)
    async with provider.client() as s3:
        await s3.head_object(Bucket=on_bucket.s3_bucket, Key=world.objects[0])    # there before

    store = open_store(on_bucket)
    try:
        deletion = await delete_tenant(admin, store, tenant.slug, actor="system:test",
                                       now=datetime.now(timezone.utc) + timedelta(seconds=1))
    finally:
        await store.close()
    assert deletion.objects == 2 and deletion.finished_at is not None      # the evidence file and the export
    async with provider.client() as s3:
        listed = await s3.list_objects_v2(Bucket=on_bucket.s3_bucket)
    assert listed.get("KeyCount", 0) == 0


@pytest.fixture
async def probe_table(admin):
    """A tenant table no migration has: what a later migration might add, with a row pointing at a user."""
    await admin.execute("""
        CREATE TABLE deletion_probe (
            tenant_id uuid NOT NULL REFERENCES tenant (id),
            user_id   uuid NOT NULL,
            note      text NOT NULL,
            FOREIGN KEY (tenant_id, user_id) REFERENCES app_user (tenant_id, id));
        SELECT isolate_by_tenant('deletion_probe');
    """)
    yield "deletion_probe"
    await admin.execute("DROP TABLE deletion_probe")


async def test_a_tenant_table_added_later_is_emptied_before_what_it_references(cli, admin, tenant, probe_table,
                                                                             capsys):
    from tests.web import make_user

    email = await make_user(admin, tenant)
    await admin.execute("INSERT INTO deletion_probe SELECT tenant_id, id, 'written by ' || email FROM app_user"
                        " WHERE tenant_id = $1", tenant.id)
    await ended_days_ago(cli, tenant, 31)
    capsys.readouterr()
    assert await cli("tenant", "delete", tenant.slug) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["deleted"]["rows"]["deletion_probe"] == 1 and report["deleted"]["rows"]["app_user"] == 1
    assert await admin.fetchval("SELECT count(*) FROM deletion_probe WHERE note LIKE '%' || $1", email) == 0


async def test_tables_empty_after_whatever_references_them_and_the_data_keys_last(admin, probe_table):
    order = [t.name for t in await tables_to_empty(admin)]
    assert order[-1] == "tenant_key"
    assert not {"audit_log", "audit_pii", "audit_anchor", "audit_pending", "tenant_deletion"} & set(order)
    for referencing, referenced in (("deletion_probe", "app_user"), ("evidence_finding", "evidence"),
                                    ("evidence", "exception"), ("exception_event", "exception"),
                                    ("mail_outbox", "app_user"), ("role_assignment", "role"),
                                    ("tenant_export", "app_user"), ("exception", "org_unit")):
        assert order.index(referencing) < order.index(referenced), (referencing, referenced)


async def test_deletion_waits_for_a_job_run_already_under_way(cli, admin, admin_url, tenant, capsys):
    """A run that began before the tenant was marked deleted may still write to it: deletion waits for it to end."""
    import asyncpg

    from app.jobs import JOB_LOCKS

    await ended_days_ago(cli, tenant, 31)
    running = await asyncpg.connect(admin_url)       # stands for an instance in the middle of a mail-outbox run
    try:
        await running.execute("SELECT pg_advisory_lock($1, hashtext('mail-outbox'))", JOB_LOCKS)
        deletion = asyncio.ensure_future(cli("tenant", "delete", tenant.slug))
        for _ in range(100):
            if await admin.fetchval("SELECT deleted_at IS NOT NULL FROM tenant WHERE id = $1", tenant.id):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert not deletion.done()
        assert await admin.fetchval("SELECT deleted_at IS NOT NULL FROM tenant WHERE id = $1", tenant.id)
        assert await admin.fetchval("SELECT finished_at FROM tenant_deletion WHERE tenant_id = $1", tenant.id) is None
        await running.execute("SELECT pg_advisory_unlock($1, hashtext('mail-outbox'))", JOB_LOCKS)
        assert await asyncio.wait_for(deletion, 30) == 0
    finally:
        await running.close()
    assert await admin.fetchval("SELECT finished_at FROM tenant_deletion WHERE tenant_id = $1", tenant.id)
