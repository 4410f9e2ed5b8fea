"""PostgreSQL restarted, cleanly and by a crash, while the app writes to the audit chain and serves requests.

A private cluster (tests/reliability/cluster.py, fsync and synchronous_commit
on) is migrated and served by the app in process, with its real pool. Two
kinds of load run at once, each with a canary per write that goes in a ledger
only when the write was acknowledged:

- writers append audit events through the pool, one transaction each (a
  canary counts once its COMMIT returned);
- HTTP clients draft an exception with a canary in its title and then submit
  it for review, through the JSON API with a bearer token and through the
  forms as a signed-in user (a draft counts once the answer was 201 with its
  id, or 303 to its page; a submit once it was answered success).

Mid-stream PostgreSQL is restarted with `pg_ctl restart -m fast`, then again
with `-m immediate` (a crash: the server recovers from its WAL). Afterwards:

- every acknowledged canary is there: appends in audit_log, drafts as
  exceptions with their creation in the chain, submits with their event and
  its chain entry (what the app said was written was);
- nothing is half-written: no exception lacks its creation entry, no event
  lacks its chain entry (a request that failed wrote all or nothing; one whose
  COMMIT landed but whose answer was lost may leave a whole write);
- every request that failed during the outage was answered 503 with
  Retry-After (a page, or the API's JSON error), never a 500 or a traceback;
- the chain verifies in a full walk (a crash cannot leave a gap or a bad link);
- /healthz, an append and an HTTP draft succeed again within a few seconds of
  PostgreSQL being back, without the app restarting: the pool drops the
  connections the restart killed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from uuid import UUID

import asyncpg
import pytest
from openapi_schema_validator import OAS31Validator

from app import access
from app.access import tokens
from app.audit import AuditAction, Target, record
from app.audit.verify import verify_chain
from app.config import Settings
from app.db import tenant_transaction
from app.migrations import migrate
from app.tenants import create_tenant
from tests.reliability.cluster import PrivateCluster
from tests.risks.test_screens import signed_in

WRITERS = 4
API_CLIENTS = 3
FORM_CLIENTS = 1
# What a write may raise while the server goes away: the socket closing, the
# server refusing connections while it shuts down or recovers, and asyncpg's
# InternalClientError when a connection lost mid-commit is reset on release
# (the pool then terminates that connection).
CONNECTION_LOST = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
RECOVERY_BOUND_SECONDS = 10
SUBMITTED = "UNDER_REVIEW"


@pytest.fixture
def cluster():
    cluster = PrivateCluster().init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
async def served(cluster, tmp_path):
    """The app on the private cluster, and a tenant on it."""
    from app import create_app

    await migrate(cluster.url)
    admin = await asyncpg.connect(cluster.url)
    try:
        tenant = await create_tenant(admin, "restart", "Restart", actor="system:test")
    finally:
        await admin.close()
    app = create_app(Settings(database_url=cluster.url, data_dir=tmp_path, jobs=False))
    async with app.test_app() as test_app:
        yield app, test_app, tenant


class Load:
    """Writers appending canaries through the app's pool; the ledger holds the acknowledged ones."""

    def __init__(self, pool, tenant_id):
        self.pool, self.tenant_id = pool, tenant_id
        self.acknowledged: list[str] = []
        self.failed = 0
        self.running = True

    async def append(self) -> str:
        canary = uuid.uuid4().hex
        async with tenant_transaction(self.pool, self.tenant_id) as conn:
            await record(conn, AuditAction.USER_CREATE, actor="system:load", target=Target("user", canary),
                         data={"canary": canary})
        return canary

    async def writer(self) -> None:
        while self.running:
            try:
                self.acknowledged.append(await self.append())
            except CONNECTION_LOST:
                self.failed += 1
                await asyncio.sleep(0.02)


