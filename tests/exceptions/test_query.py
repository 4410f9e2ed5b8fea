"""Reading exceptions (filters, search, sort, pages, CSV, my work) and changing drafts (edit, renew)."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from werkzeug.datastructures import MultiDict

from app.audit.verify import verify_tenant
from app.db import tenant_transaction
from app.exceptions import DraftInvalid, renew, update_draft
from app.exceptions.engine import TransitionRefused
from app.exceptions.query import (Filters, export_csv, get_exception, list_exceptions, my_work, parse_filters,
                                  renewal_chain)
from tests.exceptions.test_engine import as_user, draft, draft_form, move, people  # noqa: F401 (fixture)

TODAY = date.today()


async def listed(pool, org, **args):
    filters, problems = parse_filters(MultiDict(args), max_per_page=200)
    assert problems == {}
    async with tenant_transaction(pool, org.tenant.id, readonly=True) as conn:
        return await list_exceptions(conn, filters, today=TODAY)


def titles(page):
    return [r["title"] for r in page.rows]


async def test_filters_search_sort_and_pages(pool, people):
    ftp = await draft(pool, people, title="Legacy FTP server", likelihood="5", impact="5")
    await move(pool, people, ftp, "UNDER_REVIEW", "Rhea")
    await draft(pool, people, title="Shared admin account", deviation="One password for 100% of staff",
                likelihood="2", impact="2")
    soon = await draft(pool, people, title="Unpatched printer", ends_on=(TODAY + timedelta(days=20)).isoformat())
    for to, who in (("UNDER_REVIEW", "Rhea"), ("APPROVED", "Abel"), ("ACTIVE", "system:activation")):
        await move(pool, people, soon, to, who, "ok")

    assert titles(await listed(pool, people, state="UNDER_REVIEW")) == ["Legacy FTP server"]
    assert titles(await listed(pool, people, expiring_within="30")) == ["Unpatched printer"]
    assert titles(await listed(pool, people, rating_min="20")) == ["Legacy FTP server"]
    assert titles(await listed(pool, people, q="ftp legacy")) == ["Legacy FTP server"]
    assert titles(await listed(pool, people, q="100%")) == ["Shared admin account"]  # % is a character, not a wildcard
    assert titles(await listed(pool, people, q="_")) == []
    assert titles(await listed(pool, people, sort="-rating")) == ["Legacy FTP server", "Unpatched printer",
                                                                 "Shared admin account"]
    assert titles(await listed(pool, people, sort="title")) == ["Legacy FTP server", "Shared admin account",
                                                               "Unpatched printer"]
    first, second = [await listed(pool, people, sort="title", per_page="2", page=str(n)) for n in (1, 2)]
    assert (first.total, first.pages, titles(second)) == (3, 2, ["Unpatched printer"])
    assert titles(await listed(pool, people, owner=str(people.users["Rhea"]))) == []


def test_bad_filters_are_named_not_guessed():
    filters, problems = parse_filters(MultiDict([("state", "ACTIVE"), ("state", "LOST"), ("rating_min", "99"),
                                                 ("sort", "password"), ("owner", "me"), ("page", "0")]))
    assert set(problems) == {"state", "rating_min", "sort", "owner", "page"}
    assert filters == Filters(states=("ACTIVE",))
    assert Filters(states=("ACTIVE",), q="ftp", page=3).query_args(page=1) == [("state", "ACTIVE"), ("q", "ftp")]


async def test_csv_export_has_every_page_and_defuses_formulas(pool, people):
    await draft(pool, people, title="=HYPERLINK(\"http://evil\")")
    await draft(pool, people, title="Plain")
    async with tenant_transaction(pool, people.tenant.id, readonly=True) as conn:
        text, count = await export_csv(conn, Filters(per_page=1, sort="title"), today=TODAY)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert count == 2
    assert [r["title"] for r in rows] == ["'=HYPERLINK(\"http://evil\")", "Plain"]
    assert rows[0]["owner_name"] == "Olga" and rows[0]["state"] == "DRAFT"


async def test_my_work(pool, people):
    mine = await draft(pool, people, title="Returned to Rhea")
    await move(pool, people, mine, "UNDER_REVIEW", "Rhea")
    await move(pool, people, mine, "RETURNED", "Abel", "Name the vendor")
    waiting = await draft(pool, people, title="Waiting")
    await move(pool, people, waiting, "UNDER_REVIEW", "Rhea")
    await draft(pool, people, title="Still a draft")

    async def work(who):
        actor = await as_user(pool, people, who)
        async with tenant_transaction(pool, people.tenant.id, readonly=True) as conn:
            w = await my_work(conn, actor.access, today=TODAY)
        return {k: [r["title"] for r in getattr(w, k)] for k in ("awaiting_review", "expiring", "returned", "drafts")}

    assert await work("Rhea") == {"awaiting_review": [], "expiring": [], "returned": ["Returned to Rhea"],
                                  "drafts": ["Still a draft"]}
    assert (await work("Abel"))["awaiting_review"] == ["Waiting"]
    assert (await work("Aud"))["awaiting_review"] == []  # the auditor reads, never reviews


async def test_edit_a_draft_keeps_nothing_half_done(admin, pool, people, settings):
    e = await draft(pool, people)
    rhea, abel = await as_user(pool, people, "Rhea"), await as_user(pool, people, "Abel")

    async def edit(actor, **changes):
        async with tenant_transaction(pool, people.tenant.id) as conn:
            await update_draft(conn, actor.access, e, draft_form(people, **changes))

    with pytest.raises(DraftInvalid):
        await edit(rhea, title="Better title", impact="0")
    with pytest.raises(TransitionRefused, match="requester"):
        await edit(abel, title="Not yours")
    assert await admin.fetchval("SELECT title FROM exception WHERE id = $1", e) == "Legacy FTP server"
    await edit(rhea, title="Legacy FTP server (finance)", impact="5")
    async with tenant_transaction(pool, people.tenant.id, readonly=True) as conn:
        row = await get_exception(conn, e)
    assert (row["title"], row["rating"], row["owner_name"]) == ("Legacy FTP server (finance)", 15, "Olga")
    assert await admin.fetchval("SELECT comment FROM exception_event WHERE exception_id = $1 AND kind = 'edit'",
                                e) == "Changed: Title, Impact"
    await move(pool, people, e, "UNDER_REVIEW", "Rhea")
    with pytest.raises(TransitionRefused, match="under review"):
        await edit(rhea, title="Too late")
    assert (await verify_tenant(pool, people.tenant.id, settings)).ok


async def test_renewal_chain_back_to_the_original(admin, pool, people):
    original = await draft(pool, people, justification="Vendor cannot do SFTP before Q3")
    for to, who in (("UNDER_REVIEW", "Rhea"), ("APPROVED", "Abel"), ("ACTIVE", "system:activation")):
        await move(pool, people, original, to, who, "ok")
    rhea = await as_user(pool, people, "Rhea")

    async def renewing(exception_id, actor=rhea):
        async with tenant_transaction(pool, people.tenant.id) as conn:
            return await renew(conn, people.tenant.id, actor.access, exception_id, today=TODAY)

    with pytest.raises(TransitionRefused, match="requester or owner"):
        await renewing(original, await as_user(pool, people, "Abel"))
    second = await renewing(original)
    with pytest.raises(TransitionRefused, match="renewed already"):
        await renewing(original)
    with pytest.raises(TransitionRefused, match="active, expiring or expired"):
        await renewing(second)  # a draft is not renewed, it is edited
    old, new = [await admin.fetchrow("SELECT * FROM exception WHERE id = $1", x) for x in (original, second)]
    assert (new["state"], new["predecessor_id"], new["title"]) == ("DRAFT", original, old["title"])
    assert new["starts_on"] == old["ends_on"] and new["ends_on"] - new["starts_on"] == old["ends_on"] - old["starts_on"]

    for to, who in (("UNDER_REVIEW", "Rhea"), ("APPROVED", "Bea"), ("ACTIVE", "system:activation")):
        await move(pool, people, second, to, who, "ok")
    third = await renewing(second)
    async with tenant_transaction(pool, people.tenant.id, readonly=True) as conn:
        chain = await renewal_chain(conn, second)
    assert [r["id"] for r in chain] == [original, second, third]
    assert chain[0]["justification"] == "Vendor cannot do SFTP before Q3"
