"""In Chromium: the exception screens with htmx running under the strict CSP.

A requester drafts an exception (the rating follows the chosen scores) and
submits it; an approver finds it in "My work", approves it from the review page
through the step-up prompt with the comment kept; the list filters swap only
the results, without reloading the page.
"""

from __future__ import annotations

import re
import time
from datetime import date, timedelta

import pyotp

from tests.browser.test_signin_browser import sign_in
from tests.views.test_tokens import give_role
from tests.web import make_user


async def test_draft_submit_and_approve_after_step_up_then_filter_the_list(browser_page, live_url, admin, tenant):
    page = browser_page
    base = f"http://{tenant.slug}.{live_url}"
    requester = await make_user(admin, tenant, name="Rhea Requester")
    approver = await make_user(admin, tenant, name="Abel Approver")
    await give_role(admin, tenant, requester, "requester")
    await give_role(admin, tenant, approver, "approver")

    await sign_in(page, base, requester)
    await page.wait_for_url(f"{base}/account/totp?first=1")
    await page.goto(f"{base}/")
    await page.click("header a:has-text('Exceptions')")
    await page.click("a:has-text('New exception')")
    await page.fill("#exception-title", "Legacy FTP server")
    await page.fill("#exception-policy_ref", "ISO 27001 A.8.24")
    await page.fill("#exception-deviation", "Files move over plain FTP")
    await page.fill("#exception-justification", "The vendor cannot do SFTP before Q3")
    await page.select_option("#exception-likelihood", "3")
    await page.wait_for_selector("#rating:has-text('choose both')")
    await page.select_option("#exception-impact", "4")
    await page.wait_for_selector("#rating strong:has-text('12')")      # htmx asked the server for the rating
    await page.select_option("#exception-owner", label="Abel Approver")
    await page.fill("#exception-ends_on", (date.today() + timedelta(days=90)).isoformat())
    await page.click("button:has-text('Save draft')")
    await page.wait_for_selector("text=Saved as a draft")
    exception_url = page.url.split("?")[0]
    await page.click("button:has-text('Submit for review')")
    await page.wait_for_selector("text=Submitted for review")
    await page.click("button:has-text('Sign out')")

    await sign_in(page, base, approver)
    await page.wait_for_url(f"{base}/account/totp?first=1")
    secret = (await page.text_content("#totp-secret")).strip()
    await page.fill("#code", pyotp.TOTP(secret).now())
    await page.click("button:has-text('Confirm')")
    await admin.execute("UPDATE user_session SET factor_at = now() - interval '10 minutes' WHERE tenant_id = $1",
                        tenant.id)
    await page.goto(f"{base}/")
    await page.click("header a:has-text('My work')")
    await page.click("#awaiting-review a:has-text('Legacy FTP server')")
    await page.click("a:has-text('Open the review page')")
    assert "The vendor cannot do SFTP before Q3" in await page.text_content("#substance")
    await page.fill("#comment-approved", "Accepted until Q3, with the firewall rule")
    await page.click("button:has-text('Approve')")
    await page.wait_for_selector("#step_up_code")
    await page.fill("#step_up_code", pyotp.TOTP(secret).at(time.time() + 30))
    await page.click("button:has-text('Confirm and continue')")
    await page.wait_for_url(f"{exception_url}?notice=approved")
    assert "Accepted until Q3, with the firewall rule" in await page.text_content("#timeline")

    await page.goto(f"{base}/exceptions")
    await page.evaluate("window.stillTheSamePage = true")
    await page.fill("#filter-q", "no such words")
    await page.press("#filter-q", "Enter")
    await page.wait_for_selector("#results:has-text('No exception matches')")
    await page.fill("#filter-q", "")
    await page.check("input[name=state][value=APPROVED]")
    await page.wait_for_url(re.compile(r"state=APPROVED"))              # the URL follows the filters
    await page.wait_for_selector("#results a:has-text('Legacy FTP server')")
    assert await page.evaluate("window.stillTheSamePage") is True       # only the results were swapped
    await page.goto(exception_url)
    assert page.csp_violations == []