def draft_fields(owner: UUID, canary: str) -> dict:
    start = date.today()
    return {"title": f"Restart canary {canary}", "policy_ref": "ISO 27001 A.8.24", "deviation": "Plain FTP",
            "justification": "Vendor cannot do SFTP before Q3", "likelihood": 3, "impact": 4,
            "starts_on": start.isoformat(), "ends_on": (start + timedelta(days=180)).isoformat(),
            "owner": str(owner)}


@dataclass
class Ledger:
    """What HTTP clients were told: drafts (canary -> id) and submits acknowledged, and every failed answer."""

    drafted: dict[str, UUID] = field(default_factory=dict)
    submitted: set[UUID] = field(default_factory=set)
    failed: Counter = field(default_factory=Counter)
    unclean: list[str] = field(default_factory=list)

    def refused(self, response, body: str, what: str) -> None:
        """A failed answer: clean is a 503 with Retry-After and no traceback; anything else is kept as unclean."""
        self.failed[response.status_code] += 1
        clean = (response.status_code == 503 and "Retry-After" in response.headers and "Traceback" not in body
                 and ("application/json" in response.content_type) == ("/api/" in what))
        if not clean:
            self.unclean.append(f"{what}: {response.status_code} {response.content_type} {body[:300]!r}")


class ApiClient:
    """Drafts and submits through the JSON API with a bearer token."""

    def __init__(self, client, host: str, token: str, owner: UUID, ledger: Ledger):
        self.client, self.owner, self.ledger = client, owner, ledger
        self.headers = {"Host": host, "Authorization": f"Bearer {token}"}

    async def draft(self, canary: str) -> UUID | None:
        response = await self.client.post("/api/exceptions", json=draft_fields(self.owner, canary),
                                          headers=self.headers)
        body = await response.get_data(as_text=True)
        if response.status_code == 201:
            return UUID((await response.get_json())["id"])
        self.ledger.refused(response, body, "POST /api/exceptions")
        return None

    async def submit(self, exception_id: UUID) -> bool:
        response = await self.client.post(f"/api/exceptions/{exception_id}/transitions", json={"to": SUBMITTED},
                                          headers=self.headers)
        body = await response.get_data(as_text=True)
        if response.status_code == 200 and (await response.get_json())["state"] == SUBMITTED:
            return True
        self.ledger.refused(response, body, "POST /api/exceptions/<id>/transitions")
        return False


class FormClient:
    """Drafts and submits through the forms, as a signed-in user's browser posts them."""

    def __init__(self, browser, owner: UUID, ledger: Ledger):
        self.browser, self.owner, self.ledger = browser, owner, ledger

    async def draft(self, canary: str) -> UUID | None:
        form = {name: str(value) for name, value in draft_fields(self.owner, canary).items()}
        response = await self.browser.post("/exceptions", form)
        location = response.headers.get("Location", "")
        if response.status_code == 303 and location.endswith("?notice=created"):
            return UUID(location.split("?")[0].rsplit("/", 1)[1])
        self.ledger.refused(response, self.browser.last_body, "POST /exceptions")
        return None

    async def submit(self, exception_id: UUID) -> bool:
        response = await self.browser.post(f"/exceptions/{exception_id}/transition", {"to": SUBMITTED})
        if response.status_code == 303 and response.headers.get("Location", "").endswith("?notice=under_review"):
            return True
        self.ledger.refused(response, self.browser.last_body, "POST /exceptions/<id>/transition")
        return False


async def requests(client, ledger: Ledger, running) -> None:
    """Draft, then submit what was drafted, until stopped; a canary is in the ledger only once acknowledged."""
    while running():
        canary = uuid.uuid4().hex
        exception_id = await client.draft(canary)
        if exception_id is None:
            await asyncio.sleep(0.02)
            continue
        ledger.drafted[canary] = exception_id
        if await client.submit(exception_id):
            ledger.submitted.add(exception_id)
        else:
            await asyncio.sleep(0.02)


