"""A closed exception (EXPIRED, REVOKED) appears in the risk register by itself, once, linked both ways."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from app import risks
from app.audit.verify import verify_tenant
from app.db import tenant_transaction
from tests.exceptions.test_engine import draft, move


async def approved(pool, people, **changes):
    e = await draft(pool, people, **changes)
    await move(pool, people, e, "UNDER_REVIEW", "Rhea")
    await move(pool, people, e, "APPROVED", "Abel", "Accepted until the vendor ships SFTP")
    return e


async def register_entries(admin, tenant_id, exception_id):
    return await admin.fetch("SELECT * FROM risk WHERE tenant_id = $1 AND exception_id = $2", tenant_id, exception_id)


async def mirror_events(admin, tenant_id):
    rows = await admin.fetch("SELECT actor, target_id, data::text AS data FROM audit_log"
                             " WHERE tenant_id = $1 AND action = 'risk:risk:mirror' ORDER BY seq", tenant_id)
    return [{"actor": r["actor"], "target": r["target_id"], "data": json.loads(r["data"])} for r in rows]


async def test_expired_and_revoked_exceptions_each_appear_once_with_their_values(admin, pool, people, settings):
    tenant = people.tenant
    expiring = await approved(pool, people, title="Legacy FTP server", likelihood="3", impact="4",
                              compensating_controls="IP allow-list; weekly log review")
    await move(pool, people, expiring, "ACTIVE", "system:activation")
    await move(pool, people, expiring, "EXPIRED", "system:expiry")
    revoked = await approved(pool, people, title="Shared admin account", likelihood="2", impact="5",
                             deviation="One admin login shared by the night shift")
    await move(pool, people, revoked, "REVOKED", "Abel", "The vendor was breached")
    still_active = await approved(pool, people, title="Unpatched kiosk")
    await move(pool, people, still_active, "ACTIVE", "system:activation")

    (expired_risk,) = await register_entries(admin, tenant.id, expiring)
    (revoked_risk,) = await register_entries(admin, tenant.id, revoked)
    assert await register_entries(admin, tenant.id, still_active) == []
    review_on = datetime.now(timezone.utc).date() + timedelta(days=risks.MIRROR_REVIEW_DAYS)
    for risk, e in ((expired_risk, expiring), (revoked_risk, revoked)):
        source = await admin.fetchrow("SELECT * FROM exception WHERE id = $1", e)
        assert (risk["title"], risk["likelihood"], risk["impact"], risk["rating"], risk["owner_id"],
                risk["org_unit_id"]) == (source["title"], source["likelihood"], source["impact"], source["rating"],
                                         source["owner_id"], source["org_unit_id"])
        assert risk["owner_id"] == people.users["Olga"]
        assert source["deviation"] in risk["description"] and source["policy_ref"] in risk["description"]
        assert (risk["treatment"], risk["review_on"]) == ("mitigate", review_on)
    assert "IP allow-list; weekly log review" in expired_risk["description"]
    assert "None were recorded." in revoked_risk["description"]

    # Linked both ways: the exception's page finds its risk, the risk names its exception.
    async with tenant_transaction(pool, tenant.id, readonly=True) as conn:
        found = await risks.for_exception(conn, revoked)
        assert found.id == revoked_risk["id"]
        assert (found.exception_title, found.exception_state) == ("Shared admin account", "REVOKED")
        assert await risks.for_exception(conn, still_active) is None

    events = await mirror_events(admin, tenant.id)
    assert [(e["actor"], e["target"]) for e in events] == [
        ("system:expiry", str(expired_risk["id"])), (f"user:{people.users['Abel']}", str(revoked_risk["id"]))]
    assert events[0]["data"] == {
        "before": None, "exception": str(expiring), "exception_state": "EXPIRED",
        "after": {"likelihood": 3, "impact": 4, "rating": 12, "treatment": "mitigate",
                  "review_on": review_on.isoformat(), "owner": str(people.users["Olga"])}}
    assert "Olga" not in json.dumps(events) and "@" not in json.dumps(events)
    assert (await verify_tenant(pool, tenant.id, settings)).ok


async def test_mirroring_again_does_not_duplicate(admin, pool, people):
    e = await approved(pool, people)
    await move(pool, people, e, "REVOKED", "Abel", "No longer needed")
    async with tenant_transaction(pool, people.tenant.id) as conn:
        first = await risks.for_exception(conn, e)
        again = await risks.mirror_closed_exception(conn, e, "system:test")
    assert again == first.id
    assert len(await register_entries(admin, people.tenant.id, e)) == 1
    assert len(await mirror_events(admin, people.tenant.id)) == 1


async def test_an_open_or_refused_exception_is_not_mirrored(admin, pool, people):
    rejected = await draft(pool, people)
    await move(pool, people, rejected, "UNDER_REVIEW", "Rhea")
    await move(pool, people, rejected, "REJECTED", "Abel", "Too risky")
    withdrawn = await draft(pool, people)
    await move(pool, people, withdrawn, "WITHDRAWN", "Rhea")
    for e in (rejected, withdrawn):
        assert await register_entries(admin, people.tenant.id, e) == []
        with pytest.raises(ValueError, match="not closed"):
            async with tenant_transaction(pool, people.tenant.id) as conn:
                await risks.mirror_closed_exception(conn, e, "system:test")
    assert await admin.fetchval("SELECT count(*) FROM risk WHERE tenant_id = $1", people.tenant.id) == 0


async def test_a_failed_mirror_undoes_the_transition(admin, pool, people, monkeypatch):
    """One transaction: an exception never closes without its risk entering the register."""
    e = await approved(pool, people)

    async def broken(*args):
        raise RuntimeError("register unavailable")

    monkeypatch.setattr("app.exceptions.engine.mirror_closed_exception", broken)
    with pytest.raises(RuntimeError):
        await move(pool, people, e, "REVOKED", "Abel", "No longer needed")
    assert await admin.fetchval("SELECT state FROM exception WHERE id = $1", e) == "APPROVED"
