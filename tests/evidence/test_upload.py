"""Uploads: the DLP policy modes, unscannable files, names, the size limit, and who may upload."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.evidence.conftest import download, serving, upload
from tests.evidence.helpers import (CARD, CLEAN, IBAN, MALFORMED_PDF, PESEL, SENSITIVE, a_risk, an_exception,
                                    audit_actions, evidence_id_from, nothing_left, rows, set_policy, sha256,
                                    stored_objects, zip_bomb)
from tests.exceptions.test_screens import join, moved, person

MiB = 1024 * 1024


# The DLP policy ------------------------------------------------------------------

async def test_quarantine_is_the_default_and_keeps_findings_masked(full_team, pool, admin, tenant):
    team = full_team
    e = await an_exception(pool, tenant, team)
    evidence_id = evidence_id_from(await upload(team["Rhea"].browser, e, "customers.csv", SENSITIVE))
    [row] = await rows(admin, tenant)
    assert row["state"] == "quarantined"
    findings = {r["kind"]: (r["count"], r["sample"]) for r in await admin.fetch(
        "SELECT kind, count, sample FROM evidence_finding WHERE evidence_id = $1", evidence_id)}
    assert set(findings) == {"pan", "pesel", "iban"} and all(count == 1 for count, _ in findings.values())
    assert findings["pan"][1] == "4111 •••• •••• 1111"
    for value in (CARD, PESEL, IBAN, CARD.replace(" ", ""), IBAN.replace(" ", "")):
        assert all(value not in sample for _, sample in findings.values())

    rhea = team["Rhea"].browser
    await rhea.get(f"/evidence/{evidence_id}/details")
    assert "4111 •••• •••• 1111" in rhea.last_body and CARD not in rhea.last_body and PESEL not in rhea.last_body
    assert "Quarantined: it can be downloaded once a reviewer has released it." in rhea.last_body
    # Nobody downloads it before the review, not even with evidence.read ...
    response, body = await download(team["Aud"].browser, evidence_id)
    assert response.status_code == 403 and SENSITIVE not in body
    # ... but its reviewer may open what they are to judge.
    response, body = await download(team["Abel"].browser, evidence_id)
    assert response.status_code == 200 and body == SENSITIVE

    events = await audit_actions(admin, tenant)
    assert [r["action"] for r in events] == ["evidence:evidence:upload"] + ["evidence:finding:record"] * 3 \
        + ["evidence:evidence:download"]
    assert json.loads(events[0]["data"])["findings"] == {"pan": 1, "pesel": 1, "iban": 1}
    assert json.loads(events[0]["data"])["state"] == "quarantined"
    chain = json.dumps([json.loads(r["data"]) for r in events])
    assert "1111" not in chain and "customers" not in chain      # no sample, no file name in the chain


async def test_block_refuses_with_the_kinds_and_counts_and_stores_nothing(team, pool, admin, tenant, settings):
    await set_policy(admin, tenant, "block")
    e = await an_exception(pool, tenant, team)
    response = await upload(team["Rhea"].browser, e, "customers.csv", SENSITIVE * 3)
    assert response.status_code == 422
    page = team["Rhea"].browser.last_body
    assert "This file was refused" in page and "Nothing was stored" in page
    assert "<strong>pan</strong>: 3 found" in page and "<strong>pesel</strong>: 3 found" in page
    assert "4111 •••• •••• 1111" in page and CARD not in page
    assert await rows(admin, tenant) == [] and nothing_left(settings)
    [blocked] = await audit_actions(admin, tenant)
    assert blocked["action"] == "evidence:upload:block" and blocked["target_type"] == "exception"
    data = json.loads(blocked["data"])
    assert data["findings"] == {"pan": 3, "pesel": 3, "iban": 3} and data["sha256"] == sha256(SENSITIVE * 3)


async def test_accept_with_warning_stores_and_says_what_was_found(team, pool, admin, tenant):
    await set_policy(admin, tenant, "accept_with_warning")
    e = await an_exception(pool, tenant, team)
    response = await upload(team["Rhea"].browser, e, "customers.csv", SENSITIVE)
    evidence_id = evidence_id_from(response)
    await team["Rhea"].browser.get(response.headers["Location"])
    assert "Stored with a warning" in team["Rhea"].browser.last_body
    assert "4111 •••• •••• 1111" in team["Rhea"].browser.last_body
    [row] = await rows(admin, tenant)
    assert row["state"] == "stored"
    response, body = await download(team["Aud"].browser, evidence_id)
    assert response.status_code == 200 and body == SENSITIVE
    await team["Rhea"].browser.get(e)
    assert "with a warning" in team["Rhea"].browser.last_body


@pytest.mark.parametrize("name, data, reason, file_type", [
    ("report.docx", zip_bomb(), "zip bomb", "docx"),
    ("scan.pdf", MALFORMED_PDF, "malformed PDF", "pdf"),
    ("screenshot.png", b"\x89PNG\r\n\x1a\n" + bytes(2000), "unsupported file type", "binary"),
])
@pytest.mark.parametrize("policy", ["block", "quarantine", "accept_with_warning"])
async def test_unscannable_files_follow_the_same_policy(team, pool, admin, tenant, settings, name, data, reason,
                                                        file_type, policy):
    await set_policy(admin, tenant, policy)
    e = await an_exception(pool, tenant, team)
    response = await upload(team["Rhea"].browser, e, name, data)
    page = team["Rhea"].browser.last_body
    if policy == "block":
        assert response.status_code == 422 and "<strong>unscannable</strong>: " + reason in page
        assert await rows(admin, tenant) == [] and nothing_left(settings)
        [blocked] = await audit_actions(admin, tenant)
        assert json.loads(blocked["data"])["unscannable"].startswith(reason)
        return
    evidence_id = evidence_id_from(response)
    [row] = await rows(admin, tenant)
    assert row["state"] == ("quarantined" if policy == "quarantine" else "stored")
    assert row["unscannable"].startswith(reason) and row["file_type"] == file_type
    await team["Rhea"].browser.get(f"/evidence/{evidence_id}/details")
    assert "<strong>unscannable</strong>: " + reason in team["Rhea"].browser.last_body


async def test_a_clean_file_is_stored_whatever_the_policy(team, pool, admin, tenant):
    await set_policy(admin, tenant, "block")
    e = await an_exception(pool, tenant, team)
    evidence_id_from(await upload(team["Rhea"].browser, e, "rules.txt", CLEAN))
    assert [r["state"] for r in await rows(admin, tenant)] == ["stored"]


# Names and types ---------------------------------------------------------------

@pytest.mark.parametrize("sent, kept", [
    ("../../../etc/passwd", "passwd"),
    ("..\\..\\windows\\system32\\boot.ini", "boot.ini"),
    ("C:\\Users\\rhea\\Desktop\\audit report.pdf", "audit report.pdf"),
    ("/absolute/path/.htaccess", "htaccess"),
    ("..", "evidence"),
    ("invoice\u202efdp.exe", "invoicefdp.exe"),
    ("\uff0e\uff0e\uff0fsecret.txt", "secret.txt"),             # full-width dots and solidus
    ("tab\there and\nnewline.txt", "tab here and newline.txt"),
    ("con.txt", "_con.txt"),
])
async def test_names_are_sanitised(team, pool, admin, tenant, sent, kept):
    e = await an_exception(pool, tenant, team)
    evidence_id = evidence_id_from(await upload(team["Rhea"].browser, e, sent, CLEAN))
    [row] = await rows(admin, tenant)
    assert row["filename"] == kept
    response, _ = await download(team["Aud"].browser, evidence_id)
    assert "/" not in response.headers["Content-Disposition"].split("filename*=")[0]


async def test_the_type_comes_from_the_content_not_the_name(team, pool, admin, tenant):
    e = await an_exception(pool, tenant, team)
    evidence_id = evidence_id_from(await upload(team["Rhea"].browser, e, "invoice.pdf",
                                                b"<html><script>alert(1)</script></html>"))
    [row] = await rows(admin, tenant)
    assert row["file_type"] == "text" and row["content_type"] == "text/plain"
    response, _ = await download(team["Aud"].browser, evidence_id)
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Content-Disposition"].startswith("attachment;")


# The size limit -------------------------------------------------------------------

@pytest.fixture
async def small_limit_site(settings):
    async with serving(replace(settings, evidence_max_mb=1)) as site:
        yield site


async def test_a_file_over_the_limit_is_refused_with_413_and_nothing_stored(small_limit_site, admin, tenant, settings,
                                                                              pool):
    rhea = await person(small_limit_site, admin, tenant, "Rhea", "requester")
    team = {"Rhea": rhea, "Olga": rhea}
    e = await an_exception(pool, tenant, team)
    exactly = evidence_id_from(await upload(rhea.browser, e, "exactly.txt", b"x" * MiB))
    assert exactly
    response = await upload(rhea.browser, e, "big.txt", b"x" * (MiB + 1))
    assert response.status_code == 413 and "larger than the limit of 1 MB" in rhea.browser.last_body
    assert len(await rows(admin, tenant)) == 1 and len(stored_objects(settings.storage_dir)) == 1
    assert list((settings.data_dir / "spool").iterdir()) == []


async def test_a_declared_length_over_the_limit_is_refused_before_reading(small_limit_site, admin, tenant, settings,
                                                                          pool):
    rhea = await person(small_limit_site, admin, tenant, "Rhea", "requester")
    e = await an_exception(pool, tenant, {"Rhea": rhea, "Olga": rhea})
    response = await upload(rhea.browser, e, "small.txt", CLEAN, headers={"Content-Length": str(10 * MiB)})
    assert response.status_code == 413
    assert await rows(admin, tenant) == [] and nothing_left(settings)


async def test_a_body_that_grows_past_its_declared_length_is_cut_off(small_limit_site, admin, tenant, settings, pool):
    rhea = await person(small_limit_site, admin, tenant, "Rhea", "requester")
    e = await an_exception(pool, tenant, {"Rhea": rhea, "Olga": rhea})
    response = await upload(rhea.browser, e, "big.txt", b"y" * (3 * MiB), headers={"Content-Length": "1000"})
    assert response.status_code == 413
    assert await rows(admin, tenant) == [] and nothing_left(settings)


async def test_other_forms_keep_quarts_own_limit(small_limit_site, admin, tenant):
    rhea = await person(small_limit_site, admin, tenant, "Rhea", "requester")
    big = await rhea.browser.post("/exceptions", {"title": "x" * (17 * MiB)})
    assert big.status_code == 413


# Who may upload ----------------------------------------------------------------------

async def test_who_may_upload_to_an_exception(team, site, pool, admin, tenant, settings):
    e = await an_exception(pool, tenant, team)                 # Rhea requests it, Olga owns it
    other = await join(team, site, admin, tenant, "Otto", "requester")
    await join(team, site, admin, tenant, "Abel", "approver")
    for refused in ("Aud", "Abel"):
        assert (await upload(team[refused].browser, e, "x.txt", CLEAN)).status_code == 403
    assert (await upload(other.browser, e, "x.txt", CLEAN)).status_code == 403
    assert "requester or owner" in other.browser.last_body
    assert await rows(admin, tenant) == [] and nothing_left(settings)
    evidence_id_from(await upload(team["Rhea"].browser, e, "by the requester.txt", CLEAN))
    evidence_id_from(await upload(team["Olga"].browser, e, "by the owner.txt", CLEAN))   # risk.manage, the owner
    await team["Aud"].browser.get(e)
    assert "by the owner.txt" in team["Aud"].browser.last_body and 'name="file"' not in team["Aud"].browser.last_body
    await team["Rhea"].browser.get(e)
    assert 'enctype="multipart/form-data"' in team["Rhea"].browser.last_body
    # The requester holds no evidence.read: the list shows the file and its hash, with no link to download it.
    assert 'href="/evidence/' in team["Rhea"].browser.last_body
    assert f'<a href="/evidence/{(await rows(admin, tenant))[0]["id"]}" download>' not in team["Rhea"].browser.last_body


async def test_a_closed_exception_takes_no_more_evidence(team, pool, admin, tenant, settings):
    path = await an_exception(pool, tenant, team)
    await moved(pool, tenant, team, path.rsplit("/", 1)[1], "WITHDRAWN", "Rhea")
    response = await upload(team["Rhea"].browser, path, "late.txt", CLEAN)
    assert response.status_code == 409 and "withdrawn" in team["Rhea"].browser.last_body
    assert await rows(admin, tenant) == [] and nothing_left(settings)


async def test_who_may_upload_to_a_risk(team, pool, admin, tenant):
    r = await a_risk(pool, tenant, team)
    assert (await upload(team["Rhea"].browser, r, "x.txt", CLEAN)).status_code == 403
    evidence_id_from(await upload(team["Olga"].browser, r, "treatment plan.txt", CLEAN))
    await team["Olga"].browser.get(r)
    assert "treatment plan.txt" in team["Olga"].browser.last_body and sha256(CLEAN) in team["Olga"].browser.last_body


async def test_without_csrf_or_session_nothing_is_read_or_stored(team, pool, admin, tenant, settings):
    e = await an_exception(pool, tenant, team)
    rhea = team["Rhea"].browser
    assert (await upload(rhea, e, "x.txt", CLEAN, csrf=False)).status_code == 403
    session = rhea.cookies.pop("exceptao_session")
    assert (await upload(rhea, e, "x.txt", CLEAN)).status_code == 403
    rhea.cookies["exceptao_session"] = session
    assert await rows(admin, tenant) == [] and nothing_left(settings)


async def test_an_upload_without_a_file_or_with_an_empty_one_says_so(team, pool, admin, tenant):
    e = await an_exception(pool, tenant, team)
    rhea = team["Rhea"].browser
    assert (await upload(rhea, e, None, b"")).status_code == 422 and "Choose a file" in rhea.last_body
    assert (await upload(rhea, e, "empty.txt", b"")).status_code == 422 and "The file is empty" in rhea.last_body
    assert await rows(admin, tenant) == []


async def test_another_tenants_exception_is_not_found(team, site, pool, admin, tenant, make_tenant, settings):
    e = await an_exception(pool, tenant, team)
    eve = await person(site, admin, await make_tenant("other"), "Eve", "admin")
    # The same path on another tenant's host: that tenant has no such exception, and no risk of that id either.
    assert (await upload(eve.browser, e, "x.txt", CLEAN)).status_code == 404
    assert (await upload(eve.browser, "/risks/" + e.rsplit("/", 1)[1], "x.txt", CLEAN)).status_code == 404
    assert await rows(admin, tenant) == [] and nothing_left(settings)
