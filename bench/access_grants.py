"""The per-request cost of effective capabilities (app.access.load: one query, recursive over
groups and org units).

On a scratch database (see _scratch.py) it builds one tenant shaped like a large
municipality:

* org units: a city, `--districts` districts, `--schools` schools per district and
  `--classes` classes per school;
* groups: `--group-chains` chains of `--group-depth` nested groups (each group's
  parent is the one above it);
* users: `--users` users, each a member of `--memberships` groups picked at random
  (so most reach roles through several parent groups), half of them also holding a
  role within a school (site-bound grants) and every tenth one a tenant-wide role
  of their own;
* role assignments: every group at every level holds a default role, a third of
  them within a random school.

It then times `access.load` in a tenant transaction on the app pool, as the guard
hook does once per request, for random users: the median, the 95th percentile and
the largest number of grants one user had; and, for comparison, the same
transaction with `SELECT 1` in place of the query. Run from the repository root:

    python bench/access_grants.py [--users 2000] [--samples 2000]

DATABASE_URL chooses the server (an administrator URL; default
postgresql://postgres@127.0.0.1:5432/postgres). The figures are printed as one
JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
from time import perf_counter

import asyncpg

from _scratch import add_schema_argument, app_pool, emit, log, make_tenants, schema_checksums, scratch_database
from app import access
from app.db import set_tenant, tenant_transaction


async def build(admin_url: str, tenant_id, args, rng: random.Random) -> list:
    conn = await asyncpg.connect(admin_url)
    try:
        async with conn.transaction():
            await set_tenant(conn, tenant_id)
            roles = [r["id"] for r in await conn.fetch("SELECT id FROM role WHERE tenant_id = $1", tenant_id)]

            async def unit(name: str, parent):
                return await conn.fetchval(
                    "INSERT INTO org_unit (tenant_id, parent_id, name) VALUES ($1, $2, $3) RETURNING id",
                    tenant_id, parent, name)

            city = await unit("City", None)
            schools = []
            for d in range(args.districts):
                district = await unit(f"District {d}", city)
                for s in range(args.schools):
                    school = await unit(f"School {d}.{s}", district)
                    schools.append(school)
                    for c in range(args.classes):
                        await unit(f"Class {d}.{s}.{c}", school)

            groups = []
            for chain in range(args.group_chains):
                parent = None
                for level in range(args.group_depth):
                    parent = await conn.fetchval(
                        "INSERT INTO user_group (tenant_id, parent_id, name) VALUES ($1, $2, $3) RETURNING id",
                        tenant_id, parent, f"Group {chain}.{level}")
                    groups.append(parent)
                    await conn.execute(
                        "INSERT INTO role_assignment (tenant_id, role_id, group_id, within_unit_id)"
                        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        tenant_id, rng.choice(roles), parent, rng.choice(schools) if rng.random() < 1 / 3 else None)

            users = []
            for u in range(args.users):
                user = await conn.fetchval(
                    "INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, $2, $3) RETURNING id",
                    tenant_id, f"user{u}@bench.example", f"User {u}")
                users.append(user)
                await conn.executemany(
                    "INSERT INTO group_member (tenant_id, group_id, user_id) VALUES ($1, $2, $3)",
                    [(tenant_id, g, user) for g in rng.sample(groups, args.memberships)])
                if u % 2 == 0:
                    await conn.execute(
                        "INSERT INTO role_assignment (tenant_id, role_id, user_id, within_unit_id) VALUES ($1, $2, $3, $4)",
                        tenant_id, rng.choice(roles), user, rng.choice(schools))
                if u % 10 == 0:
                    await conn.execute(
                        "INSERT INTO role_assignment (tenant_id, role_id, user_id) VALUES ($1, $2, $3)",
                        tenant_id, rng.choice(roles), user)
        await conn.execute("ANALYZE")  # autovacuum is off on these machines
        return users
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--districts", type=int, default=10)
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--group-chains", type=int, default=50)
    parser.add_argument("--group-depth", type=int, default=6)
    parser.add_argument("--memberships", type=int, default=4)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=4)
    add_schema_argument(parser)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    async with scratch_database(args.sql_dir) as admin_url:
        [tenant] = await make_tenants(admin_url, ["bench-access"])
        log("building the tenant")
        users = await build(admin_url, tenant.id, args, rng)
        async with app_pool(admin_url, 1) as pool:
            timings, most_grants, scopes = [], 0, []
            for i in range(args.samples + 100):
                user = rng.choice(users)
                started = perf_counter()
                async with tenant_transaction(pool, tenant.id, readonly=True) as conn:
                    got = await access.load(conn, user)
                elapsed = perf_counter() - started
                if i >= 100:  # the first ones warm the pool and the caches
                    timings.append(elapsed)
                    most_grants = max(most_grants, len(got.grants))
                    scopes.append(len(got.scopes))
            baseline = []
            for i in range(args.samples):
                started = perf_counter()
                async with tenant_transaction(pool, tenant.id, readonly=True) as conn:
                    await conn.fetchval("SELECT 1")
                baseline.append(perf_counter() - started)
        timings.sort()
        emit({
            "benchmark": "access_grants",
            "schema": await schema_checksums(admin_url),
            "tenant": {"org_units": 1 + args.districts * (1 + args.schools * (1 + args.classes)),
                       "groups": args.group_chains * args.group_depth, "users": args.users,
                       "memberships_per_user": args.memberships},
            "samples": args.samples,
            "load_ms_median": round(statistics.median(timings) * 1000, 3),
            "load_ms_p95": round(timings[int(len(timings) * 0.95)] * 1000, 3),
            "load_ms_max": round(timings[-1] * 1000, 3),
            "empty_transaction_ms_median": round(statistics.median(baseline) * 1000, 3),
            "most_grants_for_one_user": most_grants,
            "mean_scopes_per_user": round(statistics.mean(scopes), 2),
            "note": "one tenant transaction (BEGIN, set_config, the access_grants query, COMMIT) on the app pool",
        })


if __name__ == "__main__":
    asyncio.run(main())
