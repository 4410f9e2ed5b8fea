"""The chain verifier: recomputes every hash in Python, independent of the trigger.

It walks a tenant's chain in seq order and checks, for each row: that seq is
the next one (no gap), the hash version, the link to the previous row_hash,
row_hash = SHA-256(prev_hash || UTF-8(JCS(record))), and the personal-data
commitment against audit_pii (erased rows count as erased, not broken).

The fast default walks only the rows after the latest usable anchor
(app.audit.anchor_check: its token verifies for its row_hash, and that seq
still holds it), starting from the anchored row_hash. That is sound because
the anchor job walked every row up to that head before it had it timestamped
(app.audit.anchor) and refuses to anchor a range that does not verify: the
authority's token vouches for a head whose whole chain was checked, and any
rewrite of the rows before it that keeps the links (the only kind that could
pass for genuine) changes the anchored row_hash, which the on-chain check sees.
What the fast walk cannot see is damage before the anchor that breaks a hash
without rewriting the links after it (a byte flipped in a row's data): the
full walk (`full=True`, `?full=1`, `--full`) recomputes every row for that,
as does the offline bundle verifier. No usable anchor means a full walk.

Both modes answer in the same format. Either way, the latest anchor must be
usable and no chain_discontinuity may be newer than the latest usable anchor;
otherwise the verdict is not ok, naming the reason and the seq.
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

from app.audit.anchor_check import NO_AUTHORITY, Authority, CheckedAnchor, authority, discontinuity_after, latest_and_usable
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
    mode: str = "full"                  # "from_anchor" | "full"
    checked_from: int = 1               # the first seq walked (total + 1 when none was)
    anchor: CheckedAnchor | None = None  # the latest anchor, usable or not

    def as_json(self) -> dict:
        body = {
            "ok": self.ok,
            "total_rows": self.total_rows,
            "head": self.head,
            "last_anchor_at": self.last_anchor_at,
            "broken_at": self.broken_at,
            "mode": self.mode,
            "checked_from": self.checked_from,
            "erased_rows": self.erased_rows,
            "anchor": self.anchor.as_json() if self.anchor else None,
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
    conn: asyncpg.Connection, tenant_id: UUID, start: int, end: int, batch: int,
    watch: frozenset[int] = frozenset(), prev: bytes | None = None,
) -> RangeResult:
    """Walk seq start..end of the tenant's chain on `conn` (inside a tenant transaction).

    `prev` is the row_hash seq start must link to; by default the genesis
    hash, or the stored row_hash of seq start - 1.
    """
    if prev is None:
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
                          batch: int, watch: frozenset[int], prev: bytes | None = None) -> RangeResult:
    """walk_range in a worker process, in the snapshot the coordinating transaction exported."""

    async def walk() -> RangeResult:
        conn = await asyncpg.connect(dsn, statement_cache_size=0)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute(f"SET TRANSACTION SNAPSHOT '{_snapshot_id(snapshot)}'")
                await set_tenant(conn, tenant_id)
                return await walk_range(conn, tenant_id, start, end, batch, watch, prev)
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


async def verify_tenant(pool: asyncpg.Pool, tenant_id: UUID, settings, *, full: bool = False) -> Verdict:
    """verify_chain as configured: batch size, worker processes and the authority's roots from settings."""
    return await verify_chain(pool, tenant_id, batch=settings.verify_batch, workers=settings.verify_workers,
                              dsn=settings.runtime_database_url, full=full, authority=authority(settings))


