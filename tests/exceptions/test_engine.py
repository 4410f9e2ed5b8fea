"""The lifecycle engine: transitions allowed by the rows, refused otherwise, with separation of duties."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from app import access
from app.audit.verify import verify_tenant
from app.db import set_tenant, tenant_transaction
from app.exceptions import DraftInvalid, create_draft
from app.exceptions.engine import Actor, TransitionRefused, transition
from tests.access.org import Org, add_user, assign

ALL_STATES = ("DRAFT", "UNDER_REVIEW", "APPROVED", "REJECTED", "RETURNED", "ACTIVE", "EXPIRING_SOON", "EXPIRED",
              "REVOKED", "WITHDRAWN")


@pytest.fixture
async def people(admin, tenant):
    org = Org(tenant)
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        org.roles = {r["seeded_as"]: r["id"] for r in await admin.fetch(
            "SELECT id, seeded_as FROM role WHERE tenant_id = $1", tenant.id)}
        for name, role in (("Rhea", "requester"), ("Abel", "approver"), ("Bea", "approver"),
                           ("Olga", "risk_owner"), ("Aud", "auditor")):
            await add_user(admin, org, name)
            await assign(admin, org, role, user=name)
        await assign(admin, org, "requester", user="Abel")  # an approver who also requests
    return org


async def as_user(pool, org, name, stepped_up=True):
    async with tenant_transaction(pool, org.tenant.id, readonly=True) as conn:
        return Actor(await access.load(conn, org.users[name]), stepped_up=stepped_up)


def draft_form(org, **changes):
    start = date.today()
    form = {"title": "Legacy FTP server", "policy_ref": "ISO 27001 A.8.24", "deviation": "Plain FTP",
            "justification": "Vendor cannot do SFTP before Q3", "likelihood": "3", "impact": "4",
            "starts_on": start.isoformat(), "ends_on": (start + timedelta(days=180)).isoformat(),
            "owner": str(org.users["Olga"])}
    form.update(changes)
    return form


async def draft(pool, org, requester="Rhea", **changes):
    actor = await as_user(pool, org, requester)
    async with tenant_transaction(pool, org.tenant.id) as conn:
        return await create_draft(conn, org.tenant.id, actor.access, draft_form(org, **changes))


async def move(pool, org, exception_id, to, who, comment=None, stepped_up=True):
    if who.startswith("system:"):
        actor = Actor(system=who.removeprefix("system:"))
    else:
        actor = await as_user(pool, org, who, stepped_up)
    async with tenant_transaction(pool, org.tenant.id) as conn:
        return await transition(conn, exception_id, to, actor, comment)


async def state(admin, exception_id):
    return await admin.fetchval("SELECT state FROM exception WHERE id = $1", exception_id)


async def test_a_draft_keeps_every_problem_of_the_form(pool, people):
    with pytest.raises(DraftInvalid) as invalid:
        await draft(pool, people, title="", likelihood="9", ends_on="2000-01-01")
    assert set(invalid.value.problems) == {"title", "likelihood", "ends_on"}
    far = (date.today() + timedelta(days=500)).isoformat()
    with pytest.raises(DraftInvalid, match="at most 12 months"):
        await draft(pool, people, ends_on=far)


async def test_one_level_submit_return_resubmit_approve_activate_expire(admin, pool, people, settings):
    e = await draft(pool, people)
    assert (await move(pool, people, e, "UNDER_REVIEW", "Rhea")).to_state == "UNDER_REVIEW"
    with pytest.raises(TransitionRefused, match="comment is required"):
        await move(pool, people, e, "RETURNED", "Abel")
    await move(pool, people, e, "RETURNED", "Abel", "Name the vendor's deadline")
    await move(pool, people, e, "UNDER_REVIEW", "Rhea")
    with pytest.raises(TransitionRefused, match="second factor"):
        await move(pool, people, e, "APPROVED", "Abel", "ok", stepped_up=False)
    assert (await move(pool, people, e, "APPROVED", "Abel", "Accepted until Q3")).to_state == "APPROVED"
    with pytest.raises(TransitionRefused, match="Only the scheduler"):
        await move(pool, people, e, "ACTIVE", "Abel")
    await move(pool, people, e, "ACTIVE", "system:activation")
    await move(pool, people, e, "EXPIRING_SOON", "system:expiry")
    await move(pool, people, e, "EXPIRED", "system:expiry")
    assert await state(admin, e) == "EXPIRED"

    events = await admin.fetch("SELECT actor, to_state, comment FROM exception_event WHERE exception_id = $1"
                               " ORDER BY at", e)
    assert [r["to_state"] for r in events] == ["UNDER_REVIEW", "RETURNED", "UNDER_REVIEW", "APPROVED", "ACTIVE",
                                               "EXPIRING_SOON", "EXPIRED"]
    assert events[-1]["actor"] == "system:expiry"
    chain = await admin.fetch("SELECT data FROM audit_log WHERE tenant_id = $1 AND target_id = $2 ORDER BY seq",
                              people.tenant.id, str(e))
    assert len(chain) == 1 + len(events)  # the creation, then one entry per transition
    assert (await verify_tenant(pool, people.tenant.id, settings)).ok


async def test_separation_of_duties_and_two_levels(admin, pool, people):
    await admin.execute("UPDATE exception_settings SET two_levels_at_rating = 12 WHERE tenant_id = $1",
                        people.tenant.id)
    own = await draft(pool, people, requester="Abel")
    await move(pool, people, own, "UNDER_REVIEW", "Abel")
    with pytest.raises(TransitionRefused, match="you cannot decide on it"):
        await move(pool, people, own, "APPROVED", "Abel", "mine")
    with pytest.raises(TransitionRefused, match="you cannot decide on it"):
        await move(pool, people, own, "REJECTED", "Abel", "mine")

    high = await draft(pool, people)  # rating 12: two levels
    await move(pool, people, high, "UNDER_REVIEW", "Rhea")
    first = await move(pool, people, high, "APPROVED", "Abel", "fine by me")
    assert (first.to_state, first.approval_level) == ("UNDER_REVIEW", 1)
    with pytest.raises(TransitionRefused, match="someone else"):
        await move(pool, people, high, "APPROVED", "Abel", "again")
    second = await move(pool, people, high, "APPROVED", "Bea", "agreed")
    assert (second.to_state, second.approval_level) == ("APPROVED", 2)

    low = await draft(pool, people, likelihood="2", impact="2")  # rating 4: one level is enough
    await move(pool, people, low, "UNDER_REVIEW", "Rhea")
    assert (await move(pool, people, low, "APPROVED", "Bea", "small")).to_state == "APPROVED"


# Who may ask for which transition, from each state an exception can be brought to.
MATRIX = {
    ("DRAFT", "UNDER_REVIEW"): {"Rhea"},
    ("DRAFT", "WITHDRAWN"): {"Rhea"},
    ("UNDER_REVIEW", "RETURNED"): {"Abel", "Bea", "Olga"},
    ("UNDER_REVIEW", "REJECTED"): {"Abel", "Bea"},
    ("UNDER_REVIEW", "APPROVED"): {"Abel", "Bea"},
    ("UNDER_REVIEW", "WITHDRAWN"): {"Rhea"},
    ("UNDER_REVIEW", "ACTIVE"): set(),
    ("DRAFT", "APPROVED"): set(),
}


@pytest.mark.parametrize("edge", sorted(MATRIX))
async def test_the_transition_matrix_by_role(admin, pool, people, edge):
    start, to = edge
    allowed = set()
    for who in ("Rhea", "Abel", "Bea", "Olga", "Aud"):
        e = await draft(pool, people)
        if start == "UNDER_REVIEW":
            await move(pool, people, e, "UNDER_REVIEW", "Rhea")
        try:
            await move(pool, people, e, to, who, "because")
            allowed.add(who)
            assert await state(admin, e) == to
        except TransitionRefused:
            assert await state(admin, e) == start  # a refusal changes nothing
    assert allowed == MATRIX[edge]
