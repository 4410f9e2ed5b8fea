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

At the end every chain written is checked with app.audit.verify.verify_chain.

Run from the repository root, with the project installed:

    python bench/audit_append.py [--seconds 10] [--writers 8] [--tenants 64] \
        [--bulk-rows 10000 100000]

DATABASE_URL chooses the server (an administrator URL; default
postgresql://postgres@127.0.0.1:5432/postgres). The figures are printed as one
JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
from time import perf_counter
from typing import Awaitable, Callable

import asyncpg

from _scratch import (
    ACTOR, add_schema_argument, app_pool, emit, log, make_tenants, schema_checksums, scratch_database,
    server_facts,
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

    started = perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "transactions": len(latencies),
        "seconds": round(elapsed, 3),
        "per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": {"p50": round(cuts[49] * 1e3, 2), "p99": round(cuts[98] * 1e3, 2)},
    }


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


async def main(args: argparse.Namespace) -> dict:
    async with scratch_database(args.sql_dir) as admin_url:
        schema = await schema_checksums(admin_url)
        one, *many = await make_tenants(admin_url, ["bench-one"] + [f"bench-t{k}" for k in range(args.tenants)])
        bulk = await make_tenants(admin_url, [f"bench-bulk-{n}" for n in args.bulk_rows])
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(PLAIN_TABLE)
        finally:
            await admin.close()

        async with app_pool(admin_url, args.writers) as pool:
            facts = await server_facts(pool)
            one_tenant = await measure("one tenant", args, chained_append(pool, [one]))
            many_tenants = await measure(f"{args.tenants} tenants", args, chained_append(pool, many))
            plain = await measure("plain insert", args, plain_insert(pool, one))
            series = [await one_transaction(pool, t, n) for t, n in zip(bulk, args.bulk_rows)]
            verdicts = [await verify_chain(pool, t.id) for t in [one, *many, *bulk]]

    smallest, largest = series[0], series[-1]
    return {
        "server": facts,
        "schema": schema,
        "writers": args.writers,
        "seconds_per_phase": args.seconds,
        "one_tenant": one_tenant,
        "many_tenants": {"tenants": args.tenants, **many_tenants},
        "plain_insert": plain,
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
    parser.add_argument("--writers", type=int, default=8, help="concurrent writers (and pool connections)")
    parser.add_argument("--tenants", type=int, default=64, help="tenants of the many-tenants phase")
    parser.add_argument("--bulk-rows", type=int, nargs="+", default=[10_000, 100_000], metavar="N",
                        help="rows of each single-transaction run, smallest first")
    args = parser.parse_args()
    args.bulk_rows.sort()
    return args


if __name__ == "__main__":
    emit(asyncio.run(main(parse_args())))
