"""Evidence: files attached to an exception or a risk, hashed on receipt, DLP-scanned, encrypted, stored off-box.

    intake.py    the request body streamed to a spool file, hashed, cut off at the size limit
    receive.py   scan, apply the tenant's DLP policy, encrypt into the object store, then the row
    deliver.py   download: decrypt and verify the whole file before the first byte is sent
    review.py    quarantine decisions and the tenant's DLP policy
    names.py     sanitised file names, content types, Content-Disposition

This module reads evidence (under the caller's tenant transaction, so
row-level security and the org-unit scope decide what exists) and holds
what the others share. Audit data holds ids, sizes, hashes, finding kinds
and counts, never a file name, a masked sample or a comment: the chain
cannot forget, and those may name people.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

STATES = {"stored": "stored", "quarantined": "quarantined: waiting for review", "rejected": "rejected",
          "released": "released after review"}
DOWNLOADABLE = ("stored", "released")
POLICIES = {
    "block": "Block: refuse the upload; nothing is stored",
    "quarantine": "Quarantine: store it, but nobody may download it until a reviewer releases it",
    "accept_with_warning": "Accept with a warning: store it and show what was found",
}
DEFAULT_POLICY = "quarantine"
PARENT_KINDS = ("exception", "risk")
# Exceptions whose decision is over: their record is closed, evidence can no longer be added to it.
CLOSED_EXCEPTION_STATES = ("REJECTED", "EXPIRED", "REVOKED", "WITHDRAWN")


@dataclass(frozen=True)
class Parent:
    kind: str     # "exception" or "risk"
    id: UUID

    def __post_init__(self):
        if self.kind not in PARENT_KINDS:
            raise ValueError(f"evidence belongs to an exception or a risk, not {self.kind!r}")

    @property
    def path(self) -> str:
        return f"/{self.kind}s/{self.id}"

    @property
    def audit_data(self) -> dict:
        return {f"{self.kind}_id": str(self.id)}


@dataclass(frozen=True)
class Finding:
    kind: str
    count: int
    sample: str    # masked by the scanner


@dataclass(frozen=True)
class Decision:
    decision: str          # "release" or "reject"
    decided_by: UUID
    decider_name: str
    decided_at: datetime
    comment: str


@dataclass(frozen=True)
class Evidence:
    id: UUID
    parent: Parent
    org_unit_id: UUID | None
    filename: str
    content_type: str
    file_type: str
    size: int
    sha256: bytes
    object_name: str
    data_key_id: UUID
    state: str
    unscannable: str | None
    uploaded_by: UUID
    uploader_name: str
    uploaded_at: datetime
    findings: tuple[Finding, ...] = ()
    decision: Decision | None = None

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()

    @property
    def downloadable(self) -> bool:
        return self.state in DOWNLOADABLE

    @property
    def state_label(self) -> str:
        return STATES[self.state]

    @property
    def flagged(self) -> bool:
        return bool(self.findings or self.unscannable)


def aad_for(tenant_id: UUID, evidence_id: UUID) -> bytes:
    """What the encryption binds a stored file to: its tenant and its evidence row (no swapping objects between rows)."""
    return b"exceptao/evidence/v1" + tenant_id.bytes + evidence_id.bytes


_SELECT = """
SELECT e.id, e.exception_id, e.risk_id, e.org_unit_id, e.filename, e.content_type, e.file_type, e.size, e.sha256,
       e.object_name, e.data_key_id, e.state, e.unscannable, e.uploaded_by, e.uploaded_at,
       coalesce(u.display_name, 'someone') AS uploader_name,
       d.decision, d.decided_by, d.decided_at, d.comment, coalesce(du.display_name, 'someone') AS decider_name
  FROM evidence e
  LEFT JOIN app_user u ON u.id = e.uploaded_by
  LEFT JOIN evidence_decision d ON d.evidence_id = e.id
  LEFT JOIN app_user du ON du.id = d.decided_by
"""


async def _findings(conn: asyncpg.Connection, ids: list[UUID]) -> dict[UUID, tuple[Finding, ...]]:
    found: dict[UUID, list[Finding]] = {}
    for row in await conn.fetch("SELECT evidence_id, kind, count, sample FROM evidence_finding"
                                " WHERE evidence_id = any($1::uuid[]) ORDER BY kind", ids):
        found.setdefault(row["evidence_id"], []).append(Finding(row["kind"], row["count"], row["sample"]))
    return {k: tuple(v) for k, v in found.items()}


async def _many(conn: asyncpg.Connection, where: str, *args) -> list[Evidence]:
    rows = await conn.fetch(_SELECT + where, *args)
    findings = await _findings(conn, [r["id"] for r in rows]) if rows else {}
    return [_evidence(r, findings.get(r["id"], ())) for r in rows]


def _evidence(row: asyncpg.Record, findings: tuple[Finding, ...]) -> Evidence:
    parent = Parent("exception", row["exception_id"]) if row["exception_id"] else Parent("risk", row["risk_id"])
    decision = None
    if row["decision"]:
        decision = Decision(row["decision"], row["decided_by"], row["decider_name"], row["decided_at"], row["comment"])
    return Evidence(row["id"], parent, row["org_unit_id"], row["filename"], row["content_type"], row["file_type"],
                    row["size"], bytes(row["sha256"]), row["object_name"], row["data_key_id"], row["state"],
                    row["unscannable"], row["uploaded_by"], row["uploader_name"], row["uploaded_at"], findings,
                    decision)


async def evidence_of(conn: asyncpg.Connection, parent: Parent) -> list[Evidence]:
    """The evidence of one exception or risk, oldest first."""
    where = " WHERE e.exception_id = $1" if parent.kind == "exception" else " WHERE e.risk_id = $1"
    return await _many(conn, where + " ORDER BY e.uploaded_at, e.id", parent.id)


async def get_evidence(conn: asyncpg.Connection, evidence_id: UUID) -> Evidence | None:
    found = await _many(conn, " WHERE e.id = $1", evidence_id)
    return found[0] if found else None


async def quarantined(conn: asyncpg.Connection) -> list[Evidence]:
    """Files waiting for a quarantine decision, oldest first."""
    return await _many(conn, " WHERE e.state = 'quarantined' ORDER BY e.uploaded_at, e.id")


async def dlp_policy(conn: asyncpg.Connection) -> str:
    return await conn.fetchval("SELECT dlp_policy FROM evidence_settings") or DEFAULT_POLICY
