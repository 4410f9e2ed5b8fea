"""The audit page as an auditor sees it: the verdict, the anchors, a discontinuity and an authority that is down."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from app import create_app
from app.audit import walk_limits
from app.audit.anchor import RETRY_FIRST, AnchorFailed, anchor_tenant
from tests.audit.test_anchor import append
from tests.conftest import tampering
from tests.views.test_admin import member
from tests.views.test_job_health import no_inline_script_or_style
from tests.views.test_tokens import give_role

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def anchoring(settings, tsa):
    return replace(settings, tsa_url=tsa.url, tsa_ca_file=tsa.ca)


@pytest.fixture
async def audit_site(anchoring):
    app = create_app(anchoring)
    async with app.test_app() as test_app:
        yield test_app


async def auditor(site, admin, tenant):
    browser, email, _ = await member(site, admin, tenant, name="Audrey Auditor")
    await give_role(admin, tenant, email, "auditor")
    return browser


def section(page: str, name: str) -> str:
    match = re.search(rf'<section class="card" id="{name}">(.*?)</section>', page, re.S)
    assert match, f"no section {name}"
    return match.group(1)


async def test_an_auditor_sees_the_verdict_from_the_latest_anchor_and_can_ask_for_every_row(
        audit_site, admin, pool, tenant, anchoring):
    await append(pool, tenant, 2)
    assert await anchor_tenant(pool, tenant.id, NOW, anchoring) == {"anchored": 1}
    await append(pool, tenant, 2)
    browser = await auditor(audit_site, admin, tenant)

    response = await browser.get("/audit")
    assert response.status_code == 200
    page = browser.last_body
    assert 'href="/audit"' in page  # in the header
    verdict = section(page, "verdict")
    assert "The chain verifies" in verdict and "From the latest anchor: rows 4 to" in verdict
    assert 'name="full" value="1"' in verdict
    anchors = section(page, "anchors")
    assert re.search(r'<tr id="anchor-3">.*?verified.*?yes', anchors, re.S)
    assert "The timestamp authority answers" in section(page, "authority")
    assert 'id="discontinuities"' not in page
    assert ('href="/audit/bundle"' in page) == ("audit_bundle.download" in audit_site.app.view_functions)
    assert no_inline_script_or_style(page)

    await browser.get("/audit?full=1")
    assert "Every row recomputed" in section(browser.last_body, "verdict")


async def test_an_authority_that_is_down_is_shown_with_its_retry_state(audit_site, admin, pool, tenant, anchoring,
                                                                       tsa):
    with tsa.down(), pytest.raises(AnchorFailed):
        await anchor_tenant(pool, tenant.id, NOW, anchoring)
    browser = await auditor(audit_site, admin, tenant)
    await browser.get("/audit")
    authority = section(browser.last_body, "authority")
    assert "The timestamp authority is failing" in authority
    assert "2026-11-23 08:00:00 UTC" in authority  # failing since
    assert (NOW + RETRY_FIRST).strftime("%Y-%m-%d %H:%M:%S UTC") in authority  # next attempt
    assert "unreachable" in authority and "<td>1</td>" in authority
    assert "No anchor yet" in section(browser.last_body, "anchors")


async def test_a_discontinuity_is_shown_first_and_the_verdict_fails(audit_site, admin, pool, tenant, anchoring):
    await append(pool, tenant, 2)
    assert await anchor_tenant(pool, tenant.id, NOW, anchoring) == {"anchored": 1}
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET row_hash = sha256(row_hash) WHERE tenant_id = $1 AND seq = 3",
                            tenant.id)
    with pytest.raises(AnchorFailed):
        await anchor_tenant(pool, tenant.id, NOW + timedelta(hours=1), anchoring)
    browser = await auditor(audit_site, admin, tenant)
    await browser.get("/audit")
    page = browser.last_body
    assert page.index('id="discontinuities"') < page.index('id="verdict"')
    assert "<td>3</td>" in section(page, "discontinuities")
    assert "The chain does not verify" in section(page, "verdict")
    assert re.search(r'<tr id="anchor-3">.*?<span class="error">no</span>', section(page, "anchors"), re.S)


async def test_without_audit_read_the_page_is_refused_and_not_linked(audit_site, admin, tenant):
    browser, _, _ = await member(audit_site, admin, tenant)
    assert (await browser.get("/audit")).status_code == 403
    await browser.get("/")
    assert 'href="/audit"' not in browser.last_body


async def test_long_walks_from_the_page_are_limited_per_person_and_the_rest_of_the_page_stays(
        audit_site, admin, pool, tenant, anchoring, monkeypatch):
    """The page's long walks are counted like the API's, per person: the seventh in an hour gets no verdict."""
    monkeypatch.setattr(walk_limits, "LONG_WALK", 0)  # the test's few rows stand for a million
    browser = await auditor(audit_site, admin, tenant)
    assert await anchor_tenant(pool, tenant.id, NOW, anchoring) == {"anchored": 1}
    head = await admin.fetchval("SELECT max(seq) FROM audit_log WHERE tenant_id = $1", tenant.id)
    assert [(await browser.get("/audit?full=1")).status_code for _ in range(6)] == [200] * 6

    refused = await browser.get("/audit?full=1")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "3600"
    page = browser.last_body
    verdict = section(page, "verdict")
    assert 'id="refused"' in verdict and "audit bundle" in verdict and "The chain verifies" not in verdict
    assert re.search(rf'<tr id="anchor-{head}">.*?verified', section(page, "anchors"), re.S)
    assert no_inline_script_or_style(page)
    # The anchor is on the head: the default check walks nothing and is not counted.
    assert (await browser.get("/audit")).status_code == 200
    assert "The chain verifies" in section(browser.last_body, "verdict")
    # Another auditor has their own six.
    other, email, _ = await member(audit_site, admin, tenant, name="Otto Other")
    await give_role(admin, tenant, email, "auditor")
    assert (await other.get("/audit?full=1")).status_code == 200
