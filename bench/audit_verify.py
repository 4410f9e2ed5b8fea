"""Audit chain verification speed.

On a scratch database (see _scratch.py) it builds one tenant whose chain holds
--rows rows (its creation event, then audit_append over generate_series as the
app role: 1,000 rows, then --chunk rows per transaction, the tables analysed
after each, as autovacuum would), vacuums and analyses the tables, and times
app.audit.verify.verify_chain over the chain:
with --workers worker processes, as the application runs it (default: its
EXCEPTAO_VERIFY_WORKERS default; the processes are started before timing, as a
serving app keeps them), and, when that is more than one, also in the calling
process alone. Each is timed --repeat times; the median is reported, with every
run's seconds.

Timings of whole walks are noisy on a shared machine. "python_us_per_row" is
steadier: the verifier's per-row Python work (ChainWalk.feed, and
canonical_data alone) on the chain's first --sample rows, fetched once, the
fastest of --sample-repeat runs, in microseconds per row. Compare those
before and after a change to the verifier's code.

Most rows are small ({"n": …, "note": "bench"}); the mix also has nested
objects with floats, booleans and nulls (5 %), non-ASCII strings (5 %, a fifth
of them with a character above U+E000), personal data via p_pii/p_salt (2 %)
and targets (25 %). The counts are in "mix".

Run from the repository root, with the project installed:

    python bench/audit_verify.py [--rows 1000000] [--workers 2] [--repeat 3] [--profile verify.prof]

--profile runs the single-process verify_chain once under cProfile (worker
processes would escape it), writes the stats to the file and prints the top
functions to stderr; that figure then includes the profiler's overhead.
DATABASE_URL chooses the server (an administrator URL; default
postgresql://postgres@127.0.0.1:5432/postgres). The figures are printed as one
JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import itertools
import pstats
import statistics
import timeit
from time import perf_counter

import asyncpg

from _scratch import (
    add_schema_argument, app_pool, app_settings, emit, log, make_tenants, schema_checksums, scratch_database,
    server_facts,
)
from app.audit.canonical import canonical_data
from app.audit.anchor_check import NO_AUTHORITY, Authority
from app.audit.verify import GENESIS, PII, ROWS, ChainWalk, Verdict, shutdown_workers, start_workers, verify_chain
from app.config import Settings
from app.db import tenant_transaction
from app.tenants import Tenant

TARGET_ROWS_PER_S = 150_000

# Row g of the chain (g = its seq). Mostly small rows, with a realistic minority of others.
APPEND_MIXED = r"""
SELECT count(audit_append(
    CASE WHEN g % 3 = 0 THEN 'user:' || md5((g % 500)::text)::uuid ELSE 'system:bench' END,
    (ARRAY['identity:user:create', 'identity:user:sign_in',
           'policy:exception:approve', 'policy:exception:expire'])[1 + g % 4],
    CASE WHEN g % 4 = 0 THEN 'exception' END,
    CASE WHEN g % 4 = 0 THEN 'exc-' || g / 4 END,
    CASE
        WHEN g % 20 = 3 THEN jsonb_build_object(
            'n', g,
            'risk', jsonb_build_object('score', to_jsonb(g / 7.0::float8), 'weight', 0.25,
                                       'tiny', to_jsonb(g * 1e-9::float8)),
            'tags', jsonb_build_array('prod', 'pci', g % 10),
            'approved', g % 2 = 0,
            'ticket', NULL)
        WHEN g % 20 = 7 THEN jsonb_build_object(
            'n', g,
            'title', 'Ausnahme für Zoë Ångström – Łódź, 東京',
            'note', CASE WHEN g % 100 = 7 THEN 'déploiement 🚀 reporté' ELSE 'überprüft' END)
        ELSE jsonb_build_object('n', g, 'note', 'bench')
    END,
    CASE WHEN g % 50 = 11 THEN jsonb_build_object(
        'email', 'user' || g || '@example.com', 'ip', '192.0.2.' || (g % 254 + 1),
        'ua', 'Mozilla/5.0 (X11; Linux x86_64) bench') END,
    CASE WHEN g % 50 = 11 THEN sha256(int8send(g)) END))
  FROM generate_series($1::bigint, $2::bigint) AS g
