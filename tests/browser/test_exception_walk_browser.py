"""In Chromium: the whole exception procedure, walked by two people in two browsers.

A requester drafts an exception and submits it; an approver finds it in "My
work" and returns it with a comment; the requester finds it returned with that
comment, adds the compensating controls and resubmits; the approver approves
through the step-up prompt, the comment typed before it kept. The lifecycle job
then runs on a clock the test moves (the start date, the last 30 days, the end
date): the pages show it active, expiring soon, expired by the scheduler, and
the risk register shows it as a residual risk, linked both ways.
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone

import pyotp
import pytest
from playwright.async_api import async_playwright, expect

from app.audit.verify import verify_tenant
from app.jobs import exception_govern, run_job
from tests.browser.conftest import CHROMIUM_ARGS, chromium_path
from tests.browser.test_signin_browser import sign_in
from tests.views.test_tokens import give_role
from tests.web import make_user

TODAY = datetime.now(timezone.utc).date()   # the server counts whole UTC days
STARTS = TODAY + timedelta(days=7)
ENDS = STARTS + timedelta(days=90)
TITLE = "Payroll export over plain FTP"


@pytest.fixture
async def browser():
    """One Chromium; each person gets their own context (cookies, session) from `person_page`."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def person_page(browser):
    """A page in a fresh context; the CSP violations it reports are collected in page.csp_violations."""
    page = await (await browser.new_context()).new_page()
    page.csp_violations = []
    page.on("console", lambda message: page.csp_violations.append(message.text)
            if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text else None)
    return page


async def lifecycle_on(pool, admin, settings, tenant, day: date) -> None:
    """One run of the scheduled lifecycle job with its clock at 09:00 UTC on `day`.

    The work is the job's own, for this test's tenant only: other tests' tenants
    share the database, and their exceptions are not this test's business.
    """

    async def this_tenant(pool, now, settings):
        return await exception_govern.lifecycle(pool, tenant.id, now, settings)

    now = datetime(day.year, day.month, day.day, 9, tzinfo=timezone.utc)
    run_id = await run_job(pool, "exception-lifecycle", this_tenant, settings=settings, now=now)
    run = await admin.fetchrow("SELECT outcome, error FROM job_run WHERE id = $1", run_id)
    assert (run["outcome"], run["error"]) == ("ok", None)


