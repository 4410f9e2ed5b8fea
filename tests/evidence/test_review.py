"""Quarantine review (release, reject, four eyes, step-up) and the tenant's DLP policy."""

from __future__ import annotations

import json

import pytest

from tests.evidence.conftest import download, upload
from tests.evidence.helpers import (SENSITIVE, a_risk, an_exception, audit_actions, evidence_id_from, rows,
                                    stored_objects)
from tests.exceptions.test_screens import stale_second_factor
from tests.web import code_at


@pytest.fixture
async def quarantined(full_team, pool, admin, tenant):
    """Rhea's upload to her exception, quarantined (the default policy) for its card number, PESEL and IBAN."""
    e = await an_exception(pool, tenant, full_team)
    return evidence_id_from(await upload(full_team["Rhea"].browser, e, "customers.csv", SENSITIVE))


async def test_a_reviewer_releases_a_quarantined_file(full_team, quarantined, admin, tenant):
    abel = full_team["Abel"].browser
    await abel.get("/")
    assert 'href="/evidence/quarantine"' in abel.last_body      # the header leads reviewers there
    await full_team["Rhea"].browser.get("/")
    assert 'href="/evidence/quarantine"' not in full_team["Rhea"].browser.last_body
    await abel.get("/evidence/quarantine")
    assert "customers.csv" in abel.last_body and "4111 •••• •••• 1111" in abel.last_body
    assert f'href="/evidence/{quarantined}/details#decide"' in abel.last_body
    await abel.get(f"/evidence/{quarantined}/details")
    assert 'action="/evidence/' + str(quarantined) + '/decision"' in abel.last_body

    done = await abel.post(f"/evidence/{quarantined}/decision",
                           {"decision": "release", "comment": "Test card numbers from the vendor's sandbox"})
    assert done.status_code == 303 and done.headers["Location"] == f"/evidence/{quarantined}/details?notice=released"
    await abel.get(done.headers["Location"])
    assert "Released by Abel" in abel.last_body and "vendor&#39;s sandbox" in abel.last_body
    response, body = await download(full_team["Aud"].browser, quarantined)
    assert response.status_code == 200 and body == SENSITIVE

    decision = await admin.fetchrow("SELECT * FROM evidence_decision WHERE evidence_id = $1", quarantined)
    assert decision["decision"] == "release" and decision["decided_by"] == full_team["Abel"].id
    released = [r for r in await audit_actions(admin, tenant) if r["action"] == "evidence:evidence:release"]
    assert len(released) == 1 and "sandbox" not in released[0]["data"]       # the comment stays out of the chain
    assert json.loads(released[0]["data"])["findings"] == {"pan": 1, "pesel": 1, "iban": 1}
    await abel.get("/evidence/quarantine")
    assert "Nothing is waiting for review." in abel.last_body


async def test_a_rejected_file_is_deleted_and_its_record_stays(full_team, quarantined, admin, tenant, settings):
    abel = full_team["Abel"].browser
    assert len(stored_objects(settings.storage_dir)) == 1
    done = await abel.post(f"/evidence/{quarantined}/decision",
                           {"decision": "reject", "comment": "Real customer data: upload a redacted copy"})
    assert done.status_code == 303
    assert stored_objects(settings.storage_dir) == []
    [row] = await rows(admin, tenant)
    assert row["state"] == "rejected"
    response, body = await download(full_team["Aud"].browser, quarantined)
    assert response.status_code == 410 and SENSITIVE not in body
    await abel.get(f"/evidence/{quarantined}/details")
    assert "Rejected by Abel" in abel.last_body and "redacted copy" in abel.last_body
    assert [r["action"] for r in await audit_actions(admin, tenant)][-1] == "evidence:evidence:reject"
    again = await abel.post(f"/evidence/{quarantined}/decision", {"decision": "release", "comment": "changed my mind"})
    assert again.status_code == 409 and "nothing left to decide" in abel.last_body


async def test_a_decision_needs_a_comment_and_keeps_what_was_typed(full_team, quarantined, admin, tenant):
    abel = full_team["Abel"].browser
    refused = await abel.post(f"/evidence/{quarantined}/decision", {"decision": "release", "comment": "  "})
    assert refused.status_code == 422 and "a comment is required" in abel.last_body
    odd = await abel.post(f"/evidence/{quarantined}/decision", {"decision": "burn", "comment": "<keep this>"})
    assert odd.status_code == 422 and "&lt;keep this&gt;</textarea>" in abel.last_body
    assert [r["state"] for r in await rows(admin, tenant)] == ["quarantined"]


