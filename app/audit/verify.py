"""The chain verifier: recomputes every hash in Python, independent of the trigger.

It walks a tenant's chain in seq order and checks, for each row: that seq is
the next one (no gap), the hash version, the link to the previous row_hash,
row_hash = SHA-256(prev_hash || UTF-8(JCS(record))), and the personal-data
commitment against audit_pii (erased rows count as erased, not broken). Then it
checks that the latest anchor is still on the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from uuid import UUID

import asyncpg

from app.audit.canonical import canonical_data_text, json_string
from app.db import tenant_transaction

GENESIS = bytes(32)
AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

ROWS = """
SELECT l.seq, l.occurred_at, l.actor, l.action, l.target_type, l.target_id, l.data::text,
       l.pii_commitment, l.hash_v, l.prev_hash, l.row_hash,
       p.seq IS NOT NULL, p.salt, p.email, p.ip, p.user_agent
  FROM audit_log l
  LEFT JOIN audit_pii p ON p.tenant_id = l.tenant_id AND p.seq = l.seq
 WHERE l.tenant_id = $1 AND l.seq > $2
 ORDER BY l.seq
 LIMIT $3
"""


@dataclass
class Verdict:
    ok: bool
    total_rows: int
    head: str | None
    last_anchor_at: str | None
    broken_at: int | None
    reason: str | None = None
    erased_rows: int = 0

    def as_json(self) -> dict:
        body = {
            "ok": self.ok,
            "total_rows": self.total_rows,
            "head": self.head,
            "last_anchor_at": self.last_anchor_at,
            "broken_at": self.broken_at,
        }
        if not self.ok:
            body["reason"] = self.reason
        return body


class _Broken(Exception):
    def __init__(self, seq: int, reason: str):
        super().__init__(seq, reason)
        self.seq = seq
        self.reason = reason


def pii_commitment(salt: bytes, email: str | None, ip: str | None, ua: str | None) -> bytes:
    """SHA-256(salt || UTF-8(JCS({"email", "ip", "ua"}))): fixed keys, string or null values."""
    text = (
        '{"email":' + (json_string(email) if email is not None else "null")
        + ',"ip":' + (json_string(ip) if ip is not None else "null")
        + ',"ua":' + (json_string(ua) if ua is not None else "null") + "}"
    )
    return sha256(salt + text.encode("utf-8")).digest()


def record_text(
    tenant: str, seq: int, at: datetime, actor: str, action: str,
    target_type: str | None, target_id: str | None, data_text: str, pii: bytes | None,
) -> str:
    """JCS of the v1 record: keys in RFC 8785 order, data canonicalised."""
    return "".join((
        '{"action":', json_string(action),
        ',"actor":', json_string(actor),
        ',"at":"', at.strftime(AT_FORMAT),
        '","data":', canonical_data_text(data_text),
        ',"pii":', "null" if pii is None else '"' + pii.hex() + '"',
        ',"seq":', str(seq),
        ',"target":', "null" if target_type is None
        else '{"id":' + json_string(target_id) + ',"type":' + json_string(target_type) + "}",
        ',"tenant":"', tenant, '","v":1}',
    ))


class ChainWalk:
    """State of one walk; feed it rows in seq order."""

    def __init__(self, tenant_id: UUID):
        self.tenant = str(tenant_id)
        self.next_seq = 1
        self.prev_hash = GENESIS
        self.erased = 0
        self.seen: dict[int, bytes] = {}
        self.watch: set[int] = set()

    def feed(self, rows: list) -> None:
        tenant = self.tenant
        expected = self.next_seq
        prev = self.prev_hash
        watch = self.watch
        for (seq, at, actor, action, ttype, tid, data, pii, hash_v, prev_hash, row_hash,
             has_pii, salt, email, ip, ua) in rows:
            if seq != expected:
                raise _Broken(expected, "row_missing")
            if hash_v != 1:
                raise _Broken(seq, "unknown_hash_version")
            if prev_hash != prev:
                raise _Broken(seq, "link_mismatch")
            text = record_text(tenant, seq, at, actor, action, ttype, tid, data, pii)
            if sha256(prev_hash + text.encode("utf-8")).digest() != row_hash:
                raise _Broken(seq, "hash_mismatch")
            if pii is not None:
                if not has_pii:
                    raise _Broken(seq, "pii_missing")
                if salt is None:
                    self.erased += 1
                elif pii_commitment(salt, email, ip, ua) != pii:
                    raise _Broken(seq, "pii_commitment_mismatch")
            elif has_pii:
                raise _Broken(seq, "pii_commitment_mismatch")
            if seq in watch:
                self.seen[seq] = row_hash
            prev = row_hash
            expected += 1
        self.next_seq = expected
        self.prev_hash = prev


async def verify_chain(pool: asyncpg.Pool, tenant_id: UUID, *, batch: int = 20000) -> Verdict:
    """Walk the tenant's whole chain in one snapshot and give the verdict."""
    async with tenant_transaction(pool, tenant_id, isolation="repeatable_read", readonly=True) as conn:
        anchor = await conn.fetchrow(
            "SELECT seq, row_hash, anchored_at FROM audit_anchor WHERE tenant_id = $1"
            " ORDER BY anchored_at DESC LIMIT 1",
            tenant_id,
        )
        walk = ChainWalk(tenant_id)
        if anchor:
            walk.watch.add(anchor["seq"])
        last_anchor_at = anchor["anchored_at"].strftime("%Y-%m-%dT%H:%M:%SZ") if anchor else None
        try:
            after = 0
            while True:
                rows = await conn.fetch(ROWS, tenant_id, after, batch)
                if not rows:
                    break
                walk.feed(rows)
                after = rows[-1][0]
            if anchor and walk.seen.get(anchor["seq"]) != anchor["row_hash"]:
                raise _Broken(anchor["seq"], "anchor_not_on_chain")
        except _Broken as broken:
            total, head = await conn.fetchrow(
                "SELECT count(*), (SELECT row_hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1)"
                " FROM audit_log WHERE tenant_id = $1",
                tenant_id,
            )
            return Verdict(False, total, head.hex() if head else None, last_anchor_at,
                           broken.seq, broken.reason, walk.erased)
        total = walk.next_seq - 1
        head = walk.prev_hash.hex() if total else None
        return Verdict(True, total, head, last_anchor_at, None, None, walk.erased)
