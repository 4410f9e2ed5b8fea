"""The audit-anchor job against a real RFC 3161 authority (the `tsa` fixture: `openssl ts -reply`)."""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from asn1crypto import tsp

from app.audit import AuditAction, Target, record
from app.audit.anchor import (RETRY_FIRST, AuthorityUnavailable, anchor_tenant, read_timestamp_reply,
                               timestamp_request)
from app.db import tenant_transaction
from app.jobs import run_job
from tests.conftest import tampering

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def anchoring(settings, tsa):
    return replace(settings, tsa_url=tsa.url)


async def append(pool, tenant, n: int = 1) -> None:
    async with tenant_transaction(pool, tenant.id) as conn:
        for k in range(n):
            await record(conn, AuditAction.USER_CREATE, actor="system:test", target=Target("user", f"u{k}"),
                         data={"k": k})


async def anchors(pool, tenant):
    async with tenant_transaction(pool, tenant.id) as conn:
        return await conn.fetch("SELECT seq, row_hash, tsa_token, kind, detail FROM audit_anchor"
                                " WHERE tenant_id = $1 ORDER BY anchored_at", tenant.id)


async def head(pool, tenant):
    async with tenant_transaction(pool, tenant.id) as conn:
        return await conn.fetchrow("SELECT seq, row_hash FROM audit_log WHERE tenant_id = $1"
                                   " ORDER BY seq DESC LIMIT 1", tenant.id)


async def run_for(pool, tenant, settings, now=NOW):
    """The job's run for one tenant, recorded in job_run as run_job records it."""

    async def work(pool, now, settings):
        return await anchor_tenant(pool, tenant.id, now, settings)

    run_id = await run_job(pool, "audit-anchor", work, settings=settings, now=now)
    return await pool.fetchrow("SELECT outcome, error, detail FROM job_run WHERE id = $1", run_id)


async def test_a_stored_token_verifies_with_openssl(pool, tenant, anchoring, tsa, tmp_path):
    await append(pool, tenant, 3)
    assert await anchor_tenant(pool, tenant.id, NOW, anchoring) == {"anchored": 1}
    (anchor,) = await anchors(pool, tenant)
    top = await head(pool, tenant)
    assert (anchor["kind"], anchor["seq"], anchor["row_hash"]) == ("anchor", top["seq"], top["row_hash"])
    assert "gen_time" in json.loads(anchor["detail"])
    token = tmp_path / "token.der"
    token.write_bytes(anchor["tsa_token"])
    checked = subprocess.run(
        ["openssl", "ts", "-verify", "-digest", bytes(anchor["row_hash"]).hex(), "-token_in", "-in", str(token),
         "-CAfile", str(tsa.ca), "-untrusted", str(tsa.cert)],
        capture_output=True, text=True)
    assert "Verification: OK" in checked.stdout, checked.stderr
    # Another hash does not verify against it.
    wrong = subprocess.run(
        ["openssl", "ts", "-verify", "-digest", "00" * 32, "-token_in", "-in", str(token),
         "-CAfile", str(tsa.ca), "-untrusted", str(tsa.cert)],
        capture_output=True, text=True)
    assert "Verification: OK" not in wrong.stdout


async def test_an_unchanged_head_is_not_anchored_twice(pool, tenant, anchoring):
    assert await anchor_tenant(pool, tenant.id, NOW, anchoring) == {"anchored": 1}
    assert await anchor_tenant(pool, tenant.id, NOW + timedelta(hours=1), anchoring) == {"unchanged": 1}
    assert len(await anchors(pool, tenant)) == 1
    await append(pool, tenant)
    assert await anchor_tenant(pool, tenant.id, NOW + timedelta(hours=2), anchoring) == {"anchored": 1}
    assert [a["seq"] for a in await anchors(pool, tenant)] == [1, 2]


async def test_without_an_authority_nothing_is_anchored(pool, tenant, settings):
    assert await anchor_tenant(pool, tenant.id, NOW, settings) == {"no_authority": 1}
    assert await anchors(pool, tenant) == []


async def test_the_authority_down_fails_the_run_and_is_retried_with_backoff(pool, tenant, anchoring, tsa):
    with tsa.down():
        run = await run_for(pool, tenant, anchoring)
    assert run["outcome"] == "failed"
    assert "AuthorityUnavailable" in run["error"] and "unreachable" in run["error"]
    assert await anchors(pool, tenant) == []
    async with tenant_transaction(pool, tenant.id) as conn:
        retry = await conn.fetchrow("SELECT attempts, next_attempt_at, last_error FROM audit_anchor_retry"
                                    " WHERE tenant_id = $1", tenant.id)
    assert (retry["attempts"], retry["next_attempt_at"]) == (1, NOW + RETRY_FIRST)

    # Back, but the retry is not due yet: still failed, and saying why.
    run = await run_for(pool, tenant, anchoring, NOW + RETRY_FIRST / 2)
    assert run["outcome"] == "failed" and "waits until" in run["error"] and "1 failed attempt" in run["error"]

    with tsa.down():
        run = await run_for(pool, tenant, anchoring, NOW + RETRY_FIRST)
    assert run["outcome"] == "failed" and "attempt 2" in run["error"]

    run = await run_for(pool, tenant, anchoring, NOW + RETRY_FIRST * 3)
    assert (run["outcome"], run["error"]) == ("ok", None)
    assert [a["kind"] for a in await anchors(pool, tenant)] == ["anchor"]
    async with tenant_transaction(pool, tenant.id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_anchor_retry WHERE tenant_id = $1", tenant.id) == 0


async def test_a_chain_rewritten_after_an_anchor_is_a_discontinuity(pool, admin, tenant, anchoring, caplog):
    await append(pool, tenant, 3)
    assert await anchor_tenant(pool, tenant.id, NOW, anchoring) == {"anchored": 1}
    anchored = await head(pool, tenant)
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET row_hash = sha256(row_hash) WHERE tenant_id = $1 AND seq = $2",
                            tenant.id, anchored["seq"])
    await append(pool, tenant)

    with caplog.at_level(logging.CRITICAL, logger="app.audit.anchor"):
        run = await run_for(pool, tenant, anchoring, NOW + timedelta(hours=1))
    assert run["outcome"] == "failed" and "ChainDiscontinuity" in run["error"]
    assert f"anchored seq {anchored['seq']}" in run["error"]
    assert any(r.levelno == logging.CRITICAL and "chain discontinuity" in r.getMessage() for r in caplog.records)
    rows = await anchors(pool, tenant)
    assert [(a["kind"], a["seq"]) for a in rows] == [("anchor", anchored["seq"]), ("chain_discontinuity", anchored["seq"])]
    assert rows[1]["tsa_token"] is None

    # The rewritten head is not anchored, the failure stays visible, and the event is recorded once.
    run = await run_for(pool, tenant, anchoring, NOW + timedelta(hours=2))
    assert run["outcome"] == "failed" and "ChainDiscontinuity" in run["error"]
    assert len(await anchors(pool, tenant)) == 2