async def test_nobody_decides_on_their_own_upload(full_team, pool, admin, tenant):
    ada = full_team["Ada"].browser            # the administrator holds every capability
    r = await a_risk(pool, tenant, full_team, who="Olga")
    mine = evidence_id_from(await upload(ada, r, "mine.csv", SENSITIVE))
    refused = await ada.post(f"/evidence/{mine}/decision", {"decision": "release", "comment": "looks fine to me"})
    assert refused.status_code == 403 and "nobody decides on their own upload" in ada.last_body
    response, _ = await download(ada, mine)
    assert response.status_code == 403                       # nor downloads it before someone else has
    await ada.get("/evidence/quarantine")
    assert "your upload: another reviewer decides" in ada.last_body
    assert [r["state"] for r in await rows(admin, tenant)] == ["quarantined"]


async def test_only_reviewers_see_the_queue_and_decide(full_team, quarantined, admin, tenant):
    for name in ("Aud", "Rhea", "Olga"):
        browser = full_team[name].browser
        assert (await browser.get("/evidence/quarantine")).status_code == 403
        refused = await browser.post(f"/evidence/{quarantined}/decision", {"decision": "release", "comment": "ok"})
        assert refused.status_code == 403
    assert [r["state"] for r in await rows(admin, tenant)] == ["quarantined"]


async def test_a_decision_needs_a_recent_second_factor(full_team, quarantined, admin, tenant):
    await stale_second_factor(admin, full_team["Abel"])
    abel = full_team["Abel"].browser
    prompt = await abel.post(f"/evidence/{quarantined}/decision", {"decision": "release", "comment": "sandbox data"})
    assert prompt.status_code == 200 and 'name="step_up_code"' in abel.last_body
    assert 'value="sandbox data"' in abel.last_body                         # the comment waits for the code
    assert [r["state"] for r in await rows(admin, tenant)] == ["quarantined"]
    done = await abel.post(f"/evidence/{quarantined}/decision", {
        "decision": "release", "comment": "sandbox data", "step_up_code": code_at(full_team["Abel"].secret, 1)})
    assert done.status_code == 303
    assert [r["state"] for r in await rows(admin, tenant)] == ["released"]


async def test_the_administrator_sets_the_dlp_policy(full_team, admin, tenant, pool):
    ada = full_team["Ada"].browser
    await ada.get("/evidence/policy")
    assert 'value="quarantine" checked' in ada.last_body
    saved = await ada.post("/evidence/policy", {"policy": "block"})
    assert saved.status_code == 303 and saved.headers["Location"] == "/evidence/policy?notice=policy"
    await ada.get(saved.headers["Location"])
    assert 'value="block" checked' in ada.last_body and "The DLP policy is saved." in ada.last_body
    assert (await ada.post("/evidence/policy", {"policy": "block"})).headers["Location"].endswith("notice=unchanged")
    assert (await ada.post("/evidence/policy", {"policy": "anything"})).status_code == 422
    [changed] = [r for r in await audit_actions(admin, tenant) if r["action"] == "evidence:dlp_policy:update"]
    assert json.loads(changed["data"]) == {"from": "quarantine", "to": "block"}
    for name in ("Abel", "Aud", "Olga"):
        assert (await full_team[name].browser.post("/evidence/policy", {"policy": "accept_with_warning"})).status_code \
            == 403
    assert await admin.fetchval("SELECT dlp_policy FROM evidence_settings WHERE tenant_id = $1", tenant.id) == "block"
    # The policy now in force: the same file is refused.
    e = await an_exception(pool, tenant, full_team)
    assert (await upload(full_team["Rhea"].browser, e, "customers.csv", SENSITIVE)).status_code == 422


async def test_changing_the_policy_needs_a_recent_second_factor(full_team, admin, tenant):
    await stale_second_factor(admin, full_team["Ada"])
    ada = full_team["Ada"].browser
    prompt = await ada.post("/evidence/policy", {"policy": "accept_with_warning"})
    assert prompt.status_code == 200 and 'name="step_up_code"' in ada.last_body
    assert await admin.fetchval("SELECT count(*) FROM evidence_settings WHERE tenant_id = $1", tenant.id) == 0
