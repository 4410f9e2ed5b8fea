"""/admin/erasure, as a tenant administrator uses it: ask, see what would change, erase; the record and its export."""

from __future__ import annotations

import csv
import html
import io
import json
import uuid

from app.audit.erasure import DEFAULT_BASIS, NOTHING
from app.audit.verify import verify_chain
from tests.audit.test_erasure import person, places_holding
from tests.exceptions.test_screens import no_inline_script_or_style
from tests.views.test_admin import member
from tests.views.test_sessions import enrolled
from tests.views.test_tokens import give_role
from tests.web import code_at


async def administrator(site, admin, tenant):
    """A signed-in administrator with TOTP, a fresh second factor, and their TOTP secret."""
    browser, email, secret = await enrolled(site, admin, tenant)
    await give_role(admin, tenant, email, "admin")
    await browser.get("/admin/erasure")
    return browser, secret


async def stale_factor(admin, tenant) -> None:
    await admin.execute("UPDATE user_session SET factor_at = now() - interval '10 minutes' WHERE tenant_id = $1",
                        tenant.id)


def shown(browser) -> str:
    return html.unescape(browser.last_body)


async def test_an_administrator_sees_what_would_change_then_erases(site, admin, pool, tenant):
    _, email, _, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    browser, _ = await administrator(site, admin, tenant)
    assert DEFAULT_BASIS in shown(browser) and "Nobody has been erased" in browser.last_body
    assert no_inline_script_or_style(browser.last_body)
    rows = await admin.fetchval("SELECT count(*) FROM audit_pii WHERE tenant_id = $1 AND email = $2", tenant.id, email)
    head = await admin.fetchval("SELECT max(seq) FROM audit_log WHERE tenant_id = $1", tenant.id)

    asked = await browser.post("/admin/erasure/confirm", {"email": email.upper(), "basis": DEFAULT_BASIS,
                                                          "reference": "DSR-2026-017"})
    assert asked.status_code == 200 and no_inline_script_or_style(browser.last_body)
    page = shown(browser)
    assert f"<strong>{rows}</strong> audit records" in page and "The account of <strong>Jan Kowalski</strong>" in page
    assert await admin.fetchval("SELECT max(seq) FROM audit_log WHERE tenant_id = $1", tenant.id) == head  # nothing yet
    assert await places_holding(admin, email)

    done = await browser.post("/admin/erasure", {"email": email.upper(), "basis": DEFAULT_BASIS,
                                                 "reference": "DSR-2026-017"})
    assert done.status_code == 303 and done.headers["Location"] == "/admin/erasure?notice=erased"
    await browser.get("/admin/erasure?notice=erased")
    page = shown(browser)
    tombstone = await admin.fetchval("SELECT 'actor_tombstone_' || tombstone FROM erasure WHERE tenant_id = $1",
                                     tenant.id)
    assert "Erased." in page and tombstone in page and "DSR-2026-017" in page and DEFAULT_BASIS in page
    assert f"{rows} audit records, the account" in page
    assert await places_holding(admin, email) == []
    verdict = await verify_chain(pool, tenant.id)
    assert verdict.ok and verdict.erased_rows == rows


async def test_the_record_of_erasures_downloads_with_its_basis_and_no_address(site, admin, pool, tenant):
    _, email, _, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    browser, _ = await administrator(site, admin, tenant)
    basis = "Art. 6(1)(f): audit integrity, assessed by the DPO on 2026-11-20"
    assert (await browser.post("/admin/erasure", {"email": email, "basis": basis, "reference": "T-9"})).status_code == 303

    as_csv = await browser.get("/admin/erasure/export.csv")
    assert as_csv.status_code == 200 and as_csv.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["Content-Disposition"]
    [row] = list(csv.DictReader(io.StringIO(browser.last_body)))
    assert row["basis"] == basis and row["reference"] == "T-9" and row["tombstone"].startswith("actor_tombstone_")
    assert row["account_anonymised"] == "True" and int(row["audit_rows"]) >= 3
    assert email.lower() not in browser.last_body.lower() and "Jan Kowalski" not in browser.last_body

    as_json = await browser.get("/admin/erasure/export.json")
    assert as_json.status_code == 200 and as_json.headers["Content-Type"] == "application/json"
    [record] = json.loads(browser.last_body)["erasures"]
    assert record["basis"] == basis and record["tombstone"] == row["tombstone"]
    assert email.lower() not in browser.last_body.lower()
    assert (await browser.get("/admin/erasure/export.xml")).status_code == 404

    exports = await admin.fetch("SELECT data FROM audit_log WHERE tenant_id = $1 AND action = 'access:erasure:export'"
                                " ORDER BY seq", tenant.id)
    assert [json.loads(e["data"]) for e in exports] == [{"format": "csv", "rows": 1}, {"format": "json", "rows": 1}]