async def verify_chain(
    pool: asyncpg.Pool, tenant_id: UUID, *, batch: int = 20000,
    workers: int = 1, dsn: str | None = None, parallel_from: int = 50_000,
    full: bool = False, authority: Authority = NO_AUTHORITY,
) -> Verdict:
    """Give the verdict on the tenant's chain, all in one snapshot.

    From the latest usable anchor on, or every row when `full` (or when no
    anchor is usable). A walk of at least `parallel_from` rows is split into
    `workers` ranges walked in worker processes (connecting with `dsn`, the app
    role), all in the snapshot this transaction exports; the event loop stays
    free meanwhile. Anchor tokens are checked against `authority`'s roots.
    """
    async with tenant_transaction(pool, tenant_id, isolation="repeatable_read", readonly=True) as conn:
        latest, usable = await latest_and_usable(conn, tenant_id, authority)
        discontinuity = await discontinuity_after(conn, tenant_id, usable.anchored_at if usable else None)
        total, end, head, erased = await conn.fetchrow(
            "SELECT count(*), coalesce(max(seq), 0),"
            " (SELECT row_hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1),"
            " (SELECT count(*) FROM audit_pii WHERE tenant_id = $1 AND salt IS NULL)"
            " FROM audit_log WHERE tenant_id = $1",
            tenant_id,
        )
        from_anchor = usable is not None and not full
        start, prev = (usable.seq + 1, usable.row_hash) if from_anchor else (1, GENESIS)
        results = await walk_ranges(conn, tenant_id, start, end, prev, batch=batch, workers=workers, dsn=dsn,
                                    parallel_from=parallel_from)
        # Rows before the anchor are not walked; a deleted one still shows in the count.
        gap = await _first_gap(conn, tenant_id, end) if from_anchor and total != end else None

    broken = [r for r in results if r.broken_at is not None]
    if not from_anchor:
        erased = sum(r.erased for r in results)
    if broken:
        first = min(broken, key=lambda r: r.broken_at)
        failure = (first.broken_at, first.reason)
    elif gap is not None:
        failure = (gap, "row_missing")
    elif latest is not None and latest.trouble:
        failure = (latest.seq, latest.trouble)
    elif discontinuity is not None:
        failure = (discontinuity["seq"], "chain_discontinuity")
    else:
        failure = None
    anchor_time = usable.token.gen_time or usable.anchored_at if usable else None
    return Verdict(
        ok=failure is None, total_rows=total, head=head.hex() if head else None,
        last_anchor_at=anchor_time.strftime("%Y-%m-%dT%H:%M:%SZ") if anchor_time else None,
        broken_at=failure[0] if failure else None, reason=failure[1] if failure else None, erased_rows=erased,
        mode="from_anchor" if from_anchor else "full", checked_from=start, anchor=latest)


async def walk_ranges(conn: asyncpg.Connection, tenant_id: UUID, start: int, end: int, prev: bytes, *, batch: int,
                      workers: int = 1, dsn: str | None = None, parallel_from: int = 50_000) -> list[RangeResult]:
    """Walk start..end here, or split across worker processes in this transaction's snapshot when it is long."""
    if start > end:
        return []
    if workers > 1 and dsn and end - start + 1 >= parallel_from:
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        bounds = [start + (end - start + 1) * k // workers for k in range(workers + 1)]
        loop = asyncio.get_running_loop()
        executor = _worker_pool(workers)
        return list(await asyncio.gather(*(
            loop.run_in_executor(executor, walk_range_in_process, dsn, snapshot, tenant_id,
                                 bounds[k], bounds[k + 1] - 1, batch, frozenset(), prev if k == 0 else None)
            for k in range(workers) if bounds[k] < bounds[k + 1]
        )))
    return [await walk_range(conn, tenant_id, start, end, batch, prev=prev)]


async def _first_gap(conn: asyncpg.Connection, tenant_id: UUID, end: int) -> int:
    """The first seq missing from 1..end."""
    return await conn.fetchval(
        "SELECT CASE WHEN NOT EXISTS (SELECT FROM audit_log WHERE tenant_id = $1 AND seq = 1) THEN 1 ELSE"
        " (SELECT a.seq + 1 FROM audit_log a WHERE a.tenant_id = $1 AND a.seq < $2 AND NOT EXISTS"
        "   (SELECT FROM audit_log b WHERE b.tenant_id = $1 AND b.seq = a.seq + 1) ORDER BY a.seq LIMIT 1) END",
        tenant_id, end)