async def test_a_deleted_anchored_row_is_a_discontinuity(pool, admin, tenant, anchoring):
    await append(pool, tenant, 2)
    assert await anchor_tenant(pool, tenant.id, NOW, anchoring) == {"anchored": 1}
    anchored = await head(pool, tenant)
    async with tampering(admin):
        await admin.execute("DELETE FROM audit_log WHERE tenant_id = $1 AND seq = $2", tenant.id, anchored["seq"])
    run = await run_for(pool, tenant, anchoring, NOW + timedelta(hours=1))
    assert run["outcome"] == "failed" and "is missing" in run["error"]
    assert (await anchors(pool, tenant))[-1]["kind"] == "chain_discontinuity"


def test_a_reply_about_another_hash_or_nonce_is_refused(tsa):
    digest = bytes(range(32))
    reply = tsa.reply(timestamp_request(digest, 7))
    assert read_timestamp_reply(reply, digest, 7).token
    with pytest.raises(AuthorityUnavailable, match="message imprint"):
        read_timestamp_reply(reply, bytes(32), 7)
    with pytest.raises(AuthorityUnavailable, match="nonce"):
        read_timestamp_reply(reply, digest, 8)
    with pytest.raises(AuthorityUnavailable, match="not a TimeStampResp"):
        read_timestamp_reply(b"<html>proxy error</html>", digest, 7)


async def test_a_range_that_does_not_verify_is_not_anchored(pool, admin, tenant, anchoring, caplog):
    await append(pool, tenant, 2)
    assert await anchor_tenant(pool, tenant.id, NOW, anchoring) == {"anchored": 1}
    first = await head(pool, tenant)
    await append(pool, tenant, 3)
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{\"k\": 42}' WHERE tenant_id = $1 AND seq = $2",
                            tenant.id, first["seq"] + 2)

    with caplog.at_level(logging.CRITICAL, logger="app.audit.anchor"):
        run = await run_for(pool, tenant, anchoring, NOW + timedelta(hours=1))
    assert run["outcome"] == "failed" and "ChainUnverified" in run["error"]
    assert f"seq {first['seq'] + 2} does not verify (hash_mismatch)" in run["error"]
    assert any(r.levelno == logging.CRITICAL and "not anchored" in r.getMessage() for r in caplog.records)
    assert [a["seq"] for a in await anchors(pool, tenant)] == [first["seq"]]


async def test_the_first_anchor_vouches_for_the_whole_chain(pool, admin, tenant, anchoring):
    await append(pool, tenant, 3)
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{\"k\": 7}' WHERE tenant_id = $1 AND seq = 2", tenant.id)
    run = await run_for(pool, tenant, anchoring)
    assert run["outcome"] == "failed" and "seq 2 does not verify" in run["error"]
    assert await anchors(pool, tenant) == []


async def test_a_forged_previous_anchor_is_not_built_on(pool, admin, tenant, anchoring, tsa):
    await append(pool, tenant, 2)
    top = await head(pool, tenant)
    # A genuine token of the authority, but for another hash, filed as an anchor of the head.
    token = tsp.TimeStampResp.load(tsa.reply(timestamp_request(bytes(32), 1)))["time_stamp_token"].dump()
    await admin.execute("INSERT INTO audit_anchor (tenant_id, seq, row_hash, tsa_token) VALUES ($1, $2, $3, $4)",
                        tenant.id, top["seq"], top["row_hash"], token)
    await append(pool, tenant)
    run = await run_for(pool, tenant, anchoring)
    assert run["outcome"] == "failed" and "token that does not verify" in run["error"]
    assert len(await anchors(pool, tenant)) == 1


async def test_the_authoritys_credentials_are_not_in_the_stored_error(pool, tenant, anchoring, tsa):
    secret_url = tsa.url.replace("http://", "http://anchor:s3cret@") + "?key=k3y"
    with tsa.down():
        run = await run_for(pool, tenant, replace(anchoring, tsa_url=secret_url))
    assert run["outcome"] == "failed" and "unreachable" in run["error"]
    async with tenant_transaction(pool, tenant.id) as conn:
        stored = await conn.fetchval("SELECT last_error FROM audit_anchor_retry WHERE tenant_id = $1", tenant.id)
    for text in (run["error"], stored):
        assert "s3cret" not in text and "k3y" not in text and f"127.0.0.1:{tsa.port}/tsa" in text
