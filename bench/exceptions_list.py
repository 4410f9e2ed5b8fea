"""The exception list page of a tenant holding 10,000 exceptions, as a signed-in user sees it.

On a scratch database (see _scratch.py) it seeds one tenant with `--exceptions`
exceptions (titles from a small vocabulary so searches match a few hundred;
states, ratings, owners and terms spread out; three events each), written
directly in SQL as fixtures rather than through the audited engine, which would
only slow the seeding. It then starts `exceptao serve` in a subprocess on a
free loopback port, signs in as an approver who holds exception.read in the
whole tenant, and requests list pages one at a time over HTTP:

* `state`: GET /exceptions?state=ACTIVE (a filter matching about a fifth)
* `search`: GET /exceptions?q=printer&sort=-rating
* `expiring`: GET /exceptions?expiring_within=30&sort=ends_on
* `page_40`: GET /exceptions?state=ACTIVE&page=40 (deep pagination)

For each: the median and 95th percentile of the full round trip (guard,
session, capabilities, the count and page queries, the template, HTTP over
loopback) after `--warmup` unmeasured requests. Run from the repository root:

    python bench/exceptions_list.py [--exceptions 10000] [--samples 300]

DATABASE_URL chooses the server (an administrator URL; default
postgresql://postgres@127.0.0.1:5432/postgres). The figures are printed as one
JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from time import perf_counter
from typing import AsyncIterator

import asyncpg
import httpx

from _scratch import add_schema_argument, add_user, emit, log, make_tenants, schema_checksums, scratch_database
from app.audit import AuditAction
from app.db import set_tenant

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-not-secret-9"
PAGES = {
    "state": "/exceptions?state=ACTIVE",
    "search": "/exceptions?q=printer&sort=-rating",
    "expiring": "/exceptions?expiring_within=30&sort=ends_on",
    "page_40": "/exceptions?state=ACTIVE&page=40",
}


# The chain records each seeded exception's creation and events as the app's own calls would (same actions,
# targets and data shape), in one statement: the chain trigger assigns seq and hashes as for any append.
AUDIT_SEED = """
SELECT count(audit_append(a.actor, a.action, 'exception', a.exception_id::text, a.data, NULL, NULL))
  FROM (SELECT 'user:' || e.requester_id AS actor, $2 AS action, e.id AS exception_id, e.created_at AS at, 0 AS k,
               jsonb_build_object('before', NULL, 'after', jsonb_build_object(
                   'state', 'DRAFT', 'rating', e.likelihood * e.impact, 'starts_on', e.starts_on,
                   'ends_on', e.ends_on, 'predecessor', NULL)) AS data
          FROM exception e WHERE e.tenant_id = $1
        UNION ALL
        SELECT ev.actor, $3, ev.exception_id, ev.at, 1,
               jsonb_build_object('before', jsonb_build_object('state', ev.from_state),
                                  'after', jsonb_build_object('state', ev.to_state),
                                  'approval_level', NULL, 'approvals_needed', 2, 'comment', ev.comment)
          FROM exception_event ev WHERE ev.tenant_id = $1
         ORDER BY at, k) AS a
