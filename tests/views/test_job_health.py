"""Job health: operators see every job's last run and error; tenant admins see job-level status only."""

from __future__ import annotations

import re
import uuid

from tests.operator.conftest import make_operator, operator, operator_sign_in, panel  # noqa: F401  (fixtures)
from tests.views.test_admin import administrator, member

JOB = "prune-throttle"  # a job in app.jobs.JOBS


def row_of(page: str, job: str) -> str:
    match = re.search(rf'<tr id="job-{re.escape(job)}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {job}"
    return match.group(1)


def no_inline_script_or_style(page: str) -> bool:
    return not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", page)


async def a_failure(admin) -> str:
    """An ok run of JOB, then two failed ones naming a tenant as tenant_by_tenant does; their error text."""
    await admin.execute("INSERT INTO job_run (job, finished_at, outcome) VALUES ($1, clock_timestamp(), 'ok')", JOB)
    error = f"TenantsFailed: 1 tenant(s) failed, first tenant {uuid.uuid4()}: ValueError: boom"
    for _ in range(2):
        await admin.execute("INSERT INTO job_run (job, finished_at, outcome, error)"
                            " VALUES ($1, clock_timestamp(), 'failed', $2)", JOB, error)
    return error


async def test_operators_see_a_failed_job_with_its_error(panel, operator, admin):  # noqa: F811
    error = await a_failure(admin)
    response = await operator_sign_in(panel, operator)
    assert response.status_code == 303, panel.last_body
    response = await panel.get("/operator/jobs")
    assert response.status_code == 200
    row = row_of(panel.last_body, JOB)
    assert "failed" in row and error in row and "2 failed runs" in row
    assert no_inline_script_or_style(panel.last_body)
    await panel.get("/operator")
    assert 'href="/operator/jobs"' in panel.last_body


async def test_the_operator_page_needs_an_operator_session(panel):  # noqa: F811
    response = await panel.get("/operator/jobs")
    assert response.status_code == 303 and response.headers["Location"] == "/operator/signin"


async def test_tenant_admins_see_job_status_without_operator_details(site, admin, tenant):
    error = await a_failure(admin)
    browser, _ = await administrator(site, admin, tenant)
    response = await browser.get("/admin/jobs")
    assert response.status_code == 200
    row = row_of(browser.last_body, JOB)
    assert "failed" in row and "2 failed runs" in row
    # The error text names another tenant: operators only.
    assert error not in browser.last_body and "TenantsFailed" not in browser.last_body
    assert "job-level status only" in browser.last_body
    assert no_inline_script_or_style(browser.last_body)


async def test_a_member_who_is_not_an_admin_is_refused(site, admin, tenant):
    browser, _, _ = await member(site, admin, tenant)
    assert (await browser.get("/admin/jobs")).status_code == 403
