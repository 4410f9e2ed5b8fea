"""Erasure of a person (DPA 11): after it the chain verifies, the address is nowhere in the database,
the verdict counts the erased rows, and the erasure is on record with its legal basis and without the address."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from uuid import UUID

import asyncpg
import pytest

from app import access, mail
from app.access.admin import Refused
from app.audit.erasure import DEFAULT_BASIS, NOTHING, erase_actor, erasures, preview, pseudonymise_everyone
from app.audit.verify import verify_chain
from app.db import tenant_transaction
from app.exceptions import create_draft
from tests.views import conftest as views
from tests.views.test_signin import sign_in
from tests.views.test_tokens import api, give_role, make_token
from tests.web import Browser, code_at, make_user, totp_secret_from

site = views.site  # the app under test, as the view tests have it

# Every column that can hold text (string types such as text, varchar, char, name and citext, json and jsonb,
# arrays of those, domains over them), in every table of every schema: a search of these finds an address wherever
# it is.
TEXT_COLUMNS = """
SELECT format('SELECT count(*) FROM %s WHERE strpos(lower(%I::text), lower($1)) > 0', c.oid::regclass, a.attname)
           AS query,
       c.relname || '.' || a.attname AS place
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type declared ON declared.oid = a.atttypid
  JOIN pg_type t ON t.oid = CASE WHEN declared.typtype = 'd' THEN declared.typbasetype ELSE declared.oid END
  LEFT JOIN pg_type element ON element.oid = t.typelem AND t.typcategory = 'A'
 WHERE c.relkind IN ('r', 'p', 'm')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
   AND (t.typcategory = 'S' OR t.typname IN ('json', 'jsonb')
        OR element.typcategory = 'S' OR element.typname IN ('json', 'jsonb'))
