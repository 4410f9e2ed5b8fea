"""The app behind pgbouncer in transaction pooling: no tenant's data or setting reaches another.

The brochure says no GUC value leaks between connections behind pgbouncer.
Here Debian's pgbouncer 1.18 (tests/reliability/pgbouncer.py) stands in front
of the test database with three server connections for the app role, and the
app's runtime pool (statement cache 0, as DATABASE_STATEMENT_CACHE says)
connects through it. Two tenants' people and scripts then send well over a
thousand requests, interleaved and about twenty at a time, so every server
connection goes from one tenant to the other all the time: pages (the
dashboard, the list, one exception, my work), the JSON API with bearer tokens,
and writes (new exceptions, transitions with comments), each write carrying a
fresh canary of its tenant. Afterwards:

- no answer was a 500 or otherwise unexpected; no answer to one tenant holds
  a canary of the other, and the other tenant's exceptions are 404s;
- every acknowledged write is in its own tenant, and the rows written are
  exactly the writes acknowledged;
- both tenants' audit chains verify in a full walk;
- pgbouncer's console shows no more server connections than the pool size
  and many times more transactions than server connections;
- on every server connection, outside any transaction, the tenant and org-unit
  settings are empty: nothing was left on a connection for its next client.

The last check is shown able to fail: a tenant setter that sets the tenant for
the session (set_config(..., false)) leaves it on a server connection, and the
check names it. The cross-tenant probe (tests/reliability/probe.py: every route
as every kind of user) runs through pgbouncer too.

Jobs take their advisory lock behind the same pool, so a run's lock is shown to
end with the run however pgbouncer hands out its server connections; and the
runtime code is read for anything else that would outlive a transaction on its
connection.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from app import access
from app import db as app_db
from app.access import tokens
from app.audit.verify import verify_chain
from app.config import Settings
from app.db import tenant_transaction
from tests.exceptions.test_screens import person
from tests.reliability.pgbouncer import PgBouncer
from tests.reliability.probe import run_probe

POOL_SIZE = 3
WORKERS_PER_TENANT = 10        # each a person's browser or a script, sending one request at a time
ROUNDS = 9                     # of each worker's cycle of requests
SETTINGS = ("app.current_tenant_id", "app.current_org_unit_id")


@pytest.fixture
def bouncer(admin_url):
    upstream = urlsplit(admin_url)
    if not upstream.hostname or upstream.hostname.startswith("/"):
        pytest.skip("pgbouncer is put in front of a TCP server: set DATABASE_URL (.ci/run does)")
    bouncer = PgBouncer(admin_url, pool_size=POOL_SIZE, roles=("exceptao_app",)).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
async def site(bouncer, settings, app_url):
    """The app of the other tests, its runtime pool through pgbouncer; more client connections than server ones."""
    from app import create_app

    app = create_app(replace(settings, app_database_url=bouncer.url(app_url), statement_cache=0, pool_max=24))
    async with app.test_app() as test_app:
        yield test_app


@dataclass
class Side:
    """One tenant in the load: its people's browsers, its scripts' tokens, what it wrote and was told."""
    label: str
    tenant: object
    browsers: list = field(default_factory=list)
    tokens: list = field(default_factory=list)
    owner: uuid.UUID | None = None
    exceptions: list = field(default_factory=list)     # ids of this tenant's exceptions, as the app answered them
    titles: list = field(default_factory=list)         # canaries in acknowledged new exceptions
    comments: list = field(default_factory=list)       # canaries in acknowledged transition comments
    requests: int = 0

    def canary(self) -> str:
        return f"CANARY-{self.label}-{uuid.uuid4().hex}"


def draft(side: Side, title: str) -> dict:
    today = date.today()
    return {"title": title, "policy_ref": "ISO 27001 A.8.24", "assets": "ftp01.example",
            "deviation": f"Plain FTP ({title})", "justification": "The vendor cannot do SFTP yet",
            "compensating_controls": "Firewall", "likelihood": "3", "impact": "4",
            "starts_on": today.isoformat(), "ends_on": (today + timedelta(days=90)).isoformat(),
            "owner": str(side.owner)}


async def prepare(site, admin, make_tenant, label: str) -> Side:
    side = Side(label, await make_tenant(f"bounce-{label.lower()}"))
    pool = site.app.extensions["pool"]
    for n in range(WORKERS_PER_TENANT // 2):
        someone = await person(site, admin, side.tenant, f"Requester {label}{n}", "requester")
        side.owner = side.owner or someone.id
        side.browsers.append(someone.browser)
    for n in range(WORKERS_PER_TENANT - len(side.browsers)):
        script = await person(site, admin, side.tenant, f"Script {label}{n}", "requester", "auditor")
        async with tenant_transaction(pool, side.tenant.id) as conn:
            owner = await access.load(conn, script.id)
            token, _ = await tokens.create(conn, side.tenant.id, owner, "load", [
                "exception.read", "exception.submit", "audit.read"], 1)
        side.tokens.append(token)
    # One exception each before the load, so every worker has another tenant's id to ask for.
    async with tenant_transaction(pool, side.tenant.id) as conn:
        from app.exceptions import create_draft
        requester = await access.load(conn, side.owner)
        title = side.canary()
        side.exceptions.append(await create_draft(conn, side.tenant.id, requester, draft(side, title)))
        side.titles.append(title)
    return side


class Load:
    def __init__(self, site, sides: dict[str, Side]):
        self.site, self.sides = site, sides
        self.problems: list[str] = []

    def other(self, side: Side) -> Side:
        return next(s for s in self.sides.values() if s is not side)

    def check(self, side: Side, what: str, status: int, expected: set[int], body: str) -> None:
        side.requests += 1
        if status not in expected:
            self.problems.append(f"{side.label} {what}: {status}, expected {sorted(expected)}: {body[:300]}")
        foreign = f"CANARY-{self.other(side).label}-"
        if foreign in body:
            self.problems.append(f"{side.label} {what}: answer holds {foreign}… of the other tenant")

    async def person(self, side: Side, browser) -> None:
        """A requester at the screens: drafts, submits with a comment, reads the pages."""
        for _ in range(ROUNDS):
            title = side.canary()
            made = await browser.post("/exceptions", draft(side, title))
            self.check(side, "POST /exceptions", made.status_code, {303}, browser.last_body)
            if made.status_code != 303:
                continue
            side.titles.append(title)
            path = made.headers["Location"].split("?")[0]
            side.exceptions.append(uuid.UUID(path.rsplit("/", 1)[1]))
            shown = await browser.get(path)
            self.check(side, f"GET {path}", shown.status_code, {200}, browser.last_body)
            if title not in browser.last_body:
                self.problems.append(f"{side.label} GET {path}: its own title is not on the page")
            comment = side.canary()
            moved = await browser.post(f"{path}/transition", {"to": "UNDER_REVIEW", "comment": comment})
            self.check(side, f"POST {path}/transition", moved.status_code, {303}, browser.last_body)
            if moved.status_code == 303:
                side.comments.append(comment)
            for page in ("/", "/exceptions", "/exceptions/mine", f"{path}?notice=under_review"):
                response = await browser.get(page)
                self.check(side, f"GET {page}", response.status_code, {200}, browser.last_body)
            theirs = self.other(side).exceptions[-1]
            response = await browser.get(f"/exceptions/{theirs}")
            self.check(side, "GET the other tenant's exception", response.status_code, {404}, browser.last_body)

    async def script(self, side: Side, token: str) -> None:
        """A script on the JSON API with its bearer token: creates, lists, reads, submits, reads the chain."""
        client = self.site.test_client()
        headers = {"Host": f"{side.tenant.slug}.localhost", "Authorization": f"Bearer {token}"}

        async def call(method: str, path: str, expected: set[int], **kwargs):
            response = await client.open(path, method=method, headers=headers, **kwargs)
            body = (await response.get_data()).decode()
            self.check(side, f"{method} {path}", response.status_code, expected, body)
            return response

        for _ in range(ROUNDS):
            title = side.canary()
            made = await call("POST", "/api/exceptions", {201}, json={**draft(side, title), "likelihood": 2,
                                                                         "impact": 2})
            if made.status_code != 201:
                continue
            side.titles.append(title)
            exception_id = (await made.get_json())["id"]
            side.exceptions.append(uuid.UUID(exception_id))
            await call("GET", "/api/exceptions?per_page=50", {200})
            await call("GET", f"/api/exceptions/{exception_id}", {200})
            comment = side.canary()
            moved = await call("POST", f"/api/exceptions/{exception_id}/transitions", {200},
                               json={"to": "UNDER_REVIEW", "comment": comment})
            if moved.status_code == 200:
                side.comments.append(comment)
            await call("GET", "/api/me", {200})
            await call("GET", "/api/audit/events?limit=200", {200})
            await call("GET", f"/api/exceptions/{self.other(side).exceptions[-1]}", {404})

    async def run(self) -> None:
        await asyncio.gather(*itertools.chain.from_iterable(
            [*(self.person(side, b) for b in side.browsers), *(self.script(side, t) for t in side.tokens)]
            for side in self.sides.values()))


def app_servers(bouncer: PgBouncer, database: str) -> list[dict[str, str]]:
    return [s for s in bouncer.show("SERVERS") if s["user"] == "exceptao_app" and s["database"] == database]


async def leaked_settings(bouncer: PgBouncer, url: str, database: str) -> dict[int, dict[str, str]]:
    """The tenant settings each of the app role's server connections holds outside a transaction, by backend pid.

    As many clients as there are server connections each run one statement
    at the same time (no transaction: pgbouncer hands each a server of its
    own), until every server pgbouncer holds has answered.
    """
    servers = {int(s["remote_pid"]) for s in app_servers(bouncer, database)}
    assert servers, "pgbouncer holds no server connection of the app role"
    query = ("SELECT pg_backend_pid(), " + ", ".join(f"current_setting('{name}', true)" for name in SETTINGS)
             + ", pg_sleep(0.2)")
    clients = [await asyncpg.connect(url, statement_cache_size=0) for _ in servers]
    seen: dict[int, dict[str, str]] = {}
    try:
        for _ in range(20):
            for row in await asyncio.gather(*(c.fetchrow(query) for c in clients)):
                seen[row[0]] = dict(zip(SETTINGS, row[1:3]))
            if servers <= set(seen):
                break
    finally:
        for c in clients:
            await c.close()
    assert servers <= set(seen), f"servers {servers - set(seen)} never answered"
    return {pid: values for pid, values in seen.items() if any(values.values())}


async def test_two_tenants_through_transaction_pooling_see_only_their_own(site, bouncer, admin, make_tenant,
                                                                          app_url):
    sides = {label: await prepare(site, admin, make_tenant, label) for label in ("A", "B")}
    database = urlsplit(app_url).path.lstrip("/")
    before = int(next(s for s in bouncer.show("STATS") if s["database"] == database)["total_xact_count"])

    load = Load(site, sides)
    peak = []

    async def watch_servers():
        while True:
            peak.append(len(await asyncio.to_thread(app_servers, bouncer, database)))
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch_servers())
    try:
        await load.run()
    finally:
        watcher.cancel()

    requests = sum(side.requests for side in sides.values())
    assert requests >= 1000, requests
    assert not load.problems, f"{len(load.problems)} problems, first: {load.problems[:5]}"

    for side in sides.values():
        titles = await admin.fetch("SELECT title, tenant_id FROM exception WHERE title LIKE $1",
                                   f"CANARY-{side.label}-%")
        assert sorted(r["title"] for r in titles) == sorted(side.titles)
        assert {r["tenant_id"] for r in titles} == {side.tenant.id}
        comments = await admin.fetch("SELECT comment, tenant_id FROM exception_event WHERE comment LIKE $1",
                                     f"CANARY-{side.label}-%")
        assert sorted(r["comment"] for r in comments) == sorted(side.comments)
        assert {r["tenant_id"] for r in comments} == {side.tenant.id}
        verdict = await verify_chain(site.app.extensions["pool"], side.tenant.id, full=True)
        assert verdict.ok, verdict.as_json()
        assert verdict.total_rows > len(side.titles) + len(side.comments)

    servers = app_servers(bouncer, database)
    transactions = int(next(s for s in bouncer.show("STATS") if s["database"] == database)["total_xact_count"])
    print(f"pgbouncer: {requests} requests, {transactions - before} transactions on "
          f"at most {max(peak)} server connections (pool {POOL_SIZE})")
    assert 1 <= len(servers) <= POOL_SIZE and max(peak) <= POOL_SIZE
    assert transactions - before >= requests >= 100 * POOL_SIZE
    backends = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE usename = 'exceptao_app'"
                                    " AND datname = $1", database)
    assert backends <= POOL_SIZE

    assert await leaked_settings(bouncer, bouncer.url(app_url), database) == {}



async def test_the_cross_tenant_probe_finds_nothing_through_transaction_pooling(site, bouncer, admin, make_tenant,
                                                                              app_url):
    """tests/reliability/probe.py, every route as every kind of user, with the app's pool behind pgbouncer."""
    a, b = await make_tenant("bounce-probe-a"), await make_tenant("bounce-probe-b")
    database = urlsplit(app_url).path.lstrip("/")
    findings = await run_probe(site, admin, (a, b))
    findings.assert_clean()
    assert findings.requests > 1500
    for tenant in (a, b):
        assert findings.unseen(tenant.slug) == []
    assert 1 <= len(app_servers(bouncer, database)) <= POOL_SIZE
    assert await leaked_settings(bouncer, bouncer.url(app_url), database) == {}