async def test_without_tenant_admin_the_screen_is_refused(site, admin, pool, tenant):
    _, email, _, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    browser, _, _ = await member(site, admin, tenant)
    await browser.get("/")
    for path in ("/admin/erasure", "/admin/erasure/export.csv"):
        assert (await browser.get(path)).status_code == 403, path
    for path in ("/admin/erasure/confirm", "/admin/erasure"):
        assert (await browser.post(path, {"email": email, "basis": DEFAULT_BASIS})).status_code == 403, path
    assert await admin.fetchval("SELECT count(*) FROM erasure WHERE tenant_id = $1", tenant.id) == 0
    assert await admin.fetchval("SELECT count(*) FROM audit_pii WHERE tenant_id = $1 AND email = $2"
                                " AND salt IS NOT NULL", tenant.id, email) >= 3


async def test_a_stale_second_factor_is_asked_for_again_keeping_the_form(site, admin, pool, tenant):
    _, email, _, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    browser, secret = await administrator(site, admin, tenant)
    await stale_factor(admin, tenant)
    typed = {"email": email, "basis": "Art. 6(1)(f), DPO note 17", "reference": "DSR-5"}

    prompt = await browser.post("/admin/erasure", typed)
    assert prompt.status_code == 200 and 'name="step_up_code"' in browser.last_body
    for name, value in typed.items():
        assert f'name="{name}" value="{value}"' in browser.last_body
    assert await admin.fetchval("SELECT count(*) FROM erasure WHERE tenant_id = $1", tenant.id) == 0

    done = await browser.post("/admin/erasure", {**typed, "step_up_code": code_at(secret, 1)})
    assert done.status_code == 303
    recorded = await admin.fetchrow("SELECT basis, reference FROM erasure WHERE tenant_id = $1", tenant.id)
    assert tuple(recorded) == ("Art. 6(1)(f), DPO note 17", "DSR-5")

    await stale_factor(admin, tenant)  # the confirmation step asks too: it tells who has a history here
    await browser.post("/admin/erasure/confirm", typed)
    assert 'name="step_up_code"' in browser.last_body and "audit record" not in browser.last_body


async def test_a_refused_request_keeps_what_was_typed_and_says_why(site, admin, pool, tenant):
    _, email, _, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    browser, _ = await administrator(site, admin, tenant)

    empty = await browser.post("/admin/erasure/confirm", {"email": email, "basis": " ", "reference": "DSR-8"})
    assert empty.status_code == 422 and "Give the legal basis." in shown(browser)
    assert f'value="{email}"' in browser.last_body and 'value="DSR-8"' in browser.last_body

    named = await browser.post("/admin/erasure/confirm", {"email": email, "basis": f"request of {email}"})
    assert named.status_code == 422 and "must not contain the address" in shown(browser)

    nobody = await browser.post("/admin/erasure/confirm", {"email": "nobody@example.com", "basis": DEFAULT_BASIS})
    assert nobody.status_code == 404 and NOTHING in shown(browser)
    assert 'value="nobody@example.com"' in browser.last_body

    assert await admin.fetchval("SELECT count(*) FROM erasure WHERE tenant_id = $1", tenant.id) == 0


async def test_an_administrator_cannot_erase_themselves(site, admin, pool, tenant):
    browser, _ = await administrator(site, admin, tenant)
    email = await admin.fetchval("SELECT u.email FROM app_user u JOIN user_session s ON s.user_id = u.id"
                                 " WHERE u.tenant_id = $1", tenant.id)
    await browser.post("/admin/erasure/confirm", {"email": email, "basis": DEFAULT_BASIS})
    assert "This is your own account" in browser.last_body and "Erase permanently" not in browser.last_body
    refused = await browser.post("/admin/erasure", {"email": email, "basis": DEFAULT_BASIS})
    assert refused.status_code == 409 and "You cannot erase your own account" in shown(browser)
    assert await admin.fetchval("SELECT count(*) FROM erasure WHERE tenant_id = $1", tenant.id) == 0


async def test_an_address_only_written_in_an_exception_can_be_erased_too(site, admin, pool, tenant):
    _, email, _, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    browser, _ = await administrator(site, admin, tenant)
    vendor = f"joe.{uuid.uuid4().hex[:6]}@supplier.example"  # a vendor's contact, named in the text, with no account here
    await admin.execute("UPDATE exception SET justification = justification || $2 WHERE tenant_id = $1",
                        tenant.id, f" Vendor contact: {vendor}.")

    await browser.post("/admin/erasure/confirm", {"email": vendor, "basis": DEFAULT_BASIS})
    page = shown(browser)
    assert "<strong>0</strong> audit records" in page and "No account in this workspace" in page
    assert "<strong>1</strong> other record\n" in page and vendor in await admin.fetchval(
        "SELECT justification FROM exception WHERE tenant_id = $1", tenant.id)

    assert (await browser.post("/admin/erasure", {"email": vendor, "basis": DEFAULT_BASIS})).status_code == 303
    assert await places_holding(admin, vendor) == [] and email.upper() in await admin.fetchval(
        "SELECT justification FROM exception WHERE tenant_id = $1", tenant.id)
    recorded = await admin.fetchrow("SELECT audit_rows, account_anonymised, other_records FROM erasure"
                                    " WHERE tenant_id = $1", tenant.id)
    assert tuple(recorded) == (0, False, 1)
