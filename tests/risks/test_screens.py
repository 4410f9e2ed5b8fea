"""The risk register's screens as people use them: the register and its heat map, adding and editing a risk,
who may do which, and a site-bound owner who sees only their unit's risks."""

from __future__ import annotations

import json
from uuid import UUID

from app import access, risks
from app.accounts.passwords import hash_password
from app.audit.verify import verify_tenant
from app.db import set_tenant, tenant_transaction
from tests.risks.test_heatmap import cells
from tests.risks.test_mirror import approved
from tests.views.test_signin import sign_in
from tests.web import PASSWORD, Browser, make_user
from tests.exceptions.test_engine import move


async def signed_in(site, admin, tenant, role: str | None, *, within: UUID | None = None,
                    name: str = "Uma User") -> tuple[Browser, UUID]:
    """A signed-in browser of a new user holding `role` (in the whole tenant, or only `within` a unit)."""
    email = await make_user(admin, tenant, name=name)
    user_id = await admin.fetchval("SELECT id FROM app_user WHERE email = $1", email)
    if role:
        async with admin.transaction():
            await set_tenant(admin, tenant.id)
            await admin.execute(
                "INSERT INTO role_assignment (tenant_id, role_id, user_id, within_unit_id)"
                " SELECT $1, id, $2, $3 FROM role WHERE tenant_id = $1 AND seeded_as = $4",
                tenant.id, user_id, within, role)
    browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
    assert (await sign_in(browser, email)).status_code == 303
    await browser.get("/")  # a page of the signed-in session, whose forms carry its CSRF token
    return browser, user_id


def risk_form(owner: UUID, **changes) -> dict:
    form = {"title": "Ransomware on the file servers", "description": "Backups are online only.",
            "likelihood": "4", "impact": "5", "owner": str(owner), "treatment": "mitigate",
            "review_on": "2030-01-31"}
    form.update(changes)
    return form


def made(response) -> UUID:
    assert response.status_code == 303, response.status_code
    return UUID(response.headers["Location"].split("?")[0].rsplit("/", 1)[1])


async def chain_data(admin, tenant, action: str) -> list[dict]:
    rows = await admin.fetch("SELECT data::text AS data FROM audit_log WHERE tenant_id = $1 AND action = $2"
                             " ORDER BY seq", tenant.id, action)
    return [json.loads(r["data"]) for r in rows]


async def test_add_and_edit_a_risk_keeping_what_was_typed_when_refused(site, admin, pool, tenant, settings):
    browser, owner = await signed_in(site, admin, tenant, "risk_owner", name="Olga Owner")
    assert (await browser.get("/risks")).status_code == 200 and 'href="/risks/new"' in browser.last_body
    assert (await browser.get("/risks/new")).status_code == 200
    assert 'name="csrf_token"' in browser.last_body

    refused = await browser.post("/risks", risk_form(owner, title=" ", likelihood="9", review_on="next tuesday",
                                                     description="Typed <b>carefully</b>"))
    assert refused.status_code == 422
    page = browser.last_body
    assert "The risk was not saved" in page and "required" in page
    assert "a whole number from 1 to 5" in page and "a date (YYYY-MM-DD)" in page
    assert 'value="next tuesday"' in page and "Typed &lt;b&gt;carefully&lt;/b&gt;</textarea>" in page
    assert f'<option value="{owner}" selected>' in page
    assert await admin.fetchval("SELECT count(*) FROM risk WHERE tenant_id = $1", tenant.id) == 0

    risk_id = made(await browser.post("/risks", risk_form(owner)))
    await browser.get(f"/risks/{risk_id}?notice=created")
    assert "The risk is in the register." in browser.last_body
    assert "Ransomware on the file servers" in browser.last_body and "20 (likelihood 4 × impact 5)" in browser.last_body

    again = await browser.post(f"/risks/{risk_id}", risk_form(owner, title="Ransomware, revisited",
                                                              treatment="ignore"))
    assert again.status_code == 422
    assert 'value="Ransomware, revisited"' in browser.last_body
    assert "one of accept, mitigate, transfer or avoid" in browser.last_body
    assert await admin.fetchval("SELECT title FROM risk WHERE id = $1", risk_id) == "Ransomware on the file servers"

    saved = await browser.post(f"/risks/{risk_id}", risk_form(owner, impact="3", treatment="transfer"))
    assert saved.headers["Location"] == f"/risks/{risk_id}?notice=saved"
    await browser.get(saved.headers["Location"])
    assert "Saved." in browser.last_body and "12 (likelihood 4 × impact 3)" in browser.last_body
    assert "<td>Transfer</td>" in browser.last_body

    unchanged = await browser.post(f"/risks/{risk_id}", risk_form(owner, impact="3", treatment="transfer"))
    assert unchanged.headers["Location"] == f"/risks/{risk_id}?notice=unchanged"

    (created,) = await chain_data(admin, tenant, "risk:risk:create")
    assert created == {"before": None, "after": {"likelihood": 4, "impact": 5, "rating": 20, "treatment": "mitigate",
                                                 "review_on": "2030-01-31", "owner": str(owner)}}
    (updated,) = await chain_data(admin, tenant, "risk:risk:update")  # the unchanged save recorded nothing
    assert updated == {"before": {"impact": 5, "rating": 20, "treatment": "mitigate"},
                       "after": {"impact": 3, "rating": 12, "treatment": "transfer"},
                       "changed": ["impact", "treatment"]}
    actors = await admin.fetch("SELECT DISTINCT actor FROM audit_log WHERE tenant_id = $1 AND target_type = 'risk'",
                               tenant.id)
    assert [r["actor"] for r in actors] == [f"user:{owner}"]
    assert (await verify_tenant(pool, tenant.id, settings)).ok


