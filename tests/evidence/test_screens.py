"""The evidence screens work without JavaScript and stay inside the CSP: plain forms, no inline script or style."""

from __future__ import annotations

import re

from tests.evidence.conftest import upload
from tests.evidence.helpers import SENSITIVE, a_risk, an_exception, evidence_id_from, set_policy
from tests.exceptions.test_screens import no_inline_script_or_style


def forms_post_with_csrf(page: str) -> bool:
    forms = re.findall(r"<form\b[^>]*>.*?</form>", page, flags=re.S)
    return all('method="post"' in f and 'name="csrf_token"' in f for f in forms)


async def test_every_evidence_page_is_plain_html(full_team, pool, admin, tenant):
    e = await an_exception(pool, tenant, full_team)
    r = await a_risk(pool, tenant, full_team)
    evidence_id = evidence_id_from(await upload(full_team["Rhea"].browser, e, "customers.csv", SENSITIVE))
    pages = [("Rhea", e), ("Olga", r), ("Abel", "/evidence/quarantine"), ("Abel", f"/evidence/{evidence_id}/details"),
             ("Ada", "/evidence/policy"), ("Aud", f"/evidence/{evidence_id}/details")]
    for name, path in pages:
        browser = full_team[name].browser
        response = await browser.get(path)
        assert response.status_code == 200, path
        assert no_inline_script_or_style(browser.last_body), path
        assert forms_post_with_csrf(browser.last_body), path
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    await full_team["Rhea"].browser.get(e)
    page = full_team["Rhea"].browser.last_body
    assert 'id="evidence"' in page and 'enctype="multipart/form-data"' in page and "customers.csv" in page
    await full_team["Olga"].browser.get(r)
    assert 'action="' + r + '/evidence"' in full_team["Olga"].browser.last_body
    await set_policy(admin, tenant, "block")
    refused = await upload(full_team["Rhea"].browser, e, "again.csv", SENSITIVE)
    assert refused.status_code == 422 and no_inline_script_or_style(full_team["Rhea"].browser.last_body)
