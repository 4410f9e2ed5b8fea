"""Audit chain append throughput.

On a scratch database (see _scratch.py) it measures:

* one_tenant: chained appends/s into ONE tenant's chain from W concurrent
  writers, each append its own transaction (tenant_transaction + app.audit.record),
  with the server's synchronous_commit (reported in "server");
* many_tenants: the same, the writers taking T tenants round-robin;
* plain_insert: for comparison, rows of the same shape inserted into an unchained
  table (same columns, constraints and indexes as audit_log; no trigger, RLS or
  foreign key), same transaction shape, same writers;
* one_transaction: one transaction appending N rows with
  `SELECT audit_append(...) FROM generate_series(1, N)`, for each N given, with
  the per-row time and its ratio between the largest and smallest N (1.0 = linear).

Where the time goes, for the one-tenant phase:

* every phase reports CPU per transaction, of this client process and of the
  whole machine (from /proc/stat), and the machine's idle CPUs meanwhile: when
  idle is near 0 the figure is a CPU budget, not a lock or a disk;
* waits: what the app role's backends were doing, sampled from
  pg_stat_activity (share of samples): Lock:advisory is queueing for the
  tenant's chain lock, IO:WALSync the commit's flush, ClientRead waiting on us;
* one_tenant_unflushed: the same phase with synchronous_commit off for the
  bench's own sessions only, a DIAGNOSTIC of how much the WAL flush costs; the
  app never runs so and its figures are not the result.

--writers takes several counts (e.g. 1 4 8 16): the one-tenant phases are run
for each, the other phases with the largest.

At the end every chain written is checked with app.audit.verify.verify_chain.

Run from the repository root, with the project installed:

    python bench/audit_append.py [--seconds 10] [--writers 8 ...] [--tenants 64] \
        [--bulk-rows 10000 100000]

DATABASE_URL chooses the server (an administrator URL; default
postgresql://postgres@127.0.0.1:5432/postgres). The figures are printed as one
JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import resource
import statistics
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Awaitable, Callable

import asyncpg

from _scratch import (
    ACTOR, add_schema_argument, app_pool, app_settings, emit, log, make_tenants, schema_checksums,
    scratch_database, server_facts,
)
from app.audit import AuditAction, record
from app.audit.verify import verify_chain
from app.db import tenant_transaction
from app.tenants import Tenant

TARGET_APPENDS_PER_S = 2000
ACTION = AuditAction.USER_CREATE

PLAIN_TABLE = """
CREATE TABLE bench_plain (LIKE audit_log INCLUDING ALL);
GRANT INSERT ON bench_plain TO exceptao_app;
"""
PLAIN_INSERT = """
INSERT INTO bench_plain (tenant_id, seq, occurred_at, actor, action, data, hash_v, prev_hash, row_hash)
VALUES ($1, $2, clock_timestamp(), $3, $4, $5::jsonb, 1, $6, $7)
"""
APPEND_SERIES = """
SELECT count(audit_append($1, $2, NULL, NULL, jsonb_build_object('n', g, 'note', 'bench'), NULL, NULL))
  FROM generate_series(1, $3) AS g
"""

Op = Callable[[int], Awaitable[None]]  # one transaction; the argument is the writer's own counter

WAITS = """
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait
  FROM pg_stat_activity
 WHERE datname = current_database() AND usename = 'exceptao_app' AND state = 'active'
"""


def cpu_seconds() -> tuple[float, float]:
    """CPU used so far by this process, and by the whole machine outside idle and iowait (0 if unknown)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    try:
        with open("/proc/stat") as stat:
            user, nice, system = (int(x) for x in stat.readline().split()[1:4])
        machine = (user + nice + system) / os.sysconf("SC_CLK_TCK")
    except OSError:
        machine = 0.0
    return own.ru_utime + own.ru_stime, machine