async def test_submit_return_resubmit_approve_activate_expire_then_the_risk_register(browser, live_url, admin, pool,
                                                                                      settings, tenant):
    base = f"http://{tenant.slug}.{live_url}"
    rhea = await make_user(admin, tenant, name="Rhea Requester")
    abel = await make_user(admin, tenant, name="Abel Approver")
    await give_role(admin, tenant, rhea, "requester")
    await give_role(admin, tenant, abel, "approver")
    requester, approver = await person_page(browser), await person_page(browser)

    # The requester drafts the exception (she owns it: the form's default) and submits it.
    await sign_in(requester, base, rhea)
    await requester.wait_for_url(f"{base}/account/totp?first=1")   # offered, not forced: she skips it
    await requester.goto(f"{base}/exceptions/new")
    await requester.fill("#exception-title", TITLE)
    await requester.fill("#exception-policy_ref", "ISO 27001 A.8.24")
    await requester.fill("#exception-assets", "payroll-sftp-01")
    await requester.fill("#exception-deviation", "The payroll file goes to the bank over plain FTP")
    await requester.fill("#exception-justification", "The bank's SFTP gateway is not ready before Q3")
    # Each choice asks the server for the rating; the first answer must land before the second is asked,
    # or it could arrive last and put "choose both" back.
    async with requester.expect_response(re.compile(r"/exceptions/rating\?")):
        await requester.select_option("#exception-likelihood", "2")
    await expect(requester.locator("#rating")).to_contain_text("choose both")
    await requester.select_option("#exception-impact", "4")
    await expect(requester.locator("#rating strong")).to_have_text("8")
    await expect(requester.locator("#exception-owner option:checked")).to_have_text("Rhea Requester")
    await requester.fill("#exception-starts_on", STARTS.isoformat())
    await requester.fill("#exception-ends_on", ENDS.isoformat())
    await requester.click("button:has-text('Save draft')")
    await expect(requester.locator("p.notice")).to_have_text("Saved as a draft. Check it, then submit it for review.")
    await expect(requester.locator("h1 .state")).to_have_text("draft")
    exception_url = requester.url.split("?")[0]
    exception_path = exception_url.removeprefix(base)
    assert re.fullmatch(r"/exceptions/[0-9a-f-]{36}", exception_path)
    await requester.click("#decide-under_review button:has-text('Submit for review')")
    await expect(requester.locator("p.notice")).to_have_text("Submitted for review.")
    await expect(requester.locator("h1 .state")).to_have_text("under review")

    # The approver enrols an authenticator at his first sign-in, finds it in My work, and returns it.
    await sign_in(approver, base, abel)
    await approver.wait_for_url(f"{base}/account/totp?first=1")
    secret = (await approver.text_content("#totp-secret")).strip()
    await approver.fill("#code", pyotp.TOTP(secret).now())
    await approver.click("button:has-text('Confirm')")
    await expect(approver.locator("#recovery-codes li")).to_have_count(10)
    await approver.goto(f"{base}/")
    await approver.click("header a:has-text('My work')")
    await approver.click(f"#awaiting-review a:has-text('{TITLE}')")
    await approver.wait_for_url(exception_url)
    await approver.click("a:has-text('Open the review page')")
    await expect(approver.locator("#earlier-rounds")).to_contain_text("No comments yet: this is its first review.")
    await approver.fill("#comment-returned", "Name the compensating controls: who watches the FTP transfer?")
    await approver.click("#decide-returned button:has-text('Return to the requester')")
    await approver.wait_for_url(f"{exception_url}?notice=returned")
    await expect(approver.locator("p.notice")).to_have_text("Returned to the requester with your comment.")
    await expect(approver.locator("h1 .state")).to_have_text("returned")

    # The requester finds it returned to her, reads why, adds the controls and resubmits.
    await requester.goto(f"{base}/exceptions/mine")
    await requester.click(f"#returned a:has-text('{TITLE}')")
    await requester.wait_for_url(exception_url)
    await expect(requester.locator("h1 .state")).to_have_text("returned")
    returned = requester.locator("#timeline li", has_text="under review → returned")
    await expect(returned).to_contain_text("Abel Approver")
    await expect(returned.locator("blockquote")).to_have_text(
        "Name the compensating controls: who watches the FTP transfer?")
    await requester.click("#actions a:has-text('Edit')")
    await expect(requester.locator("#exception-title")).to_have_value(TITLE)
    await requester.fill("#exception-compensating_controls",
                         "The firewall allows FTP to the bank's address only; the SOC alerts on any other transfer")
    await requester.click("button:has-text('Save changes')")
    await expect(requester.locator("p.notice")).to_have_text("Your changes are saved.")
    await expect(requester.locator("#exception")).to_contain_text("the SOC alerts on any other transfer")
    await requester.fill("#comment-under_review", "Controls added, as asked")
    await requester.click("#decide-under_review button:has-text('Resubmit for review')")
    await expect(requester.locator("p.notice")).to_have_text("Submitted for review.")
    await expect(requester.locator("h1 .state")).to_have_text("under review")

    # Minutes later the approver approves: his sign-in factor is too old now, so he is asked again.
    await admin.execute("UPDATE user_session SET factor_at = now() - interval '10 minutes'"
                        " WHERE user_id = (SELECT id FROM app_user WHERE email = $1)", abel)
    await approver.goto(f"{base}/exceptions/mine")
    await approver.click(f"#awaiting-review a:has-text('{TITLE}')")
    await approver.click("a:has-text('Open the review page')")
    await expect(approver.locator("#review-summary tr", has_text="Review round").locator("td")).to_have_text("2")
    await expect(approver.locator("#earlier-rounds")).to_contain_text("who watches the FTP transfer?")
    await expect(approver.locator("#substance")).to_contain_text("the SOC alerts on any other transfer")
    await approver.fill("#comment-approved", "Accepted until the gateway is ready, with the firewall rule")
    await approver.click("#decide-approved button:has-text('Approve')")
    await expect(approver.locator("h1")).to_have_text("Confirm it is you")
    await expect(approver.locator("#step-up-form input[name=comment]")).to_have_value(
        "Accepted until the gateway is ready, with the firewall rule")
    # The enrolment used the current step's code; the replay guard refuses it again, so take the next step's.
    await approver.fill("#step_up_code", pyotp.TOTP(secret).at(time.time() + 30))
    await approver.click("button:has-text('Confirm and continue')")
    await approver.wait_for_url(f"{exception_url}?notice=approved")
    await expect(approver.locator("p.notice")).to_have_text("Approved.")
    await expect(approver.locator("h1 .state")).to_have_text("approved")
    approval = approver.locator("#timeline li", has_text="approval 1: approved")
    await expect(approval).to_contain_text("Abel Approver")
    await expect(approval.locator("blockquote")).to_have_text(
        "Accepted until the gateway is ready, with the firewall rule")
    await approver.goto(f"{base}/exceptions/mine")
    await expect(approver.locator("#awaiting-review")).to_contain_text("Nothing waits for your review.")

    # The scheduler: nothing the day before the start, active on it, expiring soon, expired at the end.
    await lifecycle_on(pool, admin, settings, tenant, STARTS - timedelta(days=1))
    await requester.goto(exception_url)
    await expect(requester.locator("h1 .state")).to_have_text("approved")
    for day, shown in ((STARTS, "active"), (ENDS - timedelta(days=30), "expiring soon"), (ENDS, "expired")):
        await lifecycle_on(pool, admin, settings, tenant, day)
        await requester.reload()
        await expect(requester.locator("h1 .state")).to_have_text(shown)
    timeline = requester.locator("#timeline li")
    await expect(timeline.filter(has_text="approved → active")).to_contain_text("the scheduler (activation)")
    await expect(timeline.filter(has_text="active → expiring soon")).to_contain_text("the scheduler (expiry)")
    await expect(timeline.filter(has_text="expiring soon → expired")).to_contain_text("the scheduler (expiry)")

    # The risk register holds it as a residual risk, linked to the exception and back.
    await requester.click("header a:has-text('Risk register')")
    await requester.wait_for_url(f"{base}/risks")
    row = requester.locator("#risks tr", has=requester.locator(f"a[href='{exception_path}']"))
    await expect(row).to_have_count(1)
    await expect(row.locator(f"a[href='{exception_path}']")).to_have_text(TITLE)
    await expect(row).to_contain_text("(expired)")
    await expect(row).to_contain_text("8 (2×4)")
    await expect(row).to_contain_text("Rhea Requester")
    await row.locator("a[href^='/risks/']").click()
    await expect(requester.locator("h1")).to_have_text(TITLE)
    risk_path = requester.url.removeprefix(base)
    assert re.fullmatch(r"/risks/[0-9a-f-]{36}", risk_path)
    residual_of = requester.locator("#risk tr", has_text="Residual risk of")
    await expect(residual_of).to_contain_text(f"the exception {TITLE}, expired")
    await residual_of.locator(f"a[href='{exception_path}']").click()
    await requester.wait_for_url(exception_url)
    await expect(requester.locator(f"main a[href='{risk_path}']")).to_have_text(TITLE)

    await approver.goto(f"{base}/risks")
    await expect(approver.locator(f"#risks a[href='{exception_path}']")).to_have_text(TITLE)
    await approver.goto(f"{base}{risk_path}")
    await approver.goto(exception_url)
    assert (await verify_tenant(pool, tenant.id, settings)).ok
    assert requester.csp_violations == []
    assert approver.csp_violations == []