"""


async def places_holding(admin: asyncpg.Connection, text: str) -> list[str]:
    """Every table.column of the whole database (superuser, no RLS) in which `text` occurs, any case."""
    found = []
    for column in await admin.fetch(TEXT_COLUMNS):
        if await admin.fetchval(column["query"], text):
            found.append(column["place"])
    return found


async def pii_rows(admin, tenant) -> dict[int, asyncpg.Record]:
    rows = await admin.fetch("SELECT seq, salt, email, ip, user_agent FROM audit_pii WHERE tenant_id = $1", tenant.id)
    return {r["seq"]: r for r in rows}


async def person(site, admin, pool, tenant, name: str) -> tuple[Browser, str, UUID, str]:
    """Someone with a history: a failed and a good sign-in (their address, IP and browser in audit_pii), a draft
    exception mentioning their address, an API token, a mail in the outbox and a notification; and the token."""
    email = await make_user(admin, tenant, name=name)
    await give_role(admin, tenant, email, "requester")
    browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
    assert (await sign_in(browser, email, "not the password")).status_code == 401
    assert (await sign_in(browser, email)).status_code == 303
    await browser.get("/account/totp")  # a second factor, which making a token asks for
    assert (await browser.post("/account/totp", {"code": code_at(totp_secret_from(browser.last_body))})).status_code == 200
    _, token = await make_token(browser, "laptop", ["exception.read"])
    assert token
    user_id = await admin.fetchval("SELECT id FROM app_user WHERE email = $1", email)
    async with tenant_transaction(pool, tenant.id) as conn:
        requester = await access.load(conn, user_id)
        exception_id = await create_draft(conn, tenant.id, requester, {
            "title": "Legacy FTP server", "policy_ref": "ISO 27001 A.8.24", "assets": f"ftp01.example (run by {email})",
            "deviation": "Files move over plain FTP",
            "justification": f"The vendor cannot do SFTP before Q3; questions to {email.upper()}",
            "compensating_controls": "", "likelihood": "3", "impact": "4",
            "starts_on": date.today().isoformat(), "ends_on": (date.today() + timedelta(days=90)).isoformat(),
            "owner": str(user_id)})
        await mail.queue(conn, user_id, "Reset your Exceptao password",
                         f"Hello {name},\n\nsomeone asked to reset the password of {email}.\n")
        await conn.execute("INSERT INTO notification (tenant_id, user_id, exception_id, kind, text)"
                           " VALUES ($1, $2, $3, 'reminder', $4)",
                           tenant.id, user_id, exception_id, f"Legacy FTP server ends in 30 days ({email})")
    return browser, email, user_id, token


def erase(pool, tenant, email: str, **kwargs):
    async def run():
        async with tenant_transaction(pool, tenant.id) as conn:
            return await erase_actor(conn, tenant.id, email, basis=kwargs.pop("basis", DEFAULT_BASIS),
                                     requested_by=kwargs.pop("requested_by", "system:cli"), **kwargs)
    return run()


async def test_after_erasure_the_chain_verifies_and_the_address_is_nowhere(site, admin, pool, tenant):
    name = f"Jan Kowalski {uuid.uuid4().hex[:6]}"  # only his: the search spans the other tests' tenants too
    browser, email, user_id, token = await person(site, admin, pool, tenant, name)
    _, other_email, _, _ = await person(site, admin, pool, tenant, "Ola Nowak")
    # The search finds the address where it is: in the audit trail, the account, what people wrote, the mail.
    assert {"audit_pii.email", "app_user.email", "exception.justification", "exception.search_text",
            "mail_outbox.body", "notification.text"} <= set(await places_holding(admin, email))
    before = await pii_rows(admin, tenant)
    his = sorted(seq for seq, r in before.items() if r["email"] == email)
    hers = sorted(seq for seq, r in before.items() if r["email"] == other_email)
    assert len(his) >= 3 and hers

    async with tenant_transaction(pool, tenant.id) as conn:
        asked = await preview(conn, email.upper())
    assert asked.audit_rows == len(his) and asked.account_id == user_id and asked.account_name == name
    assert asked.text_rows == 3  # the exception, the mail and the notification; only counted, nothing changed
    assert "exception.justification" in await places_holding(admin, email)

    erasure = await erase(pool, tenant, email.upper(), reference="DSR-2026-017")

    assert await places_holding(admin, email) == []
    assert await places_holding(admin, name) == []
    verdict = await verify_chain(pool, tenant.id)
    assert verdict.ok and verdict.broken_at is None
    assert verdict.erased_rows == erasure.audit_rows == len(his)

    after = await pii_rows(admin, tenant)
    assert erasure.tombstone.startswith("actor_tombstone_")
    for seq in his:
        row = after[seq]
        assert row["email"] == erasure.tombstone and row["ip"] in (erasure.tombstone, None)
        assert row["salt"] is None and row["user_agent"] is None
    assert any(after[seq]["ip"] == erasure.tombstone for seq in his)
    assert all(after[seq] == before[seq] for seq in hers)  # the other person is untouched

    # The account: nothing of the person, no way in, the token dead.
    account = await admin.fetchrow("SELECT * FROM app_user WHERE id = $1", user_id)
    assert account["display_name"] == "Erased person" and account["disabled_at"] is not None
    assert account["password_hash"] is None and account["email"].startswith(erasure.tombstone)
    assert account["totp_secret"] is None and account["totp_enrolled_at"] is None
    for table in ("user_session", "api_token", "mail_outbox", "password_reset", "recovery_code"):
        assert await admin.fetchval(f"SELECT count(*) FROM {table} WHERE user_id = $1", user_id) == 0, table
    assert (await api(browser, token, "/api/me")).status_code == 401
    assert (await sign_in(Browser(site.test_client(), browser.host), email)).status_code == 401
    justification = await admin.fetchval("SELECT justification FROM exception WHERE requester_id = $1", user_id)
    assert justification == f"The vendor cannot do SFTP before Q3; questions to {erasure.tombstone}"
    assert erasure.account_anonymised and erasure.other_records >= 4

    # On record: the basis, the reference, the counts, never the address.
    async with tenant_transaction(pool, tenant.id, readonly=True) as conn:
        [recorded] = await erasures(conn)
    assert recorded == erasure and recorded.basis == DEFAULT_BASIS and recorded.reference == "DSR-2026-017"
    assert recorded.requested_by == "system:cli"
    event = await admin.fetchrow("SELECT actor, data FROM audit_log WHERE tenant_id = $1 AND action = $2",
                                 tenant.id, "access:user:erase")
    assert event["actor"] == "system:cli"
    assert json.loads(event["data"]) == {"tombstone": erasure.tombstone, "audit_rows": len(his),
                                         "account_anonymised": True, "other_records": erasure.other_records}

    # Another person gets a tombstone of their own.
    second = await erase(pool, tenant, other_email)
    assert second.tombstone != erasure.tombstone
    assert {(await pii_rows(admin, tenant))[seq]["email"] for seq in hers} == {second.tombstone}
    verdict = await verify_chain(pool, tenant.id)
    assert verdict.ok and verdict.erased_rows == len(his) + len(hers)


async def test_asking_again_changes_and_records_nothing(site, admin, pool, tenant):
    _, email, _, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    await erase(pool, tenant, email)
    head = await admin.fetchval("SELECT max(seq) FROM audit_log WHERE tenant_id = $1", tenant.id)
    with pytest.raises(Refused) as refused:
        await erase(pool, tenant, email)
    assert str(refused.value) == NOTHING and refused.value.status == 404
    with pytest.raises(Refused):
        await erase(pool, tenant, "nobody@example.com")
    assert await admin.fetchval("SELECT max(seq) FROM audit_log WHERE tenant_id = $1", tenant.id) == head
    assert await admin.fetchval("SELECT count(*) FROM erasure WHERE tenant_id = $1", tenant.id) == 1


@pytest.mark.parametrize(("basis", "reference", "message"), [
    ("  ", None, "Give the legal basis."),
    ("Art. 17 request from {email}", None, "must not contain the address"),
    (DEFAULT_BASIS, "ticket of {email}", "must not contain the address"),
    ("x" * 5001, None, "longer than 5000"),
])
async def test_an_incomplete_request_changes_nothing(site, admin, pool, tenant, basis, reference, message):
    _, email, _, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    before = await pii_rows(admin, tenant)
    with pytest.raises(Refused) as refused:
        await erase(pool, tenant, email, basis=basis.format(email=email.upper()),
                    reference=reference and reference.format(email=email))
    assert message in str(refused.value)
    assert await pii_rows(admin, tenant) == before
    assert await admin.fetchval("SELECT count(*) FROM erasure WHERE tenant_id = $1", tenant.id) == 0


async def test_the_app_role_changes_audit_pii_only_by_erasure(site, admin, pool, tenant):
    _, email, _, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    async with tenant_transaction(pool, tenant.id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE audit_pii SET email = 'someone@else.example' WHERE email = $1", email)
    async with tenant_transaction(pool, tenant.id) as conn:
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await conn.fetchval("SELECT erase_audit_pii($1, NULL, 'someone@else.example')", email)
    async with pool.acquire() as conn:  # no tenant: nothing anywhere
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT erase_audit_pii($1, NULL, 'actor_tombstone_' || gen_random_uuid())", email)
    assert all(r["salt"] is not None for r in (await pii_rows(admin, tenant)).values())


async def test_erasure_reaches_only_its_own_tenant(site, admin, pool, make_tenant):
    here, there = await make_tenant(), await make_tenant()
    _, email, _, _ = await person(site, admin, pool, here, "Jan Kowalski")
    async with admin.transaction():  # the same address, a user of another tenant too
        await admin.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(there.id))
        await admin.execute("INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, $2, 'Jan K.')",
                            there.id, email)
    erasure = await erase(pool, there, email)
    assert erasure.audit_rows == 0 and erasure.account_anonymised
    assert all(r["email"] == email or r["email"] is None for r in (await pii_rows(admin, here)).values()
               if r["salt"] is not None)
    assert await admin.fetchval("SELECT count(*) FROM app_user WHERE tenant_id = $1 AND email = $2", here.id, email) == 1


async def test_pseudonymise_everyone_gives_each_identity_its_own_tombstone(site, admin, pool, tenant):
    _, jan, _, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    _, ola, _, _ = await person(site, admin, pool, tenant, "Ola Nowak")
    before = await pii_rows(admin, tenant)
    by_person = {e: {s for s, r in before.items() if r["email"] == e} for e in (jan, ola)}

    async with tenant_transaction(pool, tenant.id) as conn:
        rows = await pseudonymise_everyone(conn, tenant.id, basis="DPA 9.3: audit log kept with pseudonymised actors")
    assert not {"audit_pii.email", "audit_pii.ip"} & set(await places_holding(admin, jan))

    after = await pii_rows(admin, tenant)
    assert rows == len(before) and all(r["salt"] is None and r["user_agent"] is None for r in after.values())
    stones = {e: {after[s]["email"] for s in seqs} for e, seqs in by_person.items()}
    assert all(len(s) == 1 for s in stones.values()) and stones[jan] != stones[ola]
    verdict = await verify_chain(pool, tenant.id)
    assert verdict.ok and verdict.erased_rows == len(before)
    recorded = await admin.fetch("SELECT basis, requested_by FROM erasure WHERE tenant_id = $1", tenant.id)
    assert len(recorded) == len({r["email"] for r in after.values()})
    assert {r["requested_by"] for r in recorded} == {"system:pseudonymise"}


async def test_a_longer_address_containing_it_is_somebody_else_s(site, admin, pool, tenant):
    _, email, user_id, _ = await person(site, admin, pool, tenant, "Jan Kowalski")
    text = f"Ask {email.upper()}, or team-{email} and {email}.pl; not {email}x."
    async with tenant_transaction(pool, tenant.id) as conn:
        await conn.execute("INSERT INTO notification (tenant_id, user_id, kind, text) VALUES ($1, $2, 'reminder', $3)",
                           tenant.id, user_id, text)
    erasure = await erase(pool, tenant, email)
    notes = await admin.fetch("SELECT text FROM notification WHERE tenant_id = $1 AND text LIKE 'Ask %'", tenant.id)
    assert [n["text"] for n in notes] == [
        f"Ask {erasure.tombstone}, or team-{email} and {email}.pl; not {email}x."]