async def requesters(app, test_app, cluster, tenant, ledger: Ledger, *, api_clients: int = API_CLIENTS,
                     form_clients: int = FORM_CLIENTS) -> list:
    """API clients holding a requester's token, and form clients signed in as requesters (the first one owns
    the token)."""
    admin = await asyncpg.connect(cluster.url)
    try:
        browsers = [await signed_in(test_app, admin, tenant, "requester", name=f"Requester {n}")
                    for n in range(max(form_clients, 1))]
    finally:
        await admin.close()
    user_id = browsers[0][1]
    async with tenant_transaction(app.extensions["pool"], tenant.id) as conn:
        owner = await access.load(conn, user_id)
        token, _ = await tokens.create(conn, tenant.id, owner, "restart", ["exception.read", "exception.submit"], 1)
    host = f"{tenant.slug}.localhost"
    return ([ApiClient(test_app.test_client(), host, token, user_id, ledger) for _ in range(api_clients)]
            + [FormClient(browser, user_id, ledger) for browser, user_id in browsers[:form_clients]])


async def until_ok(attempt) -> float:
    """Seconds until `attempt()` first returns True, retrying every 20 ms (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < 3 * RECOVERY_BOUND_SECONDS:
        try:
            if await attempt():
                return time.monotonic() - started
        except CONNECTION_LOST:
            pass
        await asyncio.sleep(0.02)
    return float("inf")


EXCEPTIONS_AS_STORED = """
SELECT e.id, e.title, e.state,
       (SELECT count(*) FROM audit_log a WHERE a.tenant_id = e.tenant_id AND a.target_type = 'exception'
           AND a.target_id = e.id::text AND a.action = $2) AS creations,
       (SELECT count(*) FROM exception_event v WHERE v.exception_id = e.id) AS events,
       (SELECT count(*) FROM audit_log a WHERE a.tenant_id = e.tenant_id AND a.target_type = 'exception'
           AND a.target_id = e.id::text AND a.action = $3) AS transitions
  FROM exception e
 WHERE e.tenant_id = $1
