"""The benchmark runner: `python -m bench [--quick] [--out DIR]`, from the repository root.

It starts what it needs: a scratch database on DATABASE_URL's server (default
postgresql://postgres@127.0.0.1:5432/postgres), migrated; an RFC 3161
authority (`openssl ts -reply`, the test suite's) for the anchor; and a real
`exceptao serve` on a free loopback port. It seeds 64 tenants, 10,000
exceptions with their events and audit entries in the first (the one served
over HTTP) and a 1,000,000-row chain in the second, then measures, in order:

1. verify rows/s of that chain, the full walk and the walk from its last anchor
   (10,000 rows before the head), through the scripts in bench/audit_verify.py;
2. audit appends/s, one tenant and all 64, chained and into a plain table,
   through bench/audit_append.py;
3. HTTP latency (p50/p95/p99) and requests/s of the exception list, an
   exception's detail page and the dashboard (/exceptions/mine, "My work") at
   1, 4, 16 and 64 concurrent signed-in users (bench/http_load.py), and the
   server's resident memory meanwhile;

and finally checks every tenant's chain. It writes results.json (machine facts,
every figure, each target with pass/fail), summary.md and PNG plots to
bench/results/, or with --quick a small run to bench/results/quick/ (ignored by
git). Progress goes to stderr. bench/README.md explains each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from time import perf_counter

import asyncpg

import audit_append
import audit_verify
import exceptions_list
import http_load
import plots
from _scratch import add_users, app_pool, app_settings, log, make_tenants, scratch_database, server_facts
from app.audit.anchor import anchor_tenant
from app.audit.anchor_check import authority
from app.audit.verify import shutdown_workers, start_workers, verify_tenant
from app.db import set_tenant
from tests.conftest import TimestampAuthority

HERE = Path(__file__).resolve().parent
PAGES = ("list", "detail", "dashboard")
DETAIL_PAGES = 256  # the detail phase cycles through this many exceptions


@dataclass(frozen=True)
class Plan:
    tenants: int = 64
    exceptions: int = 10_000
    verify_rows: int = 1_000_000
    anchor_tail: int = 10_000          # rows appended after the anchor
    chunk: int = 100_000               # rows per transaction while building the chain
    verify_repeat: int = 3             # timed verify runs; the median counts
    writers: int = 8
    append_seconds: float = 10.0
    append_warmup: float = 1.0
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    http_seconds: float = 10.0
    http_warmup: float = 2.0
    rss_interval: float = 0.25


QUICK = Plan(exceptions=500, verify_rows=20_000, anchor_tail=1_000, chunk=10_000, verify_repeat=1,
             append_seconds=1.0, append_warmup=0.3, http_seconds=1.0, http_warmup=0.3)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True).stdout.strip()


def machine_facts() -> dict:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(), "memory_mb": int(meminfo[1]) // 1024,
        "platform": platform.platform(), "python": platform.python_version(),
        "git_commit": _git("rev-parse", "HEAD"), "git_uncommitted_changes": bool(_git("status", "--porcelain")),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# Seeding ---------------------------------------------------------------------

async def seed_http_tenant(admin_url: str, tenant, plan: Plan) -> tuple[list[str], dict[str, list[str]]]:
    """Exceptions, events and audit entries (exceptions_list.seed), one approver per user; emails and paths."""
    first = await exceptions_list.seed(admin_url, tenant.id, plan.exceptions)
    admin = await asyncpg.connect(admin_url)
    try:
        async with admin.transaction():
            await set_tenant(admin, tenant.id)
            more = [(f"approver{k}@bench.example", f"Bench Approver {k}") for k in range(1, max(plan.concurrency))]
            await add_users(admin, tenant.id, more, "approver", exceptions_list.PASSWORD)
            emails = [first] + [email for email, _ in more]
        ids = await admin.fetch("SELECT id FROM exception WHERE tenant_id = $1 ORDER BY id LIMIT $2",
                                tenant.id, DETAIL_PAGES)
    finally:
        await admin.close()
    paths = {"list": ["/exceptions"], "detail": [f"/exceptions/{r['id']}" for r in ids],
             "dashboard": ["/exceptions/mine"]}
    return emails, paths


# Measuring ------------------------------------------------------------------------

async def measure_verify(admin_url: str, tenant, settings, plan: Plan) -> dict:
    """Build the chain, anchor it `anchor_tail` rows before the head, time the full and from-anchor walks."""
    anchored = plan.verify_rows - plan.anchor_tail
    admin = await asyncpg.connect(admin_url)
    try:
        async with app_pool(admin_url, 2) as pool:
            build = await audit_verify.build_chain(pool, admin, tenant, anchored, plan.chunk)
            await admin.execute("VACUUM (ANALYZE) audit_log, audit_pii")
            started = perf_counter()
            if await anchor_tenant(pool, tenant.id, datetime.now(timezone.utc), settings) != {"anchored": 1}:
                raise SystemExit("the chain was not anchored")
            anchor_seconds = perf_counter() - started
            build += await audit_verify.build_chain(pool, admin, tenant, plan.verify_rows, plan.chunk,
                                                    first=anchored + 1)
            await admin.execute("VACUUM (ANALYZE) audit_log, audit_pii")
            await admin.execute(SETTLE)
            if settings.verify_workers > 1:
                await start_workers(settings.verify_workers)  # a serving app keeps them: spawned untimed
            how = {"repeat": plan.verify_repeat, "batch": settings.verify_batch, "workers": settings.verify_workers,
                   "dsn": settings.runtime_database_url}
            full = await audit_verify.repeated_verify(pool, tenant, plan.verify_rows, full=True, **how)
            fast = await audit_verify.repeated_verify(pool, tenant, plan.verify_rows, full=False,
                                                      authority=authority(settings), **how)
    finally:
        await admin.close()
    return {"rows": plan.verify_rows, "anchored_seq": anchored, "build_seconds": round(build, 1),
            "anchor_seconds": round(anchor_seconds, 1), "full": full, "from_anchor": fast}


# Before each timed phase the pages that seeding dirtied are written out, so every phase starts from the same
# state and none pays for the one before it. It was added on the guess that a checkpoint slowed the verify walks;
# it did not change them (bench/README.md), the machine's speed of the moment did.
SETTLE = "CHECKPOINT"


def round_robin(ops: list[audit_append.Op]) -> audit_append.Op:
    turn = itertools.count()

    async def op(i: int) -> None:
        await ops[next(turn) % len(ops)](i)

    return op


async def measure_appends(admin_url: str, tenants: list, plan: Plan) -> dict:
    """audit_append.py's phases: chained appends and plain inserts, into one tenant and round-robin into all."""
    admin = await asyncpg.connect(admin_url)
    how = argparse.Namespace(writers=plan.writers, warmup=plan.append_warmup, seconds=plan.append_seconds)
    one, many = tenants[2], {"tenants": len(tenants)}
    try:
        await admin.execute(audit_append.PLAIN_TABLE)
        async with app_pool(admin_url, plan.writers) as pool:
            figures = {
                "writers": plan.writers, "seconds_per_phase": plan.append_seconds,
                "one_tenant_chained": await audit_append.measure(
                    "1 tenant chained", how, audit_append.chained_append(pool, [one])),
                "many_tenants_chained": many | await audit_append.measure(
                    f"{len(tenants)} tenants chained", how, audit_append.chained_append(pool, tenants)),
                "one_tenant_plain": await audit_append.measure(
                    "1 tenant plain insert", how, audit_append.plain_insert(pool, one)),
            }
            # Each plain_insert numbers its rows from 1: the table starts empty again for the next phase.
            await admin.execute("TRUNCATE bench_plain")
            figures["many_tenants_plain"] = many | await audit_append.measure(
                f"{len(tenants)} tenants plain insert", how,
                round_robin([audit_append.plain_insert(pool, t) for t in tenants]))
    finally:
        await admin.close()
    return figures