async def test_reading_needs_exception_read_and_changing_needs_risk_manage(site, admin, pool, tenant):
    owner_browser, owner = await signed_in(site, admin, tenant, "risk_owner")
    risk_id = made(await owner_browser.post("/risks", risk_form(owner)))

    nobody, _ = await signed_in(site, admin, tenant, None)
    await nobody.get("/")
    assert 'href="/risks"' not in nobody.last_body
    assert (await nobody.get("/risks")).status_code == 403 and "exception.read" in nobody.last_body
    assert (await nobody.get(f"/risks/{risk_id}")).status_code == 403

    reader, _ = await signed_in(site, admin, tenant, "requester")
    await reader.get("/")
    assert 'href="/risks">Risk register</a>' in reader.last_body
    assert (await reader.get("/risks")).status_code == 200
    assert "Ransomware on the file servers" in reader.last_body and 'href="/risks/new"' not in reader.last_body
    assert (await reader.get(f"/risks/{risk_id}")).status_code == 200
    assert f'action="/risks/{risk_id}"' not in reader.last_body  # no edit form
    assert (await reader.get("/risks/new")).status_code == 403 and "risk.manage" in reader.last_body
    assert (await reader.post("/risks", risk_form(owner, title="Sneaky"))).status_code == 403
    assert (await reader.post(f"/risks/{risk_id}", risk_form(owner, title="Sneaky"))).status_code == 403

    # Without the form's CSRF token even the owner is refused.
    assert (await owner_browser.post(f"/risks/{risk_id}", risk_form(owner, title="Forged"),
                                     csrf=False)).status_code == 403
    assert await admin.fetchval("SELECT array_agg(title) FROM risk WHERE tenant_id = $1", tenant.id) == [
        "Ransomware on the file servers"]


