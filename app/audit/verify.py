"""The chain verifier: recomputes every hash in Python, independent of the trigger.

It walks a tenant's chain in seq order and checks, for each row: that seq is
the next one (no gap), the hash version, the link to the previous row_hash,
row_hash = SHA-256(prev_hash || UTF-8(JCS(record))), and the personal-data
commitment against audit_pii (erased rows count as erased, not broken). Then it
checks that the latest anchor is still on the chain.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from hashlib import sha256
from uuid import UUID

import asyncpg

from app.audit.canonical import canonical_data, json_string
from app.db import set_tenant, tenant_transaction

GENESIS = bytes(32)

# occurred_at as integer microseconds since the epoch: exact, and cheaper to
# read than a datetime. The verifier formats it itself.
ROWS = """
SELECT seq, (extract(epoch FROM occurred_at) * 1000000)::bigint, actor, action, target_type, target_id,
       data::text, pii_commitment, hash_v, prev_hash, row_hash
  FROM audit_log
 WHERE tenant_id = $1 AND seq > $2 AND seq <= $3
 ORDER BY seq
 LIMIT $4
"""
PII = """
SELECT seq, salt, email, ip, user_agent
  FROM audit_pii
 WHERE tenant_id = $1 AND seq > $2 AND seq <= $3
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
    return sha256(b"".join((
        salt,
        b'{"email":', b"null" if email is None else json_string(email),
        b',"ip":', b"null" if ip is None else json_string(ip),
        b',"ua":', b"null" if ua is None else json_string(ua), b"}",
    ))).digest()


def second_prefix(second: int) -> bytes:
    """The "YYYY-MM-DDTHH:MM:SS." of an RFC 3339 UTC time, from seconds since the epoch."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)).encode("ascii")


# prev_hash, then the v1 record with its keys in RFC 8785 order (ASCII, so
# code-point order) and "at" as its second's prefix and the microseconds.
_HASH_INPUT = (b'%b{"action":%b,"actor":%b,"at":"%b%06dZ","data":%b,"pii":%b,'
               b'"seq":%d,"target":%b,"tenant":"%b","v":1}')


def hash_input(
    prev_hash: bytes, tenant: bytes, seq: int, at_second: bytes, at_micro: int, actor: str, action: str,
    target_type: str | None, target_id: str | None, data_text: str, pii: bytes | None,
) -> bytes:
    """prev_hash || UTF-8(JCS(record)), which SHA-256 turns into row_hash; data canonicalised.

    tenant is the tenant's UUID as JSON string contents, in bytes; at_second
    comes from second_prefix.
    """
    return _HASH_INPUT % (
        prev_hash, json_string(action), json_string(actor), at_second, at_micro, canonical_data(data_text),
        b"null" if pii is None else b'"%b"' % pii.hex().encode("ascii"),
        seq,
        b"null" if target_type is None
        else b'{"id":%b,"type":%b}' % (json_string(target_id), json_string(target_type)),
        tenant,
    )


@dataclass
class RangeResult:
    """What a walk over seq start..end found; picklable, for walks in other processes."""

    broken_at: int | None = None
    reason: str | None = None
    erased: int = 0
    seen: dict[int, bytes] = field(default_factory=dict)


class ChainWalk:
    """State of one walk; feed it rows in seq order from `start`, whose predecessor is `prev_hash`."""

    def __init__(self, tenant_id: UUID, start: int = 1, prev_hash: bytes | None = GENESIS,
                 watch: frozenset[int] = frozenset()):
        self.tenant = str(tenant_id).encode("ascii")
        self.next_seq = start
        self.prev_hash = prev_hash
        self.erased = 0
        self.seen: dict[int, bytes] = {}
        self.watch = watch
        self.second = -1
        self.at_second = b""

    def feed(self, rows: list, pii_rows: dict[int, tuple]) -> None:
        """Check rows (a batch of audit_log) with their audit_pii rows, keyed by seq."""
        tenant = self.tenant
        expected = self.next_seq
        prev = self.prev_hash
        watch = self.watch
        second, at_second = self.second, self.at_second
        committed = 0
        for seq, micros, actor, action, ttype, tid, data, pii, hash_v, prev_hash, row_hash in rows:
            if seq != expected:
                raise _Broken(expected, "row_missing")
            if hash_v != 1:
                raise _Broken(seq, "unknown_hash_version")
            if prev_hash != prev:
                raise _Broken(seq, "link_mismatch")
            if micros // 1_000_000 != second:
                second = micros // 1_000_000
                at_second = second_prefix(second)
            hashed = hash_input(prev_hash, tenant, seq, at_second, micros % 1_000_000, actor, action, ttype, tid,
                                data, pii)
            if sha256(hashed).digest() != row_hash:
                raise _Broken(seq, "hash_mismatch")
            if pii is not None:
                committed += 1
                person = pii_rows.get(seq)
                if person is None:
                    raise _Broken(seq, "pii_missing")
                salt, email, ip, ua = person
                if salt is None:
                    self.erased += 1
                elif pii_commitment(salt, email, ip, ua) != pii:
                    raise _Broken(seq, "pii_commitment_mismatch")
            if seq in watch:
                self.seen[seq] = row_hash
            prev = row_hash
            expected += 1
        if committed != len(pii_rows):
            # Personal data filed against an event that committed to none.
            stray = min(s for s in pii_rows if rows[s - self.next_seq][7] is None)
            raise _Broken(stray, "pii_commitment_mismatch")
        self.next_seq = expected
        self.prev_hash = prev
        self.second, self.at_second = second, at_second


async def walk_range(
    conn: asyncpg.Connection, tenant_id: UUID, start: int, end: int, batch: int, watch: frozenset[int]
) -> RangeResult:
    """Walk seq start..end of the tenant's chain on `conn` (inside a tenant transaction)."""
    prev = GENESIS if start == 1 else await conn.fetchval(
        "SELECT row_hash FROM audit_log WHERE tenant_id = $1 AND seq = $2", tenant_id, start - 1)
    walk = ChainWalk(tenant_id, start, prev, watch)
    try:
        after = start - 1
        while after < end:
            rows = await conn.fetch(ROWS, tenant_id, after, end, batch)
            if not rows:
                raise _Broken(after + 1, "row_missing")
            last = rows[-1][0]
            pii_rows = {r[0]: tuple(r)[1:] for r in await conn.fetch(PII, tenant_id, after, last)}
            walk.feed(rows, pii_rows)
            after = last
    except _Broken as broken:
        return RangeResult(broken.seq, broken.reason, walk.erased, walk.seen)
    return RangeResult(None, None, walk.erased, walk.seen)