async def measure_http(admin_url: str, tenant, emails: list[str], paths: dict[str, list[str]], plan: Plan) -> dict:
    """Every page at every concurrency against a real `exceptao serve`, its memory sampled meanwhile."""
    async with exceptions_list.served(admin_url) as (process, port), AsyncExitStack() as clients:
        users = [http_load.user_client(port, tenant.slug, k) for k in range(len(emails))]
        for user in users:
            clients.push_async_callback(user.aclose)
        log(f"signing in {len(emails)} users (password, then TOTP enrolment)")
        await http_load.sign_in_all(users, emails)
        await check_pages_show_the_seed(users[0], paths)
        sampler = http_load.MemorySampler(process.pid, plan.rss_interval)
        idle = sampler.sample()
        http: dict[str, list[dict]] = {}
        with sampler:
            for page in PAGES:
                http[page] = []
                for c in plan.concurrency:
                    sampler.phase = f"{page} c{c}"
                    run = await http_load.page_load(users[:c], paths[page], plan.http_seconds, plan.http_warmup,
                                                    http_load.CpuMeter(process.pid))
                    log(f"{page} at {c}: p95 {run['latency_ms']['p95']} ms, {run['requests_per_s']}/s,"
                        f" {run['errors']} errors")
                    http[page].append(run)
            sampler.phase = "after"
            await asyncio.sleep(2)
            after = sampler.sample()
    return {"http": http, "memory": sampler.summary(after, idle), "paths": {p: paths[p][0] for p in PAGES}}