"""

MIX = r"""
SELECT count(*) AS rows,
       count(*) FILTER (WHERE data = jsonb_build_object('n', seq, 'note', 'bench')) AS small,
       count(*) FILTER (WHERE data ? 'risk') AS nested_with_floats,
       count(*) FILTER (WHERE data ? 'title') AS non_ascii,
       count(*) FILTER (WHERE data::text ~ '[\uE000-\U0010FFFF]') AS above_u_e000,
       count(*) FILTER (WHERE pii_commitment IS NOT NULL) AS with_pii,
       count(*) FILTER (WHERE target_type IS NOT NULL) AS with_target,
       pg_size_pretty(pg_total_relation_size('audit_log')) AS audit_log_size
  FROM audit_log
 WHERE tenant_id = $1
"""


async def build_chain(
    pool: asyncpg.Pool, admin: asyncpg.Connection, tenant: Tenant, rows: int, chunk: int, *, first: int = 2
) -> float:
    """Append rows `first`..`rows` (row 1 is the creation event) in transactions; seconds taken.

    The tables are analysed after each transaction, as autovacuum would (and the
    server may run without it). Plans made while audit_log has no statistics can
    be pathological: the foreign-key check of each audit_pii row then scans the
    tenant's whole chain through the (tenant_id, prev_hash) index, and the build
    turns quadratic. A small first transaction gets statistics in early.
    """
    started = perf_counter()
    for size in itertools.chain([1000], itertools.repeat(chunk)):
        if first > rows:
            break
        last = min(first + size - 1, rows)
        async with tenant_transaction(pool, tenant.id) as conn:
            await conn.fetchval(APPEND_MIXED, first, last)
        await admin.execute("ANALYZE audit_log, audit_pii, audit_pending")
        log(f"built {last:,} rows, {perf_counter() - started:.1f} s")
        first = last + 1
    return perf_counter() - started


async def timed_verify(pool: asyncpg.Pool, tenant: Tenant, rows: int, *, batch: int, workers: int, dsn: str,
                       full: bool = True, authority: Authority = NO_AUTHORITY,
                       profile: str | None = None) -> tuple[float, Verdict]:
    """Seconds of one verify_chain and its verdict; refuses to report a figure for a chain it did not accept.

    `full` False walks from the latest anchor that `authority` accepts, and a
    walk that fell back to the full chain (no usable anchor) is refused too.
    """
    profiler = cProfile.Profile() if profile and workers == 1 else None
    started = perf_counter()
    if profiler:
        profiler.enable()
    verdict: Verdict = await verify_chain(pool, tenant.id, batch=batch, workers=workers, dsn=dsn, full=full,
                                          authority=authority)
    if profiler:
        profiler.disable()
    seconds = perf_counter() - started
    if profiler:
        profiler.dump_stats(profile)
        top = io.StringIO()
        pstats.Stats(profiler, stream=top).sort_stats("tottime").print_stats(25)
        log(top.getvalue())
    if not verdict.ok or verdict.total_rows != rows or verdict.mode != ("full" if full else "from_anchor"):
        raise SystemExit(f"the verifier did not accept the chain it was given: {verdict.as_json()}")
    log(f"verify_chain {verdict.mode}, {workers} worker(s): {seconds:.2f} s")
    return seconds, verdict


async def repeated_verify(pool: asyncpg.Pool, tenant: Tenant, rows: int, *, repeat: int, **how) -> dict:
    """timed_verify `repeat` times (keywords as there); the median run's figures, and every run's seconds.

    rows_per_s counts the whole chain; rows_walked_per_s only the rows the walk
    recomputed (all of them in a full walk, those after the anchor otherwise).
    """
    runs = [await timed_verify(pool, tenant, rows, **how) for _ in range(repeat)]
    seconds = statistics.median(s for s, _ in runs)
    verdict = runs[0][1]
    walked = rows - verdict.checked_from + 1
    return {"workers": how["workers"], "mode": verdict.mode, "checked_from": verdict.checked_from,
            "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds),
            "rows_walked": walked, "rows_walked_per_s": round(walked / seconds),
            "runs_seconds": [round(s, 3) for s, _ in runs]}


async def python_per_row(pool: asyncpg.Pool, tenant: Tenant, args: argparse.Namespace) -> dict:
    """Microseconds per row of the verifier's Python work on the first --sample rows (fastest run)."""
    async with tenant_transaction(pool, tenant.id, isolation="repeatable_read", readonly=True) as conn:
        rows = await conn.fetch(ROWS, tenant.id, 0, args.sample, args.sample)
        pii_rows = {r[0]: tuple(r)[1:] for r in await conn.fetch(PII, tenant.id, 0, args.sample)}
    texts = [r[6] for r in rows]

    def feed() -> None:
        ChainWalk(tenant.id, 1, GENESIS).feed(rows, pii_rows)

    def canonicalise() -> None:
        for text in texts:
            canonical_data(text)

    def fastest(work) -> float:
        return round(min(timeit.repeat(work, number=1, repeat=args.sample_repeat)) / len(rows) * 1e6, 3)

    return {"rows": len(rows), "feed": fastest(feed), "canonical_data": fastest(canonicalise)}


