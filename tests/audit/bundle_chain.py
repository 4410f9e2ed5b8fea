"""A tenant's chain with anchors from the real authority (the `tsa` fixture), and its bundle, for the bundle tests."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.audit import AuditAction, Pii, Target, record
from app.audit.anchor import anchor_tenant
from app.audit.bundle import BundleSummary, write_bundle
from app.db import tenant_transaction

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
EMAIL = "erin.erased@example.com"
KEPT_EMAIL = "kim.kept@example.com"
IP = "203.0.113.77"

# Data of every shape JCS has rules for: non-ASCII and high-plane keys, escapes, doubles, big integers, nesting.
DATA = [
    {"reason": "Zażółć gęślą jaźń", "count": 3},
    {"ratio": 0.1, "big": 1.2345678901234567e19, "tiny": 1e-7, "whole": 2.0, "neg": -0.0},
    {"\ue000 private": 1, "\U0001f600 emoji": 2, "a": [None, True, False, {"z": 1, "é": "\u2028\n\t\"\\"}]},
    {"note": "a plain row"},
]


@dataclass
class Bundled:
    tenant: object
    path: Path
    summary: BundleSummary
    anchored: list[int]  # seqs of the two anchors
    erased_seq: int
    plain_seq: int

    def lines(self) -> list[bytes]:
        return self.path.read_bytes().splitlines(keepends=True)

    def row_index(self, lines: list[bytes], seq: int) -> int:
        marker = b',"seq":%d,' % seq
        return next(i for i, line in enumerate(lines) if line.startswith(b'{"record"') and marker in line)


@pytest.fixture
def anchoring(settings, tsa):
    return replace(settings, tsa_url=tsa.url, tsa_ca_file=tsa.ca)


async def append(pool, tenant, data: dict, *, pii: Pii | None = None, target: Target | None = Target("user", "u1")):
    async with tenant_transaction(pool, tenant.id) as conn:
        await record(conn, AuditAction.USER_CREATE, actor="system:test", target=target, data=data, pii=pii)


async def head_seq(pool, tenant) -> int:
    async with tenant_transaction(pool, tenant.id) as conn:
        return await conn.fetchval("SELECT max(seq) FROM audit_log WHERE tenant_id = $1", tenant.id)


@pytest.fixture
async def bundled(pool, admin, tenant, anchoring, tmp_path) -> Bundled:
    for data in DATA[:2]:
        await append(pool, tenant, data)
    await append(pool, tenant, {"signed_in": True}, pii=Pii(email=EMAIL, ip=IP, user_agent="Firefox"))
    erased_seq = await head_seq(pool, tenant)
    assert await anchor_tenant(pool, tenant.id, NOW, anchoring) == {"anchored": 1}
    first_anchor = erased_seq
    await append(pool, tenant, DATA[2], target=None)
    await append(pool, tenant, {"signed_in": True}, pii=Pii(email=KEPT_EMAIL, ip=IP))
    await append(pool, tenant, DATA[3])
    plain_seq = await head_seq(pool, tenant)
    assert await anchor_tenant(pool, tenant.id, NOW + timedelta(hours=1), anchoring) == {"anchored": 1}
    for k in range(9):  # past the last anchor, and over several of the writer's batches (verify_batch is 7)
        await append(pool, tenant, {"k": k})
    # An erasure as the database allows it (the one change audit_pii takes).
    await admin.execute(
        "UPDATE audit_pii SET salt = NULL, email = 'actor_tombstone_' || gen_random_uuid(), ip = NULL,"
        " user_agent = NULL WHERE tenant_id = $1 AND seq = $2", tenant.id, erased_seq)
    buffer = io.BytesIO()
    summary = await write_bundle(pool, tenant.id, buffer, anchoring)
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(buffer.getvalue())
    return Bundled(tenant, path, summary, [first_anchor, plain_seq], erased_seq, plain_seq)
