"""A stored object that changed is never served: 409, an audit entry, a critical log line, and not a byte of content."""

from __future__ import annotations

import json
import logging

import pytest

from app.audit.verify import verify_tenant
from app.crypto.stream import HEADER_SIZE, SEALED_CHUNK_SIZE
from tests.evidence.conftest import download, make_team, on_s3, serving, upload
from tests.evidence.helpers import a_risk, an_exception, audit_actions, evidence_id_from, rows

# Four full 64 KiB chunks and a short last one; every byte says where it was.
DATA = b"".join(f"line {i:07d} of the firewall export\n".encode() for i in range(7500))[:4 * 65536 + 1000]


def flip(sealed: bytes) -> bytes:
    middle = HEADER_SIZE + SEALED_CHUNK_SIZE + 100
    return sealed[:middle] + bytes([sealed[middle] ^ 0x01]) + sealed[middle + 1:]


def cut_tail(sealed: bytes) -> bytes:
    return sealed[:-500]


def drop_last_chunk(sealed: bytes) -> bytes:
    # Exactly at a chunk boundary: every chunk left is intact, only the final one is missing.
    return sealed[:HEADER_SIZE + 4 * SEALED_CHUNK_SIZE]


def swap_chunks(sealed: bytes) -> bytes:
    header, body = sealed[:HEADER_SIZE], sealed[HEADER_SIZE:]
    first, second = body[:SEALED_CHUNK_SIZE], body[SEALED_CHUNK_SIZE:2 * SEALED_CHUNK_SIZE]
    return header + second + first + body[2 * SEALED_CHUNK_SIZE:]


def append(sealed: bytes) -> bytes:
    return sealed + b"\x00" * 32


CHANGES = {"flipped byte": flip, "cut tail": cut_tail, "last chunk dropped": drop_last_chunk,
           "chunks swapped": swap_chunks, "bytes appended": append}


async def stored(team, pool, admin, tenant):
    e = await an_exception(pool, tenant, team)
    evidence_id = evidence_id_from(await upload(team["Rhea"].browser, e, "export.txt", DATA))
    [row] = await rows(admin, tenant)
    return evidence_id, row


async def refused_without_content(browser, evidence_id, admin, tenant, reason: str, caplog) -> None:
    with caplog.at_level(logging.CRITICAL, logger="exceptao.evidence"):
        response, body = await download(browser, evidence_id)
    assert response.status_code == 409
    assert "The stored file does not match what was uploaded" in browser.last_body
    assert b"firewall export" not in body and b"line 0000" not in body
    assert "attachment" not in response.headers.get("Content-Disposition", "")
    [alert] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert str(evidence_id) in alert.getMessage() and str(tenant.id) in alert.getMessage()
    [mismatch] = [r for r in await audit_actions(admin, tenant) if r["action"] == "evidence:evidence:mismatch"]
    assert mismatch["target_id"] == str(evidence_id) and json.loads(mismatch["data"])["reason"] == reason


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_changed_object_in_the_folder_is_refused(change, team, pool, admin, tenant, settings, caplog):
    evidence_id, row = await stored(team, pool, admin, tenant)
    path = settings.storage_dir / row["object_name"]
    path.write_bytes(CHANGES[change](path.read_bytes()))
    await refused_without_content(team["Aud"].browser, evidence_id, admin, tenant, "tampered", caplog)
    assert (await verify_tenant(pool, tenant.id, settings)).ok


async def test_another_files_object_put_in_its_place_is_refused(team, pool, admin, tenant, settings, caplog):
    """Same tenant, same data key, a valid sealed file: the encryption is bound to the evidence id as well."""
    first, row = await stored(team, pool, admin, tenant)
    e = await an_exception(pool, tenant, team)
    evidence_id_from(await upload(team["Rhea"].browser, e, "other.txt", DATA))
    other = (await rows(admin, tenant))[1]
    (settings.storage_dir / row["object_name"]).write_bytes((settings.storage_dir / other["object_name"]).read_bytes())
    await refused_without_content(team["Aud"].browser, first, admin, tenant, "tampered", caplog)


async def test_a_changed_recorded_hash_is_refused(team, pool, admin, tenant, caplog):
    evidence_id, _ = await stored(team, pool, admin, tenant)
    await admin.execute("UPDATE evidence SET sha256 = sha256('something else'::bytea) WHERE id = $1", evidence_id)
    await refused_without_content(team["Aud"].browser, evidence_id, admin, tenant, "sha256", caplog)


async def test_a_missing_object_is_refused(team, pool, admin, tenant, settings, caplog):
    evidence_id, row = await stored(team, pool, admin, tenant)
    (settings.storage_dir / row["object_name"]).unlink()
    await refused_without_content(team["Aud"].browser, evidence_id, admin, tenant, "missing_object", caplog)


async def test_an_intact_file_still_comes_back_whole(team, pool, admin, tenant):
    evidence_id, _ = await stored(team, pool, admin, tenant)
    response, body = await download(team["Aud"].browser, evidence_id)
    assert response.status_code == 200 and body == DATA and response.headers["Content-Length"] == str(len(DATA))


@pytest.mark.parametrize("change", ["flipped byte", "cut tail", "chunks swapped"])
async def test_a_changed_object_on_s3_is_refused(change, s3_providers, vault, settings, pool, admin, tenant, caplog):
    configured = vault.configure(await on_s3(settings, s3_providers["b2"]))
    async with serving(configured) as site:
        team = await make_team(site, admin, tenant)
        r = await a_risk(pool, tenant, team)
        await admin.execute("INSERT INTO evidence_settings (tenant_id, dlp_policy) VALUES ($1, 'accept_with_warning')",
                            tenant.id)
        evidence_id = evidence_id_from(await upload(team["Olga"].browser, r, "export.txt", DATA))
        [row] = await rows(admin, tenant)
        async with s3_providers["b2"].client() as s3:
            answer = await s3.get_object(Bucket=configured.s3_bucket, Key=row["object_name"])
            sealed = await answer["Body"].read()
            await s3.put_object(Bucket=configured.s3_bucket, Key=row["object_name"], Body=CHANGES[change](sealed))
        await refused_without_content(team["Aud"].browser, evidence_id, admin, tenant, "tampered", caplog)