async def test_the_heat_map_counts_the_risks_shown_and_follows_the_filters(site, admin, pool, tenant):
    browser, owner = await signed_in(site, admin, tenant, "risk_owner")
    _, other = await signed_in(site, admin, tenant, "risk_owner", name="Otto Other")
    async with tenant_transaction(pool, tenant.id) as conn:
        by = await access.load(conn, owner)
        for form in (risk_form(owner, title="Phishing", likelihood="3", impact="4"),
                     risk_form(owner, title="Laptop theft", likelihood="3", impact="4", treatment="accept"),
                     risk_form(other, title="Data centre flood", likelihood="5", impact="5", treatment="avoid")):
            await risks.create(conn, tenant.id, by, form)

    assert (await browser.get("/risks")).status_code == 200
    page = browser.last_body
    assert {k: n for k, n in cells(page).items() if n} == {(3, 4): 2, (5, 5): 1}
    assert "style=" not in page and "<style" not in page
    assert "3 risks in all." in page and "The heat map as a table" in page
    assert page.index("Data centre flood") < page.index("Phishing")  # highest rating first

    await browser.get("/risks?treatment=accept")
    assert {k: n for k, n in cells(browser.last_body).items() if n} == {(3, 4): 1}
    assert "Laptop theft" in browser.last_body and "Phishing" not in browser.last_body
    assert "1 risk matches these filters" in browser.last_body

    await browser.get(f"/risks?owner={other}")
    assert {k: n for k, n in cells(browser.last_body).items() if n} == {(5, 5): 1}
    assert f'<option value="{other}" selected>' in browser.last_body

    await browser.get("/risks?treatment=bogus&owner=not-a-person")  # ignored, not an error
    assert sum(cells(browser.last_body).values()) == 3

    fragment = await browser.get("/risks?treatment=avoid", headers={"HX-Request": "true"})
    body = browser.last_body
    assert "<html" not in body and body.lstrip().startswith('<div id="register">')
    assert "Data centre flood" in body and "HX-Request" in fragment.headers["Vary"]


async def test_a_mirrored_risk_links_to_its_exception(site, admin, pool, people):
    e = await approved(pool, people, title="Legacy FTP server")
    await move(pool, people, e, "REVOKED", "Abel", "The vendor was breached")
    await admin.execute("UPDATE app_user SET password_hash = $2 WHERE id = $1", people.users["Olga"],
                        hash_password(PASSWORD))
    browser = Browser(site.test_client(), f"{people.tenant.slug}.localhost")
    await sign_in(browser, f"olga@{people.tenant.slug}.example")
    await browser.get("/risks")
    assert f'<a href="/exceptions/{e}">Legacy FTP server</a>' in browser.last_body
    risk_id = await admin.fetchval("SELECT id FROM risk WHERE exception_id = $1", e)
    await browser.get(f"/risks/{risk_id}")
    assert "Residual risk of" in browser.last_body and f'href="/exceptions/{e}"' in browser.last_body
    assert "revoked" in browser.last_body and "<td>Mitigate</td>" in browser.last_body


async def test_a_site_bound_owner_sees_only_their_units_risks(site, admin, pool, tenant):
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        north, south = [await admin.fetchval("INSERT INTO org_unit (tenant_id, name) VALUES ($1, $2) RETURNING id",
                                             tenant.id, name) for name in ("Plant North", "Plant South")]
    ann, ann_id = await signed_in(site, admin, tenant, "risk_owner", within=north, name="Ann North")
    ben, ben_id = await signed_in(site, admin, tenant, "risk_owner", within=south, name="Ben South")
    tia, _ = await signed_in(site, admin, tenant, "risk_owner", name="Tia Everywhere")

    north_risk = made(await ann.post("/risks", risk_form(ann_id, title="Boiler control on the office LAN")))
    south_risk = made(await ben.post("/risks", risk_form(ben_id, title="Shared HMI password")))
    assert await admin.fetchval("SELECT org_unit_id FROM risk WHERE id = $1", north_risk) == north
    assert await admin.fetchval("SELECT org_unit_id FROM risk WHERE id = $1", south_risk) == south

    await ann.get("/risks")
    assert "Boiler control on the office LAN" in ann.last_body and "Shared HMI password" not in ann.last_body
    assert sum(cells(ann.last_body).values()) == 1
    assert (await ann.get(f"/risks/{south_risk}")).status_code == 404
    assert (await ann.post(f"/risks/{south_risk}", risk_form(ann_id, title="Taken over"))).status_code == 404
    assert await admin.fetchval("SELECT title FROM risk WHERE id = $1", south_risk) == "Shared HMI password"

    await tia.get("/risks")
    assert "Boiler control on the office LAN" in tia.last_body and "Shared HMI password" in tia.last_body