async def check_pages_show_the_seed(user, paths: dict[str, list[str]]) -> None:
    """The pages under load show the seeded data, so a fast empty page cannot pass for a result."""
    listing, detail = await user.get(paths["list"][0]), await user.get(paths["detail"][0])
    if listing.status_code != 200 or "<table" not in listing.text or " #" not in listing.text:
        raise SystemExit(f"the exception list does not show the seeded exceptions ({listing.status_code})")
    if detail.status_code != 200 or "Deviation described at length" not in detail.text:
        raise SystemExit(f"the exception page does not show the seeded exception ({detail.status_code})")


async def chains_verified(admin_url: str, tenants: list, settings) -> bool:
    async with app_pool(admin_url, 2) as pool:
        verdicts = [await verify_tenant(pool, t.id, settings) for t in tenants]
    return all(v.ok for v in verdicts)


# The run -------------------------------------------------------------------

def targets(figures: dict) -> dict:
    list_16 = next(r for r in figures["http"]["list"] if r["concurrency"] == 16)
    memory = figures["memory"]
    rows = [
        ("one_tenant_appends_per_s", "one tenant, chained appends/s", ">=", audit_append.TARGET_APPENDS_PER_S,
         figures["audit_appends"]["one_tenant_chained"]["per_s"]),
        ("verify_full_rows_per_s", "verify, full walk, rows/s", ">=", audit_verify.TARGET_ROWS_PER_S,
         figures["verify"]["full"]["rows_per_s"]),
        ("list_p95_ms_at_16", "exception list p95 at concurrency 16, ms", "<=", 50, list_16["latency_ms"]["p95"]),
        ("app_memory_mb", "app resident memory, peak under the HTTP load, MB", "<=", 300, memory["peak_mb"]),
    ]
    return {key: {"what": what, "target": target, "comparison": op, "value": value,
                  "met": value >= target if op == ">=" else value <= target}
            for key, what, op, target, value in rows}


