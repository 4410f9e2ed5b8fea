"""Audit bundle speed and memory: writing a long chain's bundle and checking it offline.

On a scratch database (see _scratch.py) it builds one tenant whose chain holds
--rows rows (bench/audit_verify.py's mix and build), then writes its bundle
(app.audit.bundle.write_bundle) to a temporary file and checks it with the
offline verifier (`exceptao audit verify-bundle`, in a process of its own),
timing each and taking its peak resident memory: the verifier's whole
process, the writer's growth of this process's high-water mark while writing.
Bounded memory means those stay near one batch of rows (the writer) or flat
(the verifier) however long the chain; compare --rows 100000 with 1000000.

    python bench/audit_bundle.py [--rows 1000000] [--batch 20000]

DATABASE_URL chooses the server (default postgresql://postgres@127.0.0.1:5432/postgres).
Figures are one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from time import perf_counter

import asyncpg

from _scratch import app_pool, app_settings, emit, log, make_tenants, scratch_database
from app.audit.bundle import write_bundle
from audit_verify import build_chain


def peak_rss(who: int) -> int:
    return resource.getrusage(who).ru_maxrss * 1024  # kilobytes on Linux


def verify_offline(path: Path) -> tuple[str, float, int]:
    """The command's JSON verdict, its seconds and its peak resident memory (it is the only child run)."""
    started = perf_counter()
    run = subprocess.run([sys.executable, "-m", "app.cli", "audit", "verify-bundle", str(path), "--json"],
                         capture_output=True, text=True)
    return run.stdout, perf_counter() - started, peak_rss(resource.RUSAGE_CHILDREN)


async def main(args: argparse.Namespace) -> dict:
    async with scratch_database() as admin_url:
        (tenant,) = await make_tenants(admin_url, ["bench-bundle"])
        admin = await asyncpg.connect(admin_url)
        try:
            async with app_pool(admin_url, 2) as pool:
                await build_chain(pool, admin, tenant, args.rows, args.chunk)
                await admin.execute("VACUUM (ANALYZE) audit_log, audit_pii")
                settings = replace(app_settings(admin_url), verify_batch=args.batch)
                with tempfile.TemporaryDirectory() as directory:
                    path = Path(directory) / "bundle.jsonl"
                    before = peak_rss(resource.RUSAGE_SELF)
                    with path.open("wb") as out:
                        started = perf_counter()
                        summary = await write_bundle(pool, tenant.id, out, settings)
                        write_seconds = perf_counter() - started
                    write_growth = peak_rss(resource.RUSAGE_SELF) - before
                    size = path.stat().st_size
                    log(f"bundle written: {size:,} bytes, {write_seconds:.1f} s")
                    verdict, check_seconds, check_peak = verify_offline(path)
        finally:
            await admin.close()
    if '"ok": true' not in verdict or f'"rows": {args.rows},' not in verdict:
        raise SystemExit(f"the offline verifier did not accept the bundle: {verdict}")
    return {
        "rows": summary.rows, "batch": args.batch, "bundle_bytes": size,
        "write_seconds": round(write_seconds, 1), "write_rows_per_s": round(args.rows / write_seconds),
        "write_peak_rss_growth_bytes": write_growth,
        "verify_seconds": round(check_seconds, 1), "verify_rows_per_s": round(args.rows / check_seconds),
        "verify_peak_rss_bytes": check_peak,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the tenant's chain")
    parser.add_argument("--chunk", type=int, default=100_000, help="rows appended per transaction when building")
    parser.add_argument("--batch", type=int, default=20_000, help="rows the writer reads per round trip")
    args = parser.parse_args()
    if args.rows < 1 or args.batch < 1:
        parser.error("--rows and --batch must be at least 1")
    return args


if __name__ == "__main__":
    emit(asyncio.run(main(parse_args())))
