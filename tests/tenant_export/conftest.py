"""Fixtures of the tenant export tests: a tenant with something of everything, and a neighbour with a canary.

The tenant has the evidence tests' team (people signed in, two with TOTP),
an exception with an uploaded file, and an API token; so its archive has
password hashes, TOTP secrets, session and token hashes to leave out.
"""

from __future__ import annotations

import io
import secrets
import zipfile
from dataclasses import dataclass

import pytest

from app.access.bootstrap import create_token
from tests.evidence.conftest import full_team, site, upload
from tests.evidence.helpers import CLEAN, an_exception, evidence_id_from
from tests.web import make_user

__all__ = ["full_team", "site"]   # fixtures, found by pytest under these names


@dataclass
class Populated:
    evidence_id: object
    evidence_bytes: bytes
    canary: str          # a string only the neighbouring tenant holds


@pytest.fixture
async def populated(site, admin, pool, tenant, full_team, make_tenant) -> Populated:
    exception = await an_exception(pool, tenant, full_team)
    evidence_id = evidence_id_from(await upload(full_team["Rhea"].browser, exception, "firewall rules.txt", CLEAN))
    ada_email = await admin.fetchval("SELECT email FROM app_user WHERE id = $1", full_team["Ada"].id)
    await create_token(admin, tenant.slug, ada_email, ["exception.read"], "reporting", 30)
    neighbour = await make_tenant("neighbour")
    canary = f"canary-{secrets.token_hex(8)}"
    await make_user(admin, neighbour, name=canary)
    return Populated(evidence_id, CLEAN, canary)


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}