async def drive(writers: int, seconds: float, op: Op) -> dict:
    """Run `writers` loops of `op` until `seconds` have passed; throughput and latency."""
    latencies: list[float] = []
    deadline = perf_counter() + seconds

    async def writer() -> None:
        for i in itertools.count():
            if perf_counter() >= deadline:
                return
            started = perf_counter()
            await op(i)
            latencies.append(perf_counter() - started)

    own_before, machine_before = cpu_seconds()
    started = perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = perf_counter() - started
    own_after, machine_after = cpu_seconds()
    cuts = statistics.quantiles(latencies, n=100)
    done = len(latencies)
    return {
        "transactions": done,
        "seconds": round(elapsed, 3),
        "per_s": round(done / elapsed, 1),
        "latency_ms": {"p50": round(cuts[49] * 1e3, 2), "p99": round(cuts[98] * 1e3, 2)},
        "client_cpu_us_per_tx": round((own_after - own_before) / done * 1e6),
        "machine_cpu_us_per_tx": round((machine_after - machine_before) / done * 1e6),
        "machine_idle_cpus": round(os.cpu_count() - (machine_after - machine_before) / elapsed, 2),
    }


@asynccontextmanager
async def sampled_waits(admin_url: str, every: float = 0.005):
    """Yield a dict filled, on exit, with the share of samples of each wait of the app role's active backends."""
    shares: dict[str, float] = {}
    counts: collections.Counter = collections.Counter()
    conn = await asyncpg.connect(admin_url)
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            counts.update(r["wait"] for r in await conn.fetch(WAITS))
            await asyncio.sleep(every)

    sampler = asyncio.create_task(sample())
    try:
        yield shares
    finally:
        done.set()
        await sampler
        await conn.close()
        total = sum(counts.values()) or 1
        shares.update({wait: round(n / total, 3) for wait, n in counts.most_common(6)})


async def measure(name: str, args: argparse.Namespace, op: Op) -> dict:
    await drive(args.writers, args.warmup, op)
    result = await drive(args.writers, args.seconds, op)
    log(f"{name}: {result['per_s']}/s over {result['seconds']} s")
    return result


def chained_append(pool: asyncpg.Pool, tenants: list[Tenant]) -> Op:
    turn = itertools.count()

    async def op(i: int) -> None:
        tenant = tenants[next(turn) % len(tenants)]
        async with tenant_transaction(pool, tenant.id) as conn:
            await record(conn, ACTION, actor=ACTOR, data={"n": i, "note": "bench"})

    return op


def plain_insert(pool: asyncpg.Pool, tenant: Tenant) -> Op:
    seqs = itertools.count(1)

    async def op(i: int) -> None:
        async with tenant_transaction(pool, tenant.id) as conn:
            await conn.execute(
                PLAIN_INSERT, tenant.id, next(seqs), ACTOR, ACTION.value,
                json.dumps({"n": i, "note": "bench"}), os.urandom(32), os.urandom(32),
            )

    return op


async def one_transaction(pool: asyncpg.Pool, tenant: Tenant, rows: int) -> dict:
    started = perf_counter()
    async with tenant_transaction(pool, tenant.id) as conn:
        appended = await conn.fetchval(APPEND_SERIES, ACTOR, ACTION.value, rows)
    elapsed = perf_counter() - started
    assert appended == rows, (appended, rows)
    log(f"one transaction of {rows} appends: {elapsed:.2f} s")
    return {"rows": rows, "seconds": round(elapsed, 3), "us_per_row": round(elapsed / rows * 1e6, 2)}


async def one_tenant_phase(admin_url: str, tenant: Tenant, args: argparse.Namespace, *, flushed: bool = True) -> dict:
    """Chained appends into one tenant from args.writers writers, with the backends' waits sampled.

    flushed=False runs the bench's own sessions with synchronous_commit off: a
    diagnostic of the flush's share, never how the app runs.
    """
    settings = {} if flushed else {"synchronous_commit": "off"}
    pool = await asyncpg.create_pool(app_settings(admin_url).runtime_database_url, min_size=args.writers,
                                     max_size=args.writers, server_settings=settings)
    try:
        op = chained_append(pool, [tenant])
        await drive(args.writers, args.warmup, op)
        async with sampled_waits(admin_url) as waits:
            result = await drive(args.writers, args.seconds, op)
    finally:
        await pool.close()
    log(f"one tenant, {args.writers} writers{'' if flushed else ', unflushed'}: {result['per_s']}/s")
    return {"writers": args.writers, **result, "waits": waits}