"""


async def seed(admin_url: str, tenant_id, count: int) -> str:
    """The exceptions, their events and audit entries, their people; returns the email of the approver."""
    conn = await asyncpg.connect(admin_url)
    try:
        async with conn.transaction():
            await set_tenant(conn, tenant_id)
            await add_user(conn, tenant_id, "approver@bench.example", "Bench Approver", "approver", PASSWORD)
            await conn.execute(
                "INSERT INTO app_user (tenant_id, email, display_name)"
                " SELECT $1, 'owner' || n || '@bench.example', 'Owner ' || n FROM generate_series(1, 40) n",
                tenant_id)
            # Titles from a vocabulary of 5 × 8 words: a one-word search matches about an eighth.
            await conn.execute(
                """
                WITH people AS (SELECT array_agg(id ORDER BY email) AS ids FROM app_user WHERE tenant_id = $1)
                INSERT INTO exception (tenant_id, title, policy_ref, assets, deviation, justification,
                                       compensating_controls, likelihood, impact, requester_id, owner_id,
                                       starts_on, ends_on, state, review_round, created_at, updated_at)
                SELECT $1,
                       (ARRAY['Legacy', 'Unpatched', 'Shared', 'Unencrypted', 'Public'])[1 + n % 5] || ' ' ||
                       (ARRAY['FTP server', 'printer', 'admin account', 'backup', 'laptop', 'VPN gateway',
                              'database', 'kiosk'])[1 + (n / 5) % 8] || ' #' || n,
                       'ISO 27001 A.' || (5 + n % 4) || '.' || (1 + n % 30),
                       'asset-' || n, 'Deviation described at length for exception ' || n,
                       'Business justification ' || n, 'Compensating controls ' || n,
                       1 + n % 5, 1 + (n / 5) % 5,
                       people.ids[1 + n % array_length(people.ids, 1)],
                       people.ids[1 + (n * 7) % array_length(people.ids, 1)],
                       current_date - (n % 300), current_date - (n % 300) + 30 + (n % 330),
                       (ARRAY['DRAFT', 'UNDER_REVIEW', 'APPROVED', 'ACTIVE', 'EXPIRING_SOON', 'EXPIRED', 'REJECTED',
                              'RETURNED', 'ACTIVE', 'WITHDRAWN'])[1 + n % 10],
                       1, now() - make_interval(mins => n), now() - make_interval(mins => n)
                  FROM generate_series(1, $2::int) n, people
                """, tenant_id, count)
            await conn.execute(
                """
                INSERT INTO exception_event (tenant_id, exception_id, actor, kind, from_state, to_state, review_round,
                                             comment, at)
                SELECT e.tenant_id, e.id, 'user:' || e.requester_id, 'transition', k.f, k.t, 1, k.c,
                       e.created_at + make_interval(secs => k.n)
                  FROM exception e,
                       (VALUES (1, 'DRAFT', 'UNDER_REVIEW', NULL), (2, 'UNDER_REVIEW', 'RETURNED', 'More detail'),
                               (3, 'RETURNED', 'UNDER_REVIEW', NULL)) AS k(n, f, t, c)
                 WHERE e.tenant_id = $1
                """, tenant_id)
            await conn.fetchval(AUDIT_SEED, tenant_id, AuditAction.EXCEPTION_CREATE.value,
                                AuditAction.EXCEPTION_TRANSITION.value)
        # VACUUM as well: autovacuum is off on these machines, and in service it would have set the visibility
        # map that lets the list's count be an index-only scan (sql/0022_exception_count.sql).
        await conn.execute("VACUUM (ANALYZE) exception, exception_event, app_user, audit_log")
    finally:
        await conn.close()
    return "approver@bench.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until_serving(client: httpx.AsyncClient, process: subprocess.Popen) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"exceptao serve exited with {process.returncode}")
        try:
            await client.get("/healthz")
            return
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    raise RuntimeError("exceptao serve did not answer within 20 s")


async def sign_in(client: httpx.AsyncClient, email: str) -> None:
    page = await client.get("/signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = await client.post("/signin", data={"email": email, "password": PASSWORD, "csrf_token": token})
    if response.status_code != 303:
        raise RuntimeError(f"sign-in answered {response.status_code}")


async def measure(client: httpx.AsyncClient, path: str, samples: int, warmup: int) -> dict:
    times = []
    for i in range(warmup + samples):
        started = perf_counter()
        response = await client.get(path)
        elapsed = perf_counter() - started
        if response.status_code != 200 or "<table" not in response.text:
            raise RuntimeError(f"{path} answered {response.status_code}")
        if i >= warmup:
            times.append(elapsed * 1000)
    times.sort()
    return {"path": path, "median_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(len(times) * 0.95) - 1], 2), "bytes": len(response.content)}


@asynccontextmanager
async def served(admin_url: str, env: dict | None = None,
                 data_dir: str | None = None) -> AsyncIterator[tuple[subprocess.Popen, int]]:
    """`exceptao serve` on the database in a subprocess on a free loopback port (jobs off); (process, port).

    `env` adds settings; `data_dir` is its data directory (default: a temporary
    one). Stopped with SIGINT (its clean shutdown) on exit, killed if it does
    not stop within 20 s; its stderr is shown when it fails to start or the
    caller fails.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="exceptao-bench-") as scratch:
        env = {**os.environ, **(env or {}), "DATABASE_URL": admin_url, "EXCEPTAO_PORT": str(port),
               "EXCEPTAO_HOST": "127.0.0.1", "EXCEPTAO_DATA_DIR": data_dir or scratch, "EXCEPTAO_JOBS": "off"}
        errors = Path(scratch) / "serve.log"
        with errors.open("wb") as stderr:
            process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--no-demo"], cwd=ROOT, env=env,
                                       stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                await wait_until_serving(client, process)
            yield process, port
        except BaseException:
            log("exceptao serve's stderr, last lines:\n" + "\n".join(errors.read_text(errors="replace").splitlines()[-30:]))
            raise
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def run(args) -> dict:
    async with scratch_database(args.sql_dir) as admin_url:
        [tenant] = await make_tenants(admin_url, ["bench"])
        log(f"seeding {args.exceptions} exceptions")
        email = await seed(admin_url, tenant.id, args.exceptions)
        async with served(admin_url) as (_, port):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         headers={"Host": f"bench.localhost:{port}"}) as client:
                await sign_in(client, email)
                log("measuring")
                pages = {name: await measure(client, path, args.samples, args.warmup)
                         for name, path in PAGES.items()}
        return {"benchmark": "exceptions_list", "exceptions": args.exceptions, "samples": args.samples,
                "target_median_ms": 50, "pages": pages, "schema": await schema_checksums(admin_url)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exceptions", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    add_schema_argument(parser)
    emit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