def walk_range_in_process(dsn: str, snapshot: str, tenant_id: UUID, start: int, end: int,
                          batch: int, watch: frozenset[int]) -> RangeResult:
    """walk_range in a worker process, in the snapshot the coordinating transaction exported."""

    async def walk() -> RangeResult:
        conn = await asyncpg.connect(dsn, statement_cache_size=0)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute(f"SET TRANSACTION SNAPSHOT '{_snapshot_id(snapshot)}'")
                await set_tenant(conn, tenant_id)
                return await walk_range(conn, tenant_id, start, end, batch, watch)
        finally:
            await conn.close()

    return asyncio.run(walk())


def _snapshot_id(snapshot: str) -> str:
    # SET TRANSACTION SNAPSHOT takes no parameters; the id comes from pg_export_snapshot().
    if not _SNAPSHOT_ID.match(snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    return snapshot


_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+-[0-9]+$")
_executor: ProcessPoolExecutor | None = None


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    # Spawned, not forked: forking a process with an event loop and threads is unsafe.
    global _executor
    if _executor is None:
        _executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    return _executor


def _ready() -> int:
    return os.getpid()


async def start_workers(workers: int) -> None:
    """Spawn the worker processes now (each imports this module) rather than on the first long walk."""
    loop = asyncio.get_running_loop()
    executor = _worker_pool(workers)
    await asyncio.gather(*(loop.run_in_executor(executor, _ready) for _ in range(workers)))


def shutdown_workers() -> None:
    global _executor
    if _executor is not None:
        _executor.shutdown(cancel_futures=True)
        _executor = None


async def verify_tenant(pool: asyncpg.Pool, tenant_id: UUID, settings) -> Verdict:
    """verify_chain as configured: batch size and worker processes from settings."""
    return await verify_chain(pool, tenant_id, batch=settings.verify_batch,
                              workers=settings.verify_workers, dsn=settings.runtime_database_url)


async def verify_chain(
    pool: asyncpg.Pool, tenant_id: UUID, *, batch: int = 20000,
    workers: int = 1, dsn: str | None = None, parallel_from: int = 50_000,
) -> Verdict:
    """Walk the tenant's whole chain in one snapshot and give the verdict.

    A chain of at least `parallel_from` rows is split into `workers` ranges
    walked in worker processes (connecting with `dsn`, the app role), all in
    the snapshot this transaction exports; the event loop stays free meanwhile.
    """
    async with tenant_transaction(pool, tenant_id, isolation="repeatable_read", readonly=True) as conn:
        anchor = await conn.fetchrow(
            "SELECT seq, row_hash, anchored_at FROM audit_anchor WHERE tenant_id = $1 AND kind = 'anchor'"
            " ORDER BY anchored_at DESC LIMIT 1",
            tenant_id,
        )
        last_anchor_at = anchor["anchored_at"].strftime("%Y-%m-%dT%H:%M:%SZ") if anchor else None
        watch = frozenset([anchor["seq"]]) if anchor else frozenset()
        total, head = await conn.fetchrow(
            "SELECT count(*), (SELECT row_hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1)"
            " FROM audit_log WHERE tenant_id = $1",
            tenant_id,
        )
        end = await conn.fetchval("SELECT max(seq) FROM audit_log WHERE tenant_id = $1", tenant_id) or 0

        if workers > 1 and dsn and end >= parallel_from:
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            bounds = [1 + end * k // workers for k in range(workers + 1)]
            loop = asyncio.get_running_loop()
            executor = _worker_pool(workers)
            results = await asyncio.gather(*(
                loop.run_in_executor(executor, walk_range_in_process, dsn, snapshot, tenant_id,
                                     bounds[k], bounds[k + 1] - 1, batch, watch)
                for k in range(workers)
            ))
        else:
            results = [await walk_range(conn, tenant_id, 1, end, batch, watch)]

    broken = [r for r in results if r.broken_at is not None]
    erased = sum(r.erased for r in results)
    seen = {seq: h for r in results for seq, h in r.seen.items()}
    if broken:
        first = min(broken, key=lambda r: r.broken_at)
        failure = (first.broken_at, first.reason)
    elif anchor and seen.get(anchor["seq"]) != anchor["row_hash"]:
        failure = (anchor["seq"], "anchor_not_on_chain")
    else:
        failure = None
    head_hex = head.hex() if head else None
    if failure:
        return Verdict(False, total, head_hex, last_anchor_at, failure[0], failure[1], erased)
    return Verdict(True, total, head_hex, last_anchor_at, None, None, erased)