async def measure_appends(dsn: str, seconds: float, writers: int, tenants: int) -> dict:
    """One tenant's and `tenants` tenants' chained appends/s from `writers` writers, into new
    tenants of the migrated database at `dsn` (an administrator URL); every chain written verified."""
    args = argparse.Namespace(seconds=seconds, warmup=min(1.0, seconds), writers=writers)
    run = os.urandom(3).hex()
    one, *many = await make_tenants(dsn, [f"bench-one-{run}"] + [f"bench-t{k}-{run}" for k in range(tenants)])
    one_tenant = await one_tenant_phase(dsn, one, args)
    async with app_pool(dsn, writers) as pool:
        many_tenants = await measure(f"{tenants} tenants", args, chained_append(pool, many))
        verified = all([(await verify_chain(pool, t.id)).ok for t in [one, *many]])
    return {"one_tenant": one_tenant, "many_tenants": {"tenants": tenants, **many_tenants},
            "chains_verified": verified, "target_appends_per_s": TARGET_APPENDS_PER_S,
            "target_met": one_tenant["per_s"] >= TARGET_APPENDS_PER_S}


async def main(args: argparse.Namespace) -> dict:
    counts = sorted(set(args.writers))
    async with scratch_database(args.sql_dir) as admin_url:
        schema = await schema_checksums(admin_url)
        one, *many = await make_tenants(admin_url, ["bench-one"] + [f"bench-t{k}" for k in range(args.tenants)])
        bulk = await make_tenants(admin_url, [f"bench-bulk-{n}" for n in args.bulk_rows])
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(PLAIN_TABLE)
        finally:
            await admin.close()

        sweep, unflushed = [], []
        for writers in counts:
            each = argparse.Namespace(**{**vars(args), "writers": writers})
            sweep.append(await one_tenant_phase(admin_url, one, each))
            unflushed.append(await one_tenant_phase(admin_url, one, each, flushed=False))
        args.writers = counts[-1]
        async with app_pool(admin_url, args.writers) as pool:
            facts = await server_facts(pool)
            many_tenants = await measure(f"{args.tenants} tenants", args, chained_append(pool, many))
            plain = await measure("plain insert", args, plain_insert(pool, one))
            series = [await one_transaction(pool, t, n) for t, n in zip(bulk, args.bulk_rows)]
            verdicts = [await verify_chain(pool, t.id) for t in [one, *many, *bulk]]

    smallest, largest = series[0], series[-1]
    one_tenant = max(sweep, key=lambda phase: phase["per_s"])
    return {
        "server": facts,
        "schema": schema,
        "writers": counts,
        "seconds_per_phase": args.seconds,
        "one_tenant": one_tenant,
        "one_tenant_by_writers": sweep,
        "one_tenant_unflushed_diagnostic": unflushed,
        "many_tenants": {"tenants": args.tenants, "writers": args.writers, **many_tenants},
        "plain_insert": {"writers": args.writers, **plain},
        "one_transaction": series,
        "one_transaction_seconds_ratio": round(largest["seconds"] / smallest["seconds"], 2),
        "one_transaction_per_row_ratio": round(largest["us_per_row"] / smallest["us_per_row"], 2),
        "chains_verified": all(v.ok for v in verdicts),
        "target_appends_per_s": TARGET_APPENDS_PER_S,
        "target_met": one_tenant["per_s"] >= TARGET_APPENDS_PER_S,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_schema_argument(parser)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration of each throughput phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured run before each phase")
    parser.add_argument("--writers", type=int, nargs="+", default=[8], metavar="W",
                        help="concurrent writers (and pool connections); several values sweep the one-tenant phase")
    parser.add_argument("--tenants", type=int, default=64, help="tenants of the many-tenants phase")
    parser.add_argument("--bulk-rows", type=int, nargs="+", default=[10_000, 100_000], metavar="N",
                        help="rows of each single-transaction run, smallest first")
    args = parser.parse_args()
    args.bulk_rows.sort()
    return args


if __name__ == "__main__":
    emit(asyncio.run(main(parse_args())))
