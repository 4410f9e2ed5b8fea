"""`exceptao tenant delete`: refused within the retention period, a dry run that changes nothing, and a deletion
that leaves only the pseudonymised chain, the tenant's slug and a record in counts."""

from __future__ import annotations

import json

import pytest

from app.audit.verify import verify_tenant
from app.jobs import for_each_tenant
from app.tenants import TenantError, create_tenant
from tests.audit.test_erasure import places_holding
from tests.tenant_deletion.conftest import (AUDIT_KEPT, counts, ended_days_ago, in_store, populate)
from tests.web import Browser


def printed(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


async def test_deletion_waits_for_the_end_and_the_retention_period(cli, admin, tenant, capsys):
    before = await counts(admin, tenant.id)
    assert await cli("tenant", "delete", tenant.slug) == 1
    assert f"tenant {tenant.slug} has not ended" in capsys.readouterr().err

    await ended_days_ago(cli, tenant, 29)
    ended = printed(capsys)
    assert await cli("tenant", "delete", tenant.slug) == 1
    refusal = capsys.readouterr().err
    allowed = ended["deletion_allowed_from"][:16].replace("T", " ")
    assert "kept for 30 days" in refusal and f"can be deleted from {allowed} UTC" in refusal

    # Undone before any deletion: the tenant goes on, and deletion is refused as for one that never ended.
    assert await cli("tenant", "end", tenant.slug, "--undo") == 0
    assert printed(capsys) == {"tenant": tenant.slug, "ended_at": None}
    assert await cli("tenant", "delete", tenant.slug) == 1
    assert "has not ended" in capsys.readouterr().err
    assert await cli("tenant", "end", tenant.slug, "--undo") == 1
    assert "nothing to undo" in capsys.readouterr().err

    after = await counts(admin, tenant.id)
    assert after["audit_log"] == before["audit_log"] + 2       # the end and its undoing, on the record
    assert {k: v for k, v in after.items() if k != "audit_log"} == {k: v for k, v in before.items() if k != "audit_log"}
    assert [r["action"] for r in await admin.fetch(
        "SELECT action FROM audit_log WHERE tenant_id = $1 AND seq > 1 ORDER BY seq", tenant.id)] == [
        "tenant:subscription:end", "tenant:subscription:resume"]
    assert await admin.fetchval("SELECT deleted_at FROM tenant WHERE id = $1", tenant.id) is None
    assert await cli("tenant", "delete", "no-such-tenant") == 1
    assert "there is no tenant 'no-such-tenant'" in capsys.readouterr().err


async def test_dry_run_lists_everything_and_changes_nothing(cli, site, admin, pool, tenant, settings, capsys):
    world = await populate(site, admin, pool, tenant, settings)
    before = await counts(admin, tenant.id)
    assert await cli("tenant", "delete", tenant.slug, "--dry-run") == 0    # listed even before the period is over
    plan = printed(capsys)
    assert plan["allowed_now"] is False and plan["ended_at"] is None

    await ended_days_ago(cli, tenant, 31)
    capsys.readouterr()
    before = await counts(admin, tenant.id)
    assert await cli("tenant", "delete", tenant.slug, "--dry-run") == 0
    plan = printed(capsys)
    assert plan["allowed_now"] is True and plan["dry_run"] is True
    expected = {t: n for t, n in before.items() if t not in AUDIT_KEPT | {"audit_pending"}}
    # Pseudonymising records an erasure per identity (app.audit.erasure), which the deletion then removes too.
    assert plan["delete"]["rows"] == {**expected, "erasure": 3}
    assert expected["app_user"] == 3 and expected["evidence"] == 2 and expected["mail_outbox"] == 1
    assert expected["tenant_export"] == 1
    assert sorted(plan["delete"]["objects"]["names"]) == sorted(world.objects)
    assert plan["delete"]["mail_queue"] == 1 and plan["delete"]["notifications"] == 1
    assert plan["delete"]["data_keys"] == 1
    # The chain gains three events: the deletion's start, everyone pseudonymised, the deletion.
    assert plan["keep"]["audit_log"] == before["audit_log"] + 3 and plan["keep"]["audit_pii"] == before["audit_pii"]
    assert plan["keep"]["audit_pii_pseudonymised"] == before["audit_pii"] > 0
    assert not any(email in json.dumps(plan) for email in world.emails)

    assert await counts(admin, tenant.id) == before
    assert all(in_store(settings.storage_dir, name) for name in world.objects)
    assert (await Browser(site.test_client(), f"{tenant.slug}.localhost").get("/signin")).status_code == 200


async def test_deletion_leaves_only_the_pseudonymised_chain(cli, site, admin, pool, settings, make_tenant, capsys):
    doomed = await make_tenant("doomed")
    neighbour = await make_tenant("neighbour")
    world = await populate(site, admin, pool, doomed, settings)
    next_door = await populate(site, admin, pool, neighbour, settings, files=1)
    await ended_days_ago(cli, doomed, 31)
    capsys.readouterr()
    before = await counts(admin, doomed.id)
    neighbour_before = await counts(admin, neighbour.id)
    pii_rows = before["audit_pii"]
    assert "mail_outbox.body" in await places_holding(admin, world.emails[1])     # the search finds what is there

    assert await cli("tenant", "delete", doomed.slug, "--dry-run") == 0
    plan = printed(capsys)
    assert await counts(admin, doomed.id) == before

    assert await cli("tenant", "delete", doomed.slug) == 0
    report = printed(capsys)
    assert report["deleted"]["objects"] == 3 and report["already_deleted"] is False   # two evidence files, an export
    assert report["deleted"]["rows"] == plan["delete"]["rows"]            # the dry run said exactly this
    assert report["kept"] == {k: v for k, v in plan["keep"].items() if k in report["kept"]}
    assert {t: n for t, n in report["deleted"]["rows"].items() if t != "erasure"} == {
        t: n for t, n in before.items() if t not in AUDIT_KEPT | {"audit_pending", "erasure"}}

    # Every tenant table but the chain's is empty for it; every identity in audit_pii is a tombstone.
    after = await counts(admin, doomed.id)
    assert {t: n for t, n in after.items() if n and t not in AUDIT_KEPT} == {}
    assert after["audit_pii"] == pii_rows and after["tenant_deletion"] == 1
    assert report["kept"] == {"audit_log": after["audit_log"], "audit_anchor": 0, "audit_pii": pii_rows,
                              "audit_pii_pseudonymised": pii_rows}
    assert after["audit_log"] == before["audit_log"] + 3    # the start, everyone pseudonymised, the deletion
    assert await admin.fetchval("SELECT count(*) FROM audit_pii WHERE tenant_id = $1 AND (salt IS NOT NULL"
                                " OR email NOT LIKE 'actor_tombstone_%' OR user_agent IS NOT NULL)", doomed.id) == 0

    # No object of it is left in the store; the neighbour's is.
    assert not any(in_store(settings.storage_dir, name) for name in world.objects)
    assert all(in_store(settings.storage_dir, name) for name in next_door.objects)

    # The chain still verifies, each pseudonymised row counted as erased.
    verdict = await verify_tenant(pool, doomed.id, settings)
    assert verdict.ok and verdict.erased_rows == pii_rows and verdict.total_rows == after["audit_log"]
    last = await admin.fetchrow("SELECT action, data FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
                                doomed.id)
    assert last["action"] == "tenant:tenant:delete"
    assert json.loads(last["data"])["objects"] == 3 and json.loads(last["data"])["rows"]["app_user"] == 3

    # Nobody's address is anywhere in the database.
    for email in world.emails:
        assert await places_holding(admin, email) == [], email

    # The neighbour is untouched.
    assert await counts(admin, neighbour.id) == neighbour_before
    assert (await verify_tenant(pool, neighbour.id, settings)).ok
    for email in next_door.emails:
        assert await places_holding(admin, email) != []

    # The slug is kept (never reused), the name is not; nothing can reach the tenant.
    row = await admin.fetchrow("SELECT slug, name, deleted_at FROM tenant WHERE id = $1", doomed.id)
    assert row["slug"] == doomed.slug and row["name"] == "Deleted tenant" and row["deleted_at"] is not None
    with pytest.raises(TenantError, match="already exists"):
        await create_tenant(admin, doomed.slug, "Someone else", actor="system:test")
    rhea = world.team["Rhea"].browser                       # still holding her session cookie
    for path in ("/", "/signin", "/exceptions"):
        assert (await rhea.get(path)).status_code == 404
    assert (await rhea.post("/signin", {"email": world.emails[0], "password": "x"})).status_code == 404
    api = await site.test_client().get("/api/audit/verify", headers={"X-Tenant": doomed.slug})
    assert api.status_code == 404
    assert doomed.id not in [t async for t in for_each_tenant(pool)]
    assert (await Browser(site.test_client(), f"{neighbour.slug}.localhost").get("/signin")).status_code == 200

    # Run again: nothing more to do, nothing changed, the first record shown.
    chain = after["audit_log"]
    assert await cli("tenant", "delete", doomed.slug) == 0
    again = printed(capsys)
    assert again["already_deleted"] is True and again["deleted"] == report["deleted"]
    assert await counts(admin, doomed.id) == after and after["audit_log"] == chain
    assert await cli("tenant", "end", doomed.slug, "--undo") == 1
    assert "is deleted" in capsys.readouterr().err