"""


async def test_acknowledged_writes_survive_restarts_and_the_app_serves_again(cluster, served):
    app, test_app, tenant = served
    client = test_app.test_client()
    load = Load(app.extensions["pool"], tenant.id)
    ledger = Ledger()
    clients = await requesters(app, test_app, cluster, tenant, ledger)

    async def healthy() -> bool:
        return (await client.get("/healthz")).status_code == 200

    async def appends() -> bool:
        load.acknowledged.append(await load.append())
        return True

    async def drafts() -> bool:
        canary = uuid.uuid4().hex
        exception_id = await clients[0].draft(canary)
        if exception_id is not None:
            ledger.drafted[canary] = exception_id
        return exception_id is not None

    tasks = [asyncio.create_task(load.writer()) for _ in range(WRITERS)]
    tasks += [asyncio.create_task(requests(c, ledger, lambda: load.running)) for c in clients]
    recovery = {}
    try:
        for mode in ("fast", "immediate"):
            await asyncio.sleep(0.5)
            before = (len(load.acknowledged), len(ledger.drafted), len(ledger.submitted))
            await asyncio.to_thread(cluster.restart, mode)
            recovery[mode] = (await until_ok(healthy), await until_ok(appends), await until_ok(drafts))
            await asyncio.sleep(0.3)
            after = (len(load.acknowledged), len(ledger.drafted), len(ledger.submitted))
            assert all(a > b for a, b in zip(after, before)), (mode, before, after)
        await asyncio.sleep(0.5)
    finally:
        load.running = False
        await asyncio.gather(*tasks)

    print(f"restart recovery (s, /healthz, append, HTTP draft): {recovery}; appends acknowledged "
          f"{len(load.acknowledged)}, failed {load.failed}; drafts acknowledged {len(ledger.drafted)}, submits "
          f"{len(ledger.submitted)}, failed answers {dict(ledger.failed)}")
    for mode, bounds in recovery.items():
        assert all(seconds < RECOVERY_BOUND_SECONDS for seconds in bounds), (mode, recovery)
    assert not ledger.unclean, "\n".join(ledger.unclean[:10])
    assert ledger.failed, "no request was in flight during the outages: the test did not test them"

    admin = await asyncpg.connect(cluster.url)
    try:
        stored = {r[0] for r in await admin.fetch(
            "SELECT target_id FROM audit_log WHERE tenant_id = $1 AND actor = 'system:load'", tenant.id)}
        exceptions = {r["id"]: r for r in await admin.fetch(
            EXCEPTIONS_AS_STORED, tenant.id, AuditAction.EXCEPTION_CREATE.value,
            AuditAction.EXCEPTION_TRANSITION.value)}
    finally:
        await admin.close()
    lost = set(load.acknowledged) - stored
    assert not lost, f"{len(lost)} acknowledged appends are gone"

    lost_drafts = [canary for canary, e in ledger.drafted.items()
                   if e not in exceptions or canary not in exceptions[e]["title"] or exceptions[e]["creations"] != 1]
    assert not lost_drafts, f"{len(lost_drafts)} acknowledged drafts are gone or lack their chain entry"
    lost_submits = [e for e in ledger.submitted if e not in exceptions or exceptions[e]["state"] != SUBMITTED
                    or exceptions[e]["events"] != 1 or exceptions[e]["transitions"] != 1]
    assert not lost_submits, f"{len(lost_submits)} acknowledged submits are gone or lack their event or chain entry"
    half_written = [dict(r) for r in exceptions.values()
                    if r["creations"] != 1 or r["events"] != r["transitions"]
                    or (r["state"], r["events"]) not in (("DRAFT", 0), (SUBMITTED, 1))]
    assert not half_written, half_written[:5]
    print(f"exceptions stored {len(exceptions)}, of which committed without a success answer "
          f"{len(set(exceptions) - set(ledger.drafted.values()))}")

    verdict = await verify_chain(app.extensions["pool"], tenant.id, full=True)
    assert verdict.ok, verdict.as_json()
    assert verdict.total_rows >= len(load.acknowledged) + len(ledger.drafted) + len(ledger.submitted) + 1


async def test_while_postgresql_is_down_requests_are_answered_503_then_served_once_it_is_back(cluster, served):
    """Pages and the API say the database is unreachable (503, Retry-After), write nothing, and work again."""
    app, test_app, tenant = served
    ledger = Ledger()
    api, form = await requesters(app, test_app, cluster, tenant, ledger, api_clients=1)
    canaries = [uuid.uuid4().hex for _ in range(2)]
    cluster.stop()
    try:
        assert await api.draft(canaries[0]) is None and await form.draft(canaries[1]) is None
        page = await form.browser.get("/exceptions")
        listed = await api.client.get("/api/exceptions", headers=api.headers)
    finally:
        cluster.start()
    assert ledger.failed == {503: 2} and not ledger.unclean, ledger
    assert page.status_code == 503 and page.headers["Retry-After"].isdigit()
    assert "Temporarily unavailable" in form.browser.last_body
    assert "Try again in a few seconds" in form.browser.last_body
    assert listed.status_code == 503 and (await listed.get_json())["error"] == "Service Unavailable"
    spec = await (await api.client.get("/api/openapi.json")).get_json()     # the answer is the documented one
    documented = spec["paths"]["/api/exceptions"]["get"]["responses"]["503"]["$ref"]
    schema = spec["components"]["responses"][documented.rsplit("/", 1)[1]]["content"]["application/json"]["schema"]
    OAS31Validator({**schema, "components": spec["components"]}).validate(await listed.get_json())

    async def drafts() -> bool:
        return await api.draft(uuid.uuid4().hex) is not None and await form.draft(uuid.uuid4().hex) is not None

    assert await until_ok(drafts) < RECOVERY_BOUND_SECONDS
    admin = await asyncpg.connect(cluster.url)
    try:
        titles = [r[0] for r in await admin.fetch("SELECT title FROM exception WHERE tenant_id = $1", tenant.id)]
    finally:
        await admin.close()
    assert len(titles) == 2 and not [t for t in titles if any(c in t for c in canaries)], titles