async def test_the_leak_check_sees_a_tenant_set_for_the_session(bouncer, admin, make_tenant, app_url, monkeypatch):
    tenant = await make_tenant("bounce-leak")
    database = urlsplit(app_url).path.lstrip("/")

    async def for_the_session(conn, tenant_id, org_unit_id=None):
        await conn.execute("SELECT set_config('app.current_tenant_id', $1, false)", str(tenant_id))

    async def no_reset(conn):
        pass

    monkeypatch.setattr(app_db, "set_tenant", for_the_session)
    # asyncpg's pool sends RESET ALL when a connection comes back, and pgbouncer
    # hands it to whichever server is free: often, but not always, the one just
    # used. That wipe is luck, not a guarantee, so it is left out here to make
    # the leak certain to stay where it was made.
    pool = await asyncpg.create_pool(bouncer.url(app_url), min_size=1, max_size=2, statement_cache_size=0,
                                     reset=no_reset)
    try:
        async with tenant_transaction(pool, tenant.id) as conn:
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == 1   # its creation, and no more
            leaky = await conn.fetchval("SELECT pg_backend_pid()")
    finally:
        await pool.close()
    leaks = await leaked_settings(bouncer, bouncer.url(app_url), database)
    with pytest.raises(AssertionError):
        assert leaks == {}
    assert set(leaks) == {leaky} and leaks[leaky]["app.current_tenant_id"] == str(tenant.id)