async def main(args: argparse.Namespace) -> dict:
    async with scratch_database(args.sql_dir) as admin_url:
        schema = await schema_checksums(admin_url)
        (tenant,) = await make_tenants(admin_url, ["bench-verify"])
        admin = await asyncpg.connect(admin_url)
        try:
            async with app_pool(admin_url, 2) as pool:
                facts = await server_facts(pool)
                build_seconds = await build_chain(pool, admin, tenant, args.rows, args.chunk)
                started = perf_counter()
                await admin.execute("VACUUM (ANALYZE) audit_log, audit_pii")
                vacuum_seconds = perf_counter() - started
                mix = dict(await admin.fetchrow(MIX, tenant.id))
                per_row = await python_per_row(pool, tenant, args)
                dsn = app_settings(admin_url).runtime_database_url
                # A serving app keeps its worker processes after its first long walk: spawn them untimed.
                if args.workers > 1:
                    await start_workers(args.workers)
                runs = [await repeated_verify(pool, tenant, args.rows, repeat=args.repeat, batch=args.batch,
                                              workers=w, dsn=dsn, profile=args.profile)
                        for w in sorted({1, args.workers})]
        finally:
            shutdown_workers()
            await admin.close()

    configured = runs[-1]
    return {
        "server": facts,
        "schema": schema,
        "rows": args.rows,
        "mix": mix,
        "build_seconds": round(build_seconds, 1),
        "build_rows_per_s": round(args.rows / build_seconds),
        "vacuum_analyze_seconds": round(vacuum_seconds, 1),
        "batch": args.batch,
        "profiled": bool(args.profile),
        "python_us_per_row": per_row,
        **configured,
        **({"single_process": runs[0]} if len(runs) > 1 else {}),
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "met": configured["rows_per_s"] >= TARGET_ROWS_PER_S,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_schema_argument(parser)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the tenant's chain")
    parser.add_argument("--chunk", type=int, default=100_000, help="rows appended per transaction when building")
    parser.add_argument("--batch", type=int, default=Settings().verify_batch, help="verify_chain batch size")
    parser.add_argument("--workers", type=int, default=Settings().verify_workers,
                        help="verify_chain worker processes (default: the application's default here)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each verify_chain; the median counts")
    parser.add_argument("--sample", type=int, default=50_000, help="rows for the per-row Python timing")
    parser.add_argument("--sample-repeat", type=int, default=7, help="runs of the per-row timing; the fastest counts")
    parser.add_argument("--profile", metavar="FILE", help="profile verify_chain with cProfile, stats to FILE")
    args = parser.parse_args()
    if args.rows < 1 or args.repeat < 1 or args.sample < 1 or args.sample_repeat < 1:
        parser.error("--rows, --repeat, --sample and --sample-repeat must be at least 1")
    if args.profile:
        args.repeat = 1
    return args


if __name__ == "__main__":
    emit(asyncio.run(main(parse_args())))
