"""Evidence under the database's isolation: other tenants' and other units' files do not exist; the record cannot be rewritten."""

from __future__ import annotations

import secrets
import uuid

import asyncpg
import pytest

from app.crypto.keys import current_key
from app.db import set_tenant, tenant_transaction
from tests.access.org import Org, add_unit
from tests.evidence.conftest import download, upload
from tests.evidence.helpers import CLEAN, SENSITIVE, an_exception, evidence_id_from, rows
from tests.exceptions.test_screens import person


async def test_another_tenants_evidence_is_not_found(full_team, site, pool, admin, tenant, make_tenant):
    e = await an_exception(pool, tenant, full_team)
    theirs = evidence_id_from(await upload(full_team["Rhea"].browser, e, "ours.csv", SENSITIVE))
    eve = await person(site, admin, await make_tenant("other"), "Eve", "admin", totp=True)
    response, body = await download(eve.browser, theirs)
    assert response.status_code == 404 and SENSITIVE not in body
    assert (await eve.browser.get(f"/evidence/{theirs}/details")).status_code == 404
    decided = await eve.browser.post(f"/evidence/{theirs}/decision", {"decision": "release", "comment": "mine now"})
    assert decided.status_code == 404
    assert "ours.csv" not in (await eve.browser.get("/evidence/quarantine"), eve.browser.last_body)[1]
    assert [r["state"] for r in await rows(admin, tenant)] == ["quarantined"]


async def test_download_needs_evidence_read(team, pool, admin, tenant):
    e = await an_exception(pool, tenant, team)
    evidence_id = evidence_id_from(await upload(team["Rhea"].browser, e, "rules.txt", CLEAN))
    response, body = await download(team["Rhea"].browser, evidence_id)     # the requester role lacks evidence.read
    assert response.status_code == 403 and CLEAN not in body and "evidence.read" in team["Rhea"].browser.last_body
    assert (await team["Rhea"].browser.get(f"/evidence/{evidence_id}/details")).status_code == 200
    aud = team["Aud"].browser
    head = await aud.client.head(f"/evidence/{evidence_id}", headers=aud._headers(), scope_base=aud._scope())
    assert head.status_code == 405          # a HEAD would have decrypted the file and recorded a download


async def insert_evidence(conn, tenant, settings, exception_id, uploader) -> uuid.UUID:
    key = await current_key(conn, settings)
    return await conn.fetchval(
        "INSERT INTO evidence (tenant_id, id, exception_id, filename, content_type, file_type, size, sha256,"
        " object_name, data_key_id, state, uploaded_by)"
        " VALUES ($1, gen_random_uuid(), $2, 'f.txt', 'text/plain', 'text', 1, $3, $4, $5, 'stored', $6) RETURNING id",
        tenant.id, exception_id, secrets.token_bytes(32), "evidence/aa/" + secrets.token_hex(16), key.id, uploader)


async def test_evidence_takes_its_exceptions_unit_and_is_scoped_by_it(team, pool, admin, tenant, settings):
    org = Org(tenant)
    school_a = await add_unit(admin, org, "School A")
    school_b = await add_unit(admin, org, "School B")
    path = await an_exception(pool, tenant, team)
    exception_id = uuid.UUID(path.rsplit("/", 1)[1])
    await admin.execute("UPDATE exception SET org_unit_id = $1 WHERE id = $2", school_b, exception_id)

    async with pool.acquire() as conn, conn.transaction():
        await set_tenant(conn, tenant.id, school_b)
        evidence_id = await insert_evidence(conn, tenant, settings, exception_id, team["Rhea"].id)
        assert await conn.fetchval("SELECT org_unit_id FROM evidence WHERE id = $1", evidence_id) == school_b
    async with pool.acquire() as conn, conn.transaction():
        await set_tenant(conn, tenant.id, school_a)
        assert await conn.fetchval("SELECT count(*) FROM evidence") == 0
        # Nor can it be attached to an exception its inserter cannot see.
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="cannot see"):
            await insert_evidence(conn, tenant, settings, exception_id, team["Rhea"].id)
    async with tenant_transaction(pool, tenant.id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM evidence") == 1


async def test_the_record_cannot_be_rewritten_by_the_app(team, pool, admin, tenant, settings):
    e = await an_exception(pool, tenant, team)
    evidence_id = evidence_id_from(await upload(team["Rhea"].browser, e, "rules.txt", CLEAN))
    for statement in ("DELETE FROM evidence", "UPDATE evidence SET sha256 = sha256(''::bytea)",
                      "UPDATE evidence SET object_name = 'evidence/00/x'", "DELETE FROM evidence_finding",
                      "UPDATE evidence_decision SET comment = 'x'"):
        async with tenant_transaction(pool, tenant.id) as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    # The state moves only out of quarantine, and only with a decision.
    async with tenant_transaction(pool, tenant.id) as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="cannot move from stored to released"):
            await conn.execute("UPDATE evidence SET state = 'released' WHERE id = $1", evidence_id)
    quarantined = evidence_id_from(await upload(team["Rhea"].browser, e, "customers.csv", SENSITIVE))
    async with tenant_transaction(pool, tenant.id) as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="cannot move from quarantined to released"):
            await conn.execute("UPDATE evidence SET state = 'released' WHERE id = $1", quarantined)