# Jobs -----------------------------------------------------------------------------

HELD_JOB_LOCKS = """
SELECT pid FROM pg_locks
 WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND objsubid = 2 AND classid::bigint = $1 AND objid::bigint = (hashtext($2)::bigint & 4294967295)
"""


async def test_a_job_runs_lock_is_let_go_when_the_run_ends(bouncer, admin, app_url, tmp_path):
    """A job's lock behind pgbouncer: taken, held through the run, and gone after it on every server connection.

    While the run works, something else asks pgbouncer for server connections,
    as web requests do, and keeps the one the lock is on if it is handed that
    one. A lock that lives on a server connection only between statements
    (a session lock, with the connection free in between) is then unlocked
    from another one, which unlocks nothing, and stays held by a server
    connection nobody is using: every later round of that job skips, and a
    tenant deletion waiting for the job's lock waits for ever.
    """
    from app.jobs import JOB_LOCKS, run_job

    name = f"bounce-{uuid.uuid4().hex[:8]}"
    url = bouncer.url(app_url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4, statement_cache_size=0)
    seen_during_run = []
    kept = []

    async def work(pool, now, settings):
        seen_during_run.extend(r["pid"] for r in await admin.fetch(HELD_JOB_LOCKS, JOB_LOCKS, name))
        others = []
        for _ in range(POOL_SIZE - 1):   # never all of them: the run itself needs one to end
            client = await asyncpg.connect(url, statement_cache_size=0)
            await client.execute("BEGIN")
            pid = await client.fetchval("SELECT pg_backend_pid()")
            (kept if pid in seen_during_run else others).append(client)
            if kept:
                break
        for client in others:
            await client.close()
        return {"done": 1}

    try:
        run_id = await run_job(pool, name, work, settings=Settings(data_dir=tmp_path))
        held_after = [r["pid"] for r in await admin.fetch(HELD_JOB_LOCKS, JOB_LOCKS, name)]
    finally:
        for client in kept:
            await client.close()
        await pool.close()

    assert run_id is not None and len(seen_during_run) == 1   # the run held the lock while it worked
    assert await admin.fetchval("SELECT outcome FROM job_run WHERE id = $1", run_id) == "ok"
    assert held_after == [], f"the lock of {name} outlived its run on backend {held_after}"


