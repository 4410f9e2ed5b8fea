"""Upload and download through the app: streamed in, hashed, scanned, encrypted, stored, verified on the way out."""

from __future__ import annotations

import json

import pytest

from app.audit.verify import verify_tenant
from tests.evidence.conftest import download, make_team, on_s3, serving, upload
from tests.evidence.helpers import (CLEAN, a_risk, an_exception, audit_actions, evidence_id_from, rows, sha256,
                                    stored_objects)


async def test_a_clean_file_round_trip_on_the_local_defaults(site, team, pool, admin, tenant, settings):
    e = await an_exception(pool, tenant, team)
    rhea, aud = team["Rhea"].browser, team["Aud"].browser
    response = await upload(rhea, e, "firewall export.txt", CLEAN)
    evidence_id = evidence_id_from(response)
    await rhea.get(response.headers["Location"])
    assert sha256(CLEAN) in rhea.last_body and "Received." in rhea.last_body

    [row] = await rows(admin, tenant)
    assert row["state"] == "stored" and row["size"] == len(CLEAN) and row["sha256"].hex() == sha256(CLEAN)
    assert row["filename"] == "firewall export.txt" and row["content_type"] == "text/plain"
    # Opaque object name, and what is stored is not the plaintext.
    assert "firewall" not in row["object_name"] and tenant.slug not in row["object_name"]
    [stored] = stored_objects(settings.storage_dir)
    assert CLEAN not in stored.read_bytes() and b"Firewall" not in stored.read_bytes()

    response, body = await download(aud, evidence_id)
    assert response.status_code == 200 and body == CLEAN
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"firewall export.txt\"; filename*=UTF-8''firewall%20export.txt")

    actions = [r["action"] for r in await audit_actions(admin, tenant)]
    assert actions == ["evidence:evidence:upload", "evidence:evidence:download"]
    upload_event = json.loads((await audit_actions(admin, tenant))[0]["data"])
    assert upload_event["sha256"] == sha256(CLEAN) and upload_event["size"] == len(CLEAN)
    assert "firewall" not in json.dumps(upload_event)            # file names stay out of the chain
    assert (await verify_tenant(pool, tenant.id, settings)).ok


@pytest.mark.parametrize("provider", ["r2", "b2"])
async def test_round_trip_on_s3_with_the_vault_kek(provider, s3_providers, vault, settings, pool, admin, tenant):
    configured = vault.configure(await on_s3(settings, s3_providers[provider]))
    async with serving(configured) as site:
        team = await make_team(site, admin, tenant, reviewers=True)
        parent = await a_risk(pool, tenant, team)
        data = bytes(range(256)) * 40_000 + b"tail"          # 10 MB: a multipart upload of two 5 MiB parts
        evidence_id = evidence_id_from(await upload(team["Olga"].browser, parent, "scan.bin", data))
        [row] = await rows(admin, tenant)
        assert row["state"] == "quarantined"       # binary: unscannable, and the default policy quarantines
        assert await admin.fetchval("SELECT kek_provider FROM tenant_key WHERE id = $1", row["data_key_id"]) \
            == "vault-transit"
        provider_ = s3_providers[provider]
        async with provider_.client() as s3:
            head = await s3.head_object(Bucket=configured.s3_bucket, Key=row["object_name"])
            assert head["ContentLength"] > len(data)            # sealed: header and a tag per chunk
        abel = team["Abel"].browser
        await abel.post(f"/evidence/{evidence_id}/decision", {"decision": "release", "comment": "a packet capture"})
        response, body = await download(team["Aud"].browser, evidence_id)
        assert response.status_code == 200 and body == data
