"""The exception screens as their users meet them: over HTTP, with cookies and CSRF, through the real app."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from app import access
from app.audit.verify import verify_tenant
from app.db import tenant_transaction
from app.exceptions import create_draft
from app.exceptions.engine import Actor, transition
from app.jobs import exception_govern
from tests.views import conftest as view_fixtures
from tests.views.test_admin import user_id
from tests.views.test_signin import sign_in
from tests.views.test_tokens import give_role
from tests.web import Browser, code_at, make_user, totp_secret_from

TODAY = datetime.now(timezone.utc).date()
site = view_fixtures.site          # the real app, served in-process


@dataclass
class Person:
    name: str
    id: UUID
    browser: Browser
    secret: str | None = None   # TOTP, for those who step up


async def person(site, admin, tenant, name: str, *roles: str, totp: bool = False) -> Person:
    email = await make_user(admin, tenant, name=name)
    for role in roles:
        await give_role(admin, tenant, email, role)
    browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
    await sign_in(browser, email)
    secret = None
    if totp:
        await browser.get("/account/totp")
        secret = totp_secret_from(browser.last_body)
        assert (await browser.post("/account/totp", {"code": code_at(secret)})).status_code == 200
    await browser.get("/")  # the sign-in renewed the CSRF seed: read the new token off a page
    return Person(name, await user_id(admin, email), browser, secret)


@pytest.fixture
async def team(site, admin, tenant):
    """Rhea requests, Abel approves (with TOTP), Olga owns risks, Aud audits; `join` adds whoever else a test needs."""
    return {p.name: p for p in [
        await person(site, admin, tenant, "Rhea", "requester"),
        await person(site, admin, tenant, "Abel", "approver", totp=True),
        await person(site, admin, tenant, "Olga", "risk_owner"),
        await person(site, admin, tenant, "Aud", "auditor"),
    ]}


async def join(team, site, admin, tenant, name: str, *roles: str, totp: bool = False) -> Person:
    team[name] = await person(site, admin, tenant, name, *roles, totp=totp)
    return team[name]


def form_for(team, **changes) -> dict:
    form = {"title": "Legacy FTP server", "policy_ref": "ISO 27001 A.8.24", "assets": "ftp01.example",
            "deviation": "Files move over plain FTP", "justification": "The vendor cannot do SFTP before Q3",
            "compensating_controls": "Firewall allows only the vendor's address", "likelihood": "3", "impact": "4",
            "starts_on": TODAY.isoformat(), "ends_on": (TODAY + timedelta(days=180)).isoformat(),
            "owner": str(team["Olga"].id)}
    return {**form, **changes}


async def drafted(pool, tenant, team, who: str = "Rhea", **changes) -> UUID:
    """A draft made through the service (fast), for tests about what the pages show of it."""
    async with tenant_transaction(pool, tenant.id) as conn:
        requester = await access.load(conn, team[who].id)
        return await create_draft(conn, tenant.id, requester, form_for(team, **changes))


async def moved(pool, tenant, team, exception_id: UUID, to: str, who: str, comment: str | None = None) -> None:
    async with tenant_transaction(pool, tenant.id) as conn:
        if who.startswith("system:"):
            actor = Actor(system=who.removeprefix("system:"))
        else:
            actor = Actor(await access.load(conn, team[who].id), stepped_up=True)
        await transition(conn, exception_id, to, actor, comment)


async def stale_second_factor(admin, person: Person) -> None:
    await admin.execute("UPDATE user_session SET factor_at = now() - interval '10 minutes' WHERE user_id = $1",
                        person.id)


def no_inline_script_or_style(page: str) -> bool:
    # The same check as tests/views/test_shell.py makes of every other page.
    return not (re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) or "<style" in page or " style=" in page
                or re.search(r"\son[a-z]+=", page))


def location(response) -> str:
    assert response.status_code == 303, response.status_code
    return response.headers["Location"]


# Submitting and editing ---------------------------------------------------------

async def test_the_submit_form_keeps_what_was_typed_and_saves_a_draft(team, admin, tenant):
    rhea = team["Rhea"].browser
    await rhea.get("/exceptions/new")
    assert "At most 12 months" in rhea.last_body and f'value="{TODAY.isoformat()}"' in rhea.last_body
    assert f'<option value="{team["Rhea"].id}" selected>' in rhea.last_body  # the requester owns it unless changed

    typed = form_for(team, title="", impact="9", ends_on=(TODAY + timedelta(days=500)).isoformat(),
                     deviation='Plain FTP, "no TLS" <at all>')
    refused = await rhea.post("/exceptions", typed)
    assert refused.status_code == 422
    page = rhea.last_body
    assert "Nothing was saved" in page
    assert 'id="exception-title-problem">required<' in page
    assert 'id="exception-impact-problem">a whole number from 1 to 5<' in page
    assert 'id="exception-ends_on-problem">at most 12 months after the start<' in page
    assert "Plain FTP, &#34;no TLS&#34; &lt;at all&gt;</textarea>" in page           # kept, and escaped
    assert 'value="ISO 27001 A.8.24"' in page and '<option value="3" selected>' in page
    assert f'<option value="{team["Olga"].id}" selected>' in page
    assert await admin.fetchval("SELECT count(*) FROM exception WHERE tenant_id = $1", tenant.id) == 0

    saved = await rhea.post("/exceptions", form_for(team))
    path = location(saved)
    assert re.fullmatch(r"/exceptions/[0-9a-f-]{36}\?notice=created", path)
    await rhea.get(path)
    assert "Saved as a draft" in rhea.last_body and "Legacy FTP server" in rhea.last_body
    assert "Submit for review" in rhea.last_body and ">draft<" in rhea.last_body
    assert "12</span> <span class=\"muted\">(3 × 4)" in rhea.last_body and "Olga" in rhea.last_body


async def test_only_the_requester_edits_and_only_while_it_is_a_draft(team, pool, admin, tenant):
    e = await drafted(pool, tenant, team)
    rhea, abel = team["Rhea"].browser, team["Abel"].browser
    await give_role(admin, tenant, (await admin.fetchval("SELECT email FROM app_user WHERE id = $1", team["Abel"].id)),
                    "requester")   # Abel may draft too, but this draft is not his
    await rhea.get(f"/exceptions/{e}/edit")
    assert 'value="Legacy FTP server"' in rhea.last_body and "Save changes" in rhea.last_body

    assert (await abel.get(f"/exceptions/{e}/edit")).status_code == 403
    assert "Only the exception&#39;s requester can edit it." in abel.last_body
    assert (await abel.post(f"/exceptions/{e}/edit", form_for(team, title="Not his"))).status_code == 403
    assert (await team["Aud"].browser.get(f"/exceptions/{e}/edit")).status_code == 403  # no exception.submit

    bad = await rhea.post(f"/exceptions/{e}/edit", form_for(team, title="Legacy FTP (finance)", likelihood=""))
    assert bad.status_code == 422 and 'value="Legacy FTP (finance)"' in rhea.last_body
    assert "a whole number from 1 to 5" in rhea.last_body
    assert await admin.fetchval("SELECT title FROM exception WHERE id = $1", e) == "Legacy FTP server"

    assert location(await rhea.post(f"/exceptions/{e}/edit", form_for(team, title="Legacy FTP (finance)"))) \
        == f"/exceptions/{e}?notice=saved"
    await rhea.get(f"/exceptions/{e}")
    assert "Legacy FTP (finance)" in rhea.last_body and "Changed: Title" in rhea.last_body

    await moved(pool, tenant, team, e, "UNDER_REVIEW", "Rhea")
    assert (await rhea.get(f"/exceptions/{e}/edit")).status_code == 409 and "under review" in rhea.last_body
    await rhea.get(f"/exceptions/{e}")
    assert f'href="/exceptions/{e}/edit"' not in rhea.last_body


# The procedure through the pages ---------------------------------------------

async def test_submit_return_resubmit_and_approve_after_step_up(team, pool, admin, tenant, settings):
    rhea, abel = team["Rhea"].browser, team["Abel"].browser
    e = location(await rhea.post("/exceptions", form_for(team))).split("?")[0]

    await rhea.get(e)
    assert f'action="{e}/transition"' in rhea.last_body and 'value="UNDER_REVIEW"' in rhea.last_body
    assert location(await rhea.post(f"{e}/transition", {"to": "UNDER_REVIEW", "comment": ""})) \
        == f"{e}?notice=under_review"
    await rhea.get(f"{e}?notice=under_review")
    assert "Submitted for review" in rhea.last_body and "draft → under review" in rhea.last_body
    assert "Approve" not in rhea.last_body  # the requester never decides on their own exception

    await abel.get("/exceptions/mine")
    assert "Awaiting my review" in abel.last_body and f'href="{e}"' in abel.last_body
    await abel.get(f"{e}/review")
    review = abel.last_body
    assert "Files move over plain FTP" in review and "The vendor cannot do SFTP before Q3" in review
    assert "Firewall allows only the vendor" in review and "One approval is needed" in review
    assert "No comments yet" in review
    for label in ("Return to the requester", "Reject", "Approve"):
        assert label in review
    assert f'action="{e}/decision"' in review and f'action="{e}/transition"' in review

    # A return needs a comment: refused on the review page, which is shown again.
    silent = await abel.post(f"{e}/transition", {"to": "RETURNED", "comment": "  ", "page": "review"})
    assert silent.status_code == 422 and "A comment is required" in abel.last_body
    assert "Review: Legacy FTP server" in abel.last_body
    assert await admin.fetchval("SELECT state FROM exception WHERE id = $1", UUID(e.rsplit("/", 1)[1])) \
        == "UNDER_REVIEW"
    # A comment over the limit is refused too, and what was typed stays in its form.
    long = "Name the deadline. " + "x" * 5000
    too_long = await abel.post(f"{e}/transition", {"to": "RETURNED", "comment": long, "page": "review"})
    assert too_long.status_code == 422
    assert "at most 5000 characters" in abel.last_body and long + "</textarea>" in abel.last_body

    assert location(await abel.post(f"{e}/transition", {"to": "RETURNED", "comment": "Name the vendor's deadline"})) \
        == f"{e}?notice=returned"
    await rhea.get("/exceptions/mine")
    returned = rhea.last_body.split('id="returned"')[1].split("</section>")[0]
    assert f'href="{e}"' in returned
    await rhea.get(e)
    assert "Name the vendor&#39;s deadline" in rhea.last_body and "Resubmit for review" in rhea.last_body
    await rhea.post(f"{e}/transition", {"to": "UNDER_REVIEW", "comment": "Deadline: 30 June"})

    # Approving needs a second factor from the last five minutes: the step-up page keeps the comment.
    await stale_second_factor(admin, team["Abel"])
    await abel.get(f"{e}/review")
    assert "Deadline: 30 June" in abel.last_body and "Round 1" in abel.last_body   # the earlier rounds' comments
    comment = 'Accepted until Q3 "with" <conditions>'
    prompt = await abel.post(f"{e}/decision", {"to": "APPROVED", "comment": comment, "page": "review"})
    assert prompt.status_code == 200 and 'name="step_up_code"' in abel.last_body
    assert 'value="Accepted until Q3 &#34;with&#34; &lt;conditions&gt;"' in abel.last_body
    assert f'action="{e}/decision"' in abel.last_body
    wrong = await abel.post(f"{e}/decision", {"to": "APPROVED", "comment": comment, "step_up_code": "000000"})
    assert wrong.status_code == 401 and 'value="Accepted until Q3 &#34;with&#34; &lt;conditions&gt;"' in abel.last_body
    done = await abel.post(f"{e}/decision", {"to": "APPROVED", "comment": comment,
                                             "step_up_code": code_at(team["Abel"].secret, 1)})
    assert location(done) == f"{e}?notice=approved"
    await abel.get(location(done))
    assert "Approved." in abel.last_body and ">approved<" in abel.last_body
    assert "Accepted until Q3 &#34;with&#34; &lt;conditions&gt;" in abel.last_body
    assert (await verify_tenant(pool, tenant.id, settings)).ok


async def test_a_decision_posted_without_step_up_is_sent_through_it(team, site, pool, admin, tenant):
    await join(team, site, admin, tenant, "Bea", "approver", totp=True)
    e = await drafted(pool, tenant, team)
    await moved(pool, tenant, team, e, "UNDER_REVIEW", "Rhea")
    await stale_second_factor(admin, team["Bea"])
    bea = team["Bea"].browser
    await bea.get(f"/exceptions/{e}")
    sent = await bea.post(f"/exceptions/{e}/transition", {"to": "REJECTED", "comment": "Too risky"})
    assert sent.status_code == 307 and sent.headers["Location"] == f"/exceptions/{e}/decision"
    prompt = await bea.post(sent.headers["Location"], {"to": "REJECTED", "comment": "Too risky"})
    assert prompt.status_code == 200 and 'value="Too risky"' in bea.last_body
    assert await admin.fetchval("SELECT state FROM exception WHERE id = $1", e) == "UNDER_REVIEW"
    done = await bea.post(f"/exceptions/{e}/decision", {"to": "REJECTED", "comment": "Too risky",
                                                        "step_up_code": code_at(team["Bea"].secret, 1)})
    assert location(done) == f"/exceptions/{e}?notice=rejected"
    assert await admin.fetchval("SELECT comment FROM exception_event WHERE exception_id = $1 AND to_state = 'REJECTED'",
                                e) == "Too risky"


async def test_two_levels_show_their_progress_and_need_two_people(team, site, pool, admin, tenant):
    await join(team, site, admin, tenant, "Bea", "approver", totp=True)
    await admin.execute("UPDATE exception_settings SET two_levels_at_rating = 12 WHERE tenant_id = $1", tenant.id)
    e = await drafted(pool, tenant, team)            # rating 12
    await moved(pool, tenant, team, e, "UNDER_REVIEW", "Rhea")
    abel, bea = team["Abel"].browser, team["Bea"].browser
    await abel.get(f"/exceptions/{e}/review")
    assert "0 of 2 approvals given" in abel.last_body
    first = await abel.post(f"/exceptions/{e}/decision", {"to": "APPROVED", "comment": "Fine by me"})
    assert location(first) == f"/exceptions/{e}?notice=approval"
    await abel.get(location(first))
    assert "A second approver must approve as well" in abel.last_body and ">under review<" in abel.last_body
    await abel.get(f"/exceptions/{e}/review")
    assert "1 of 2 approvals given (by Abel)" in abel.last_body
    assert "You approved it in this round" in abel.last_body and "Give the second approval" not in abel.last_body
    await abel.get("/exceptions/mine")
    assert f"/exceptions/{e}" not in abel.last_body.split('id="awaiting-review"')[1].split("</section>")[0]

    await bea.get(f"/exceptions/{e}/review")
    assert "Give the second approval" in bea.last_body
    assert location(await bea.post(f"/exceptions/{e}/decision", {"to": "APPROVED", "comment": "Agreed"})) \
        == f"/exceptions/{e}?notice=approved"
    await bea.get(f"/exceptions/{e}")
    assert "approval 1" in bea.last_body and "approval 2: approved" in bea.last_body


async def test_renewal_links_back_to_the_original_justification(team, pool, admin, tenant):
    e = await drafted(pool, tenant, team, justification="Original reason: vendor lock-in")
    for to, who in (("UNDER_REVIEW", "Rhea"), ("APPROVED", "Abel"), ("ACTIVE", "system:activation")):
        await moved(pool, tenant, team, e, to, who, "ok")
    rhea = team["Rhea"].browser
    await rhea.get(f"/exceptions/{e}")
    assert f'action="/exceptions/{e}/renew"' in rhea.last_body
    await team["Aud"].browser.get(f"/exceptions/{e}")
    assert "/renew" not in team["Aud"].browser.last_body

    renewal = location(await rhea.post(f"/exceptions/{e}/renew"))
    assert renewal.endswith("?notice=renewed") and str(e) not in renewal
    await rhea.get(renewal)
    page = rhea.last_body
    assert "This is the renewal" in page and ">draft<" in page and "Renewal chain" in page
    assert f'<a href="/exceptions/{e}">Legacy FTP server</a>' in page and "Original reason: vendor lock-in" in page
    assert "the original" in page

    again = await rhea.post(f"/exceptions/{e}/renew")
    assert again.status_code == 409 and "renewed already" in rhea.last_body
    await rhea.get(f"/exceptions/{e}")
    assert "Renewal chain" in rhea.last_body and f'action="/exceptions/{e}/renew"' not in rhea.last_body


async def test_the_owner_re_attests_an_active_exception(team, pool, tenant):
    e = await drafted(pool, tenant, team)
    await team["Olga"].browser.get(f"/exceptions/{e}")
    assert "Re-attest" not in team["Olga"].browser.last_body        # a draft holds nothing to attest yet
    for to, who in (("UNDER_REVIEW", "Rhea"), ("APPROVED", "Abel"), ("ACTIVE", "system:activation")):
        await moved(pool, tenant, team, e, to, who, "ok")
    await team["Rhea"].browser.get(f"/exceptions/{e}")
    assert "Re-attest" not in team["Rhea"].browser.last_body        # she requested it; Olga owns it
    olga = team["Olga"].browser
    await olga.get(f"/exceptions/{e}")
    assert f'action="/exceptions/{e}/attest"' in olga.last_body
    empty = await olga.post(f"/exceptions/{e}/attest", {"comment": ""})
    assert empty.status_code == 422 and "a comment is required" in olga.last_body
    assert location(await olga.post(f"/exceptions/{e}/attest", {"comment": "Firewall rule checked on Monday"})) \
        == f"/exceptions/{e}?notice=attested"
    await olga.get(f"/exceptions/{e}?notice=attested")
    assert "Your re-attestation is recorded" in olga.last_body
    assert "re-attested: the deviation and the compensating controls still hold" in olga.last_body
    assert "Firewall rule checked on Monday" in olga.last_body
    assert (await team["Rhea"].browser.post(f"/exceptions/{e}/attest", {"comment": "me too"})).status_code == 403


# The list, its filters and its CSV ---------------------------------------------

async def test_list_filters_search_sort_and_pages_keep_the_filters(team, pool, tenant):
    ftp = await drafted(pool, tenant, team, title="Legacy FTP gateway", likelihood="5", impact="5")
    await moved(pool, tenant, team, ftp, "UNDER_REVIEW", "Rhea")
    await drafted(pool, tenant, team, title="Shared admin account", likelihood="2", impact="2",
                  owner=str(team["Abel"].id))
    soon = await drafted(pool, tenant, team, title="Unpatched printer",
                         ends_on=(TODAY + timedelta(days=20)).isoformat())
    for to, who in (("UNDER_REVIEW", "Rhea"), ("APPROVED", "Abel"), ("ACTIVE", "system:activation")):
        await moved(pool, tenant, team, soon, to, who, "ok")
    aud = team["Aud"].browser

    def titles():
        return re.findall(r'<a href="/exceptions/[0-9a-f-]{36}">([^<]+)</a>', aud.last_body)

    await aud.get("/exceptions")
    assert set(titles()) == {"Legacy FTP gateway", "Shared admin account", "Unpatched printer"}
    assert "<strong>3</strong> exceptions" in aud.last_body
    await aud.get("/exceptions?state=under_review")
    assert titles() == ["Legacy FTP gateway"] and 'value="UNDER_REVIEW" checked' in aud.last_body
    await aud.get("/exceptions?state=DRAFT&state=ACTIVE&sort=title")
    assert titles() == ["Shared admin account", "Unpatched printer"]
    await aud.get(f"/exceptions?owner={team['Abel'].id}")
    assert titles() == ["Shared admin account"]
    await aud.get("/exceptions?expiring_within=30")
    assert titles() == ["Unpatched printer"]
    await aud.get("/exceptions?rating_min=20")
    assert titles() == ["Legacy FTP gateway"]
    await aud.get("/exceptions?rating_min=2&rating_max=12&sort=-rating")
    assert titles() == ["Unpatched printer", "Shared admin account"]
    await aud.get("/exceptions?q=ftp+legacy")
    assert titles() == ["Legacy FTP gateway"] and 'value="ftp legacy"' in aud.last_body

    # Sorting by a column header: the link sorts that way, then the other way.
    await aud.get("/exceptions?sort=rating&q=a")
    assert titles() == ["Shared admin account", "Unpatched printer", "Legacy FTP gateway"]
    assert 'aria-sort="ascending"' in aud.last_body and 'href="/exceptions?q=a&amp;sort=-rating"' in aud.last_body

    # Pages keep every filter in their links.
    await aud.get("/exceptions?sort=title&per_page=2")
    assert titles() == ["Legacy FTP gateway", "Shared admin account"] and "page 1 of 2" in aud.last_body
    next_link = re.search(r'<a href="([^"]+)"[^>]*>Next →</a>', aud.last_body).group(1).replace("&amp;", "&")
    assert next_link == "/exceptions?sort=title&page=2&per_page=2"
    await aud.get(next_link)
    assert titles() == ["Unpatched printer"] and "page 2 of 2" in aud.last_body and "← Previous" in aud.last_body


async def test_bad_filters_are_shown_next_to_their_field_not_a_500(team, pool, tenant):
    await drafted(pool, tenant, team)
    aud = team["Aud"].browser
    response = await aud.get("/exceptions?rating_min=99&state=LOST&state=DRAFT&owner=me&sort=password"
                             "&expiring_within=soon&q=%00ftp")
    assert response.status_code == 200
    page = aud.last_body
    assert 'id="filter-rating_min-problem">a whole number from 1 to 25<' in page
    assert 'id="filter-state-problem">unknown state &#39;LOST&#39;' in page
    assert 'id="filter-owner-problem">a user id<' in page
    assert 'id="filter-expiring_within-problem">a whole number from 0 to 3660<' in page
    assert 'id="filter-q-problem">contains a NUL character' in page
    assert "Sort: one of updated" in page and "(left out)" in page
    assert 'value="99"' in page            # what was typed stays in the field
    assert "Legacy FTP server" in page    # the good filter (state=DRAFT) still applies


async def test_htmx_gets_the_results_alone_with_the_field_problems_out_of_band(team, pool, tenant):
    await drafted(pool, tenant, team, title="Legacy FTP gateway")
    await drafted(pool, tenant, team, title="Unpatched printer")
    aud = team["Aud"].browser
    full = await aud.get("/exceptions")
    assert full.headers["Vary"] == "HX-Request" and "<html" in aud.last_body
    assert 'hx-get="/exceptions"' in aud.last_body and 'hx-target="#results"' in aud.last_body

    fragment = await aud.get("/exceptions?q=printer&rating_max=0", headers={"HX-Request": "true"})
    body = aud.last_body
    assert fragment.status_code == 200 and fragment.headers["Vary"] == "HX-Request"
    assert "<html" not in body and "<form" not in body
    assert body.lstrip().startswith('<section class="card" id="results"')
    assert "Unpatched printer" in body and "Legacy FTP gateway" not in body
    assert ('<span class="error" id="filter-rating_max-problem" hx-swap-oob="true">a whole number from 1 to 25</span>'
            in body)
    assert '<span class="error" id="filter-q-problem" hx-swap-oob="true"></span>' in body  # cleared
    # A boosted or history-restore request gets the whole page.
    await aud.get("/exceptions?q=printer", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in aud.last_body


async def test_csv_export_of_the_filtered_list(team, pool, admin, tenant):
    await drafted(pool, tenant, team, title='=HYPERLINK("http://evil.example","click")')
    await drafted(pool, tenant, team, title="Plain printer")
    await drafted(pool, tenant, team, title="Other", likelihood="1", impact="1")
    aud = team["Aud"].browser
    await aud.get("/exceptions?rating_min=12")
    link = re.search(r'href="(/exceptions\.csv[^"]*)"', aud.last_body).group(1).replace("&amp;", "&")
    assert link == "/exceptions.csv?rating_min=12"

    response = await aud.get(link)
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="exceptions-{TODAY.isoformat()}.csv"'
    rows = list(csv.DictReader(io.StringIO(aud.last_body)))
    assert sorted(r["title"] for r in rows) == ["'=HYPERLINK(\"http://evil.example\",\"click\")", "Plain printer"]
    assert {r["owner_name"] for r in rows} == {"Olga"} and {r["rating"] for r in rows} == {"12"}

    bad = await aud.get("/exceptions.csv?rating_min=12&state=LOST")
    assert bad.status_code == 422 and "unknown state" in aud.last_body

    [export] = await admin.fetch("SELECT actor, data FROM audit_log WHERE tenant_id = $1 AND action = $2",
                                 tenant.id, "exception:list:export")
    assert export["actor"] == f"user:{team['Aud'].id}"
    assert json.loads(export["data"]) == {"format": "csv", "rows": 2, "filters": {
        "states": [], "owner": None, "expiring_within": None, "rating_min": 12, "rating_max": None, "q": "",
        "sort": "-updated"}}

    rhea = team["Rhea"].browser            # exception.read, but no report.export
    await rhea.get("/exceptions")
    assert "Export CSV" not in rhea.last_body
    assert (await rhea.get("/exceptions.csv")).status_code == 403 and "report.export" in rhea.last_body


async def test_my_work_lists_what_waits_for_me(team, pool, tenant):
    await drafted(pool, tenant, team, title="Still a draft")
    returned = await drafted(pool, tenant, team, title="Sent back")
    await moved(pool, tenant, team, returned, "UNDER_REVIEW", "Rhea")
    await moved(pool, tenant, team, returned, "RETURNED", "Olga", "Which vendor?")
    waiting = await drafted(pool, tenant, team, title="Waiting for a decision")
    await moved(pool, tenant, team, waiting, "UNDER_REVIEW", "Rhea")
    ending = await drafted(pool, tenant, team, title="Ending soon", ends_on=(TODAY + timedelta(days=10)).isoformat())
    for to, who in (("UNDER_REVIEW", "Rhea"), ("APPROVED", "Abel"), ("ACTIVE", "system:activation")):
        await moved(pool, tenant, team, ending, to, who, "ok")

    def section(browser, name):
        return browser.last_body.split(f'id="{name}"')[1].split("</section>")[0]

    rhea = team["Rhea"].browser
    await rhea.get("/")
    assert 'href="/exceptions/mine"' in rhea.last_body and 'href="/exceptions"' in rhea.last_body
    await rhea.get("/exceptions/mine")
    assert "Still a draft" in section(rhea, "drafts") and "Sent back" in section(rhea, "returned")
    assert "Ending soon" in section(rhea, "expiring")
    assert 'id="awaiting-review"' not in rhea.last_body   # she reviews nothing
    abel = team["Abel"].browser
    await abel.get("/exceptions/mine")
    assert "Waiting for a decision" in section(abel, "awaiting-review")
    assert "You have no drafts." in section(abel, "drafts")
    await team["Olga"].browser.get("/exceptions/mine")
    assert "Ending soon" in section(team["Olga"].browser, "expiring")   # she owns it


async def test_reminders_wait_in_my_work_until_read(team, pool, tenant, settings):
    ending = await drafted(pool, tenant, team, title="Printer on XP", ends_on=(TODAY + timedelta(days=25)).isoformat())
    for to, who in (("UNDER_REVIEW", "Rhea"), ("APPROVED", "Abel"), ("ACTIVE", "system:activation")):
        await moved(pool, tenant, team, ending, to, who, "ok")
    await exception_govern.reminders(pool, tenant.id, datetime.now(timezone.utc), settings)

    olga = team["Olga"].browser
    await olga.get("/exceptions/mine")
    notes = olga.last_body.split('id="notifications"')[1].split("</section>")[0]
    assert "New:" in notes and "Printer on XP" in notes and "re-attest" in notes
    assert f'href="/exceptions/{ending}"' in notes
    assert location(await olga.post("/exceptions/mine/read")) == "/exceptions/mine"
    await olga.get("/exceptions/mine")
    notes = olga.last_body.split('id="notifications"')[1].split("</section>")[0]
    assert "Printer on XP" in notes and "New:" not in notes and "Mark all read" not in notes
    await team["Rhea"].browser.get("/exceptions/mine")
    assert 'id="notifications"' not in team["Rhea"].browser.last_body   # the requester is not reminded


async def test_a_closed_exception_links_to_its_residual_risk(team, pool, tenant):
    e = await drafted(pool, tenant, team, title="Shared admin account")
    for to, who in (("UNDER_REVIEW", "Rhea"), ("APPROVED", "Abel"), ("ACTIVE", "system:activation")):
        await moved(pool, tenant, team, e, to, who, "ok")
    aud = team["Aud"].browser
    await aud.get(f"/exceptions/{e}")
    assert 'id="residual-risk"' not in aud.last_body
    await moved(pool, tenant, team, e, "REVOKED", "Abel", "The vendor left")
    await aud.get(f"/exceptions/{e}")
    risk = aud.last_body.split('id="residual-risk"')[1].split("</section>")[0]
    link = re.search(r'href="(/risks/[0-9a-f-]+)"', risk).group(1)
    assert "Shared admin account" in risk and "treatment mitigate" in risk
    await aud.get(link)
    assert f'href="/exceptions/{e}"' in aud.last_body


# Who may see what ------------------------------------------------------------

async def test_another_tenants_exception_is_not_found_here(team, site, admin, make_tenant, pool):
    other = await make_tenant()
    outsider = await person(site, admin, other, "Otto", "requester")
    theirs = location(await outsider.browser.post("/exceptions", {
        **form_for(team, owner=str(outsider.id))})).split("?")[0]
    assert (await outsider.browser.get(theirs)).status_code == 200

    abel = team["Abel"].browser
    for path in (theirs, f"{theirs}/review", f"/exceptions/{uuid4()}", f"/exceptions/{uuid4()}/review"):
        assert (await abel.get(path)).status_code == 404, path
        assert "Legacy FTP server" not in abel.last_body
    assert (await abel.post(f"{theirs}/transition", {"to": "RETURNED", "comment": "mine now"})).status_code == 404
    assert (await abel.post(f"{theirs}/decision", {"to": "APPROVED", "comment": "mine now"})).status_code == 404
    rhea = team["Rhea"].browser
    assert (await rhea.get(f"{theirs}/edit")).status_code == 404
    assert (await rhea.post(f"{theirs}/edit", form_for(team))).status_code == 404
    assert (await rhea.post(f"{theirs}/renew")).status_code == 404
    await abel.get("/exceptions")
    assert "Legacy FTP server" not in abel.last_body
    assert await admin.fetchval("SELECT state FROM exception WHERE id = $1", UUID(theirs.rsplit("/", 1)[1])) == "DRAFT"


async def test_pages_need_their_capabilities(team, site, pool, tenant, admin):
    e = await drafted(pool, tenant, team)
    nemo = (await join(team, site, admin, tenant, "Nemo")).browser   # no role at all
    for path in ("/exceptions", "/exceptions/mine", "/exceptions/new", f"/exceptions/{e}", "/exceptions.csv"):
        assert (await nemo.get(path)).status_code == 403, path
        assert "You cannot open this page" in nemo.last_body
    await nemo.get("/")
    assert 'href="/exceptions"' not in nemo.last_body and 'href="/exceptions/mine"' not in nemo.last_body

    aud = team["Aud"].browser               # reads, but neither drafts nor reviews
    assert (await aud.get("/exceptions/new")).status_code == 403 and "exception.submit" in aud.last_body
    assert (await aud.post("/exceptions", form_for(team))).status_code == 403
    assert (await aud.get(f"/exceptions/{e}/review")).status_code == 403
    assert "exception.review or exception.approve" in aud.last_body
    await moved(pool, tenant, team, e, "UNDER_REVIEW", "Rhea")
    refused = await aud.post(f"/exceptions/{e}/transition", {"to": "RETURNED", "comment": "I only read"})
    assert refused.status_code == 403 and "exception.review" in aud.last_body
    assert await admin.fetchval("SELECT state FROM exception WHERE id = $1", e) == "UNDER_REVIEW"
    assert (await team["Rhea"].browser.post("/exceptions", form_for(team), csrf=False)).status_code == 403


async def test_the_form_shows_the_rating_as_likelihood_times_impact(team):
    rhea = team["Rhea"].browser
    await rhea.get("/exceptions/new")
    assert 'hx-get="/exceptions/rating"' in rhea.last_body and "choose both" in rhea.last_body
    await rhea.get("/exceptions/rating?likelihood=3&impact=4", headers={"HX-Request": "true"})
    assert "<html" not in rhea.last_body and "<strong>12</strong> of 25" in rhea.last_body
    await rhea.get("/exceptions/rating?likelihood=3&impact=9", headers={"HX-Request": "true"})
    assert "choose both" in rhea.last_body


async def test_a_nul_character_is_refused_not_a_500(team, pool, tenant):
    rhea = team["Rhea"].browser
    await rhea.get("/exceptions/new")
    response = await rhea.post("/exceptions", form_for(team, deviation="Plain\x00FTP"))
    assert response.status_code == 422 and "NUL character" in rhea.last_body
    e = await drafted(pool, tenant, team)
    refused = await rhea.post(f"/exceptions/{e}/transition", {"to": "UNDER_REVIEW", "comment": "a\x00b"})
    assert refused.status_code == 422 and "NUL character" in rhea.last_body
    weird = await rhea.post(f"/exceptions/{e}/transition", {"to": "UNDER_REVIEW\x00", "comment": ""})
    assert weird.status_code == 422 and "decisions offered on the page" in rhea.last_body


async def test_exception_pages_have_no_inline_script_or_style(team, pool, tenant):
    e = await drafted(pool, tenant, team)
    await moved(pool, tenant, team, e, "UNDER_REVIEW", "Rhea")
    rhea, abel = team["Rhea"].browser, team["Abel"].browser
    pages = [(rhea, "/exceptions"), (rhea, "/exceptions?rating_min=99"), (rhea, "/exceptions/new"),
             (rhea, "/exceptions/mine"), (rhea, f"/exceptions/{e}"), (abel, f"/exceptions/{e}/review"),
             (abel, f"/exceptions/{e}"), (rhea, "/")]
    for browser, path in pages:
        assert (await browser.get(path)).status_code == 200, path
        assert no_inline_script_or_style(browser.last_body), path
    await rhea.post("/exceptions", form_for(team, title=""))
    assert no_inline_script_or_style(rhea.last_body)

