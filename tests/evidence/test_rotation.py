"""Rotating the key-encryption key rewraps the data key; stored evidence is not touched and still opens."""

from __future__ import annotations

import uuid

from app.crypto.keys import forget_keys
from app.crypto.rotation import rotate_kek
from app.tenants import create_tenant
from tests.evidence.conftest import download, make_team, serving, upload
from tests.evidence.helpers import CLEAN, an_exception, evidence_id_from, rows


async def test_evidence_survives_a_transit_key_rotation(own, vault):
    admin, pool, base = own                    # a database of its own: a rotation rewraps every tenant's keys
    settings = vault.configure(base, transit_key=f"evidence-{uuid.uuid4().hex[:8]}")
    tenant = await create_tenant(admin, f"rot-{uuid.uuid4().hex[:8]}", "Rotation", actor="system:test")
    async with serving(settings) as site:
        team = await make_team(site, admin, tenant)
        e = await an_exception(pool, tenant, team)
        evidence_id = evidence_id_from(await upload(team["Rhea"].browser, e, "rules.txt", CLEAN))
        [row] = await rows(admin, tenant)
        stored = settings.storage_dir / row["object_name"]
        sealed = stored.read_bytes()
        wrapped = await admin.fetchval("SELECT wrapped FROM tenant_key WHERE id = $1", row["data_key_id"])

        rotation = await rotate_kek(admin, settings)
        assert rotation.rewrapped == 1 and not rotation.failed
        assert await admin.fetchval("SELECT wrapped FROM tenant_key WHERE id = $1", row["data_key_id"]) != wrapped
        assert stored.read_bytes() == sealed                       # the file itself is not touched
        forget_keys()                                              # unwrap again, from the rewrapped row
        response, body = await download(team["Aud"].browser, evidence_id)
        assert response.status_code == 200 and body == CLEAN