async def settle(admin_url: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(SETTLE)
    finally:
        await admin.close()


async def run(plan: Plan) -> dict:
    started = perf_counter()
    machine = machine_facts()
    async with scratch_database() as admin_url, AsyncExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="exceptao-bench-tsa-")))
        tsa = TimestampAuthority(directory)
        tsa.start()
        stack.callback(tsa.stop)
        stack.callback(shutdown_workers)
        settings = replace(app_settings(admin_url), tsa_url=tsa.url, tsa_ca_file=tsa.ca)

        phases: dict[str, float] = {}

        async def timed(name: str, work):
            began = perf_counter()
            result = await work
            phases[name] = round(perf_counter() - began, 1)
            log(f"{name}: {phases[name]} s")
            return result

        tenants = await timed("tenants", make_tenants(admin_url, [f"bench-{k:02d}" for k in range(plan.tenants)]))
        emails, paths = await timed("seed_exceptions", seed_http_tenant(admin_url, tenants[0], plan))
        async with app_pool(admin_url, 1) as pool:
            machine["postgresql"] = await server_facts(pool)
        log(f"building a {plan.verify_rows:,}-row chain, anchoring it, verifying it")
        verify = await timed("verify", measure_verify(admin_url, tenants[1], settings, plan))
        await settle(admin_url)
        appends = await timed("appends", measure_appends(admin_url, tenants, plan))
        await settle(admin_url)
        served = await timed("http", measure_http(admin_url, tenants[0], emails, paths, plan))
        verified = await timed("chains_check", chains_verified(admin_url, tenants, settings))

    figures = {"audit_appends": appends, "verify": verify, **served}
    errors = sum(r["errors"] for runs in served["http"].values() for r in runs)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "machine": machine,
        "plan": {**plan.__dict__, "concurrency": list(plan.concurrency)},
        "seed": {"tenants": plan.tenants, "exceptions": plan.exceptions, "events_per_exception": 3,
                 "signed_in_users": len(emails), "audit_chain_rows": plan.verify_rows},
        "phase_seconds": phases,
        "figures": figures,
        "targets": targets(figures),
        "http_errors": errors,
        "chains_verified": verified,
        "valid": errors == 0 and verified,
        "wall_seconds": round(perf_counter() - started, 1),
    }


def summary(results: dict) -> str:
    lines = [f"# Benchmark run {results['machine']['date']} (commit {results['machine']['git_commit'][:12]},"
             f" {results['machine']['cpus']} CPUs, PostgreSQL {results['machine']['postgresql']['server_version']})",
             "", f"Valid: {results['valid']} (HTTP errors {results['http_errors']},"
             f" chains verified {results['chains_verified']}); wall time {results['wall_seconds']} s.", "",
             "| figure | target | measured | met |", "|---|---|---|---|"]
    for t in results["targets"].values():
        lines.append(f"| {t['what']} | {t['comparison']} {t['target']:,} | {t['value']:,} | {'yes' if t['met'] else 'NO'} |")
    lines += ["", "| page | concurrency | p50 ms | p95 ms | p99 ms | req/s | errors | CPU ms per answer:"
              " app / PostgreSQL / client | machine busy |", "|---|---|---|---|---|---|---|---|---|"]
    for page, runs in results["figures"]["http"].items():
        for r in runs:
            q, cpu = r["latency_ms"], r["cpu_per_answer"]
            lines.append(f"| {page} | {r['concurrency']} | {q['p50']} | {q['p95']} | {q['p99']} |"
                         f" {r['requests_per_s']} | {r['errors']} | {cpu['app_ms']} / {cpu['postgresql_ms']} /"
                         f" {cpu['client_ms']} | {cpu['machine_busy']:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small smoke run (20k chain rows, 500 exceptions, 1 s per load point)")
    parser.add_argument("--out", type=Path, help="where to write (default bench/results/, quick: bench/results/quick/)")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    out = args.out or (HERE / "results" / "quick" if args.quick else HERE / "results")
    out.mkdir(parents=True, exist_ok=True)

    results = asyncio.run(run(plan))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "summary.md").write_text(summary(results))
    for path in plots.draw_all(results, out):
        log(f"wrote {path}")
    log(summary(results))
    return 0 if results["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