# Session state ----------------------------------------------------------------------

# What outlives a transaction on its connection. Behind pgbouncer in transaction
# pooling the next transaction is on whichever server connection is free, so
# none of it may be used on the runtime pool: a session advisory lock is let go
# from another connection (unlocking nothing), a session setting, LISTEN, a
# temporary table or a held cursor stays for the next client, and a named
# prepared statement is missing on the next server (asyncpg's unnamed ones,
# with statement cache 0, are parsed again with each execution).
SESSION_STATE = {   # SQL keywords as this code writes them: in capitals
    "a session advisory lock": re.compile(r"pg_(?:try_)?advisory_(?:un)?lock(?:_shared|_all)?\s*\("),
    "a session setting": re.compile(r"set_config\s*\([^()]*,\s*false\s*\)|[\"'(]\s*SET\s+(?!LOCAL\b|TRANSACTION\b|"
                                    r"CONSTRAINTS\b)\w"),
    "LISTEN/NOTIFY": re.compile(r"\b(?:UN)?LISTEN\s|\bNOTIFY\s|pg_notify\s*\(|add_listener\s*\("),
    "a temporary table": re.compile(r"CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+TABLE"),
    "a cursor kept past its transaction": re.compile(r"WITH\s+HOLD"),
    "a named prepared statement": re.compile(r"(?:conn|connection|admin)\.prepare\s*\(|\bPREPARE\s+\w+\s+(?:\(|AS)"),
}
# Code that runs on the administrator's own connection (DATABASE_URL, which goes
# straight to PostgreSQL, never through pgbouncer), and why it needs the session.
DIRECT = {
    "app/migrations.py": "the migration lock, held across the migrations' transactions",
    "app/crypto/rotation.py": "one key rotation at a time, across every tenant's transaction",
    "app/tenant_deletion/deletion.py": "waits for each job's lock (taken and let go at once)",
}


def test_the_runtime_code_keeps_nothing_on_a_connection_past_its_transaction():
    root = Path(__file__).resolve().parents[2]
    found = []
    for path in sorted([*root.glob("app/**/*.py"), *root.glob("sql/*.sql")]):
        name = path.relative_to(root).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for what, pattern in SESSION_STATE.items():
                if pattern.search(line) and name not in DIRECT:
                    found.append(f"{name}:{number}: {what}: {line.strip()}")
    assert not found, "\n".join(found)
    for name in DIRECT:
        assert any(p.search((root / name).read_text()) for p in SESSION_STATE.values()), \
            f"{name} keeps no session state any more: take it off DIRECT"
