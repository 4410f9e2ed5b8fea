"""The JSON API for exceptions, called as a script would: a personal API token, JSON in and out.

Every answer is also checked against the OpenAPI document the API serves, so
the document cannot promise what the API does not do.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from uuid import uuid4

import pytest
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from app import access
from app.access import tokens
from app.audit.verify import verify_tenant
from app.db import set_tenant, tenant_transaction
from app.exceptions import create_draft
from app.views.exceptions_api import STEP_UP_REFUSED
from app.web.guards import MEMBER, PUBLIC, access_rule
from tests.access.org import Org, add_unit, add_user, assign
from tests.exceptions import test_engine
from tests.exceptions.test_engine import draft, draft_form, move
from tests.views import conftest as view_fixtures

people = test_engine.people        # the engine tests' people: Rhea requests, Abel and Bea approve, Aud audits
site = view_fixtures.site          # the real app, served in-process

READ_WRITE = ["exception.read", "exception.submit"]
DECIDE = ["exception.read", "exception.review", "exception.approve"]


async def token_for(pool, org, name: str, capabilities: list[str]) -> str:
    """A token made by `name` in their default scope (their unit, when they are site-bound)."""
    async with tenant_transaction(pool, org.tenant.id) as conn:
        owner = await access.load(conn, org.users[name])
        token, _ = await tokens.create(conn, org.tenant.id, owner, f"{name}'s script", capabilities, 30)
    return token


class Script:
    """A script calling the API with one token, checking each answer against the served document."""

    def __init__(self, site, slug: str, token: str | None):
        self.client, self.slug, self.token = site.test_client(), slug, token
        self.spec: dict | None = None

    async def call(self, method: str, path: str, *, schema: str | None = None, **kwargs):
        headers = {"Host": f"{self.slug}.localhost", **kwargs.pop("headers", {})}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        response = await self.client.open(path, method=method, headers=headers, **kwargs)
        body = await response.get_json()
        assert response.mimetype == "application/json", (path, response.status_code)
        if schema:
            await self.conforms(body, schema)
        elif response.status_code >= 400:  # every error, whatever its status, has the documented shape
            await self.conforms(body, "Problems" if "problems" in body else "Error")
        return response.status_code, body, response

    async def conforms(self, body, schema: str) -> None:
        if self.spec is None:
            self.spec = await (await self.client.get("/api/openapi.json")).get_json()
        components = self.spec["components"]
        OAS31Validator({"$ref": f"#/components/schemas/{schema}", "components": components},
                       format_checker=oas31_format_checker).validate(body)
        # And nothing the document leaves out: a field a client cannot read about is drift too.
        properties = components["schemas"][schema]["properties"]
        assert set(body) <= set(properties), set(body) - set(properties)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, **kw):
        return self.call("POST", path, **kw)

    def patch(self, path, **kw):
        return self.call("PATCH", path, **kw)


@pytest.fixture
def as_script(site, people):
    async def make(name: str, capabilities: list[str]) -> Script:
        return Script(site, people.tenant.slug, await token_for(site.app.extensions["pool"], people, name,
                                                                capabilities))
    return make


def new_draft(org, **changes) -> dict:
    """The JSON a script sends: like the form, with numbers as numbers."""
    return draft_form(org, likelihood=3, impact=4) | changes


def api_rules(app) -> set[tuple[str, str, str]]:
    """(path in OpenAPI's spelling, method, endpoint) of every route under /api/."""
    return {(re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), method.lower(), rule.endpoint)
            for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def documented(spec) -> set[tuple[str, str, str]]:
    """(path, method, operationId) of every operation in the document; operationId is the view's endpoint."""
    return {(path, method, op["operationId"]) for path, item in spec["paths"].items()
            for method, op in item.items() if method != "parameters"}


async def test_the_document_is_public_valid_openapi_and_describes_every_api_route(site, tenant):
    status, spec, response = await Script(site, tenant.slug, None).get("/api/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.1")
    validate(spec, cls=OpenAPIV31SpecValidator)

    assert documented(spec) == api_rules(site.app)
    for path, method, endpoint in documented(spec):
        operation = spec["paths"][path][method]
        rule = access_rule(endpoint, site.app.view_functions[endpoint])
        if rule == PUBLIC:
            assert operation["security"] == []
        else:
            assert "security" not in operation and spec["security"] == [{"token": []}]
            assert operation.get("x-required-capabilities", []) == ([] if rule == MEMBER else list(rule))
    assert spec["paths"]["/api/exceptions/{exception_id}/transitions"]["post"]["x-required-capabilities"] == [
        "exception.read"]
    # Whatever reads the database may be answered 503 while it is unreachable (tests/reliability/test_restart.py).
    unavailable = {(path, method) for path, method, _ in documented(spec)
                   if spec["paths"][path][method]["responses"].get("503") == {"$ref": "#/components/responses/Unavailable"}}
    assert unavailable == {(path, method) for path, method, _ in documented(spec)} - {("/api/openapi.json", "get")}
    assert "Retry-After" in spec["components"]["responses"]["Unavailable"]["headers"]


async def test_a_new_api_route_without_a_description_is_noticed(site):
    @site.app.get("/api/undescribed")
    async def undescribed():
        return {}

    spec = await (await site.test_client().get("/api/openapi.json")).get_json()
    assert api_rules(site.app) - documented(spec) == {("/api/undescribed", "get", "undescribed")}


async def test_list_with_the_screens_filters_and_a_422_naming_each_bad_parameter(site, pool, people, as_script):
    ftp = await draft(pool, people, title="Legacy FTP server", likelihood="5", impact="5")
    await move(pool, people, ftp, "UNDER_REVIEW", "Rhea")
    await draft(pool, people, title="Shared admin account", likelihood="2", impact="2")
    await draft(pool, people, title="Unpatched printer")
    script = await as_script("Aud", ["exception.read"])

    status, body, _ = await script.get("/api/exceptions", query_string={"sort": "title", "per_page": "2"},
                                       schema="ExceptionList")
    assert status == 200
    assert [e["title"] for e in body["exceptions"]] == ["Legacy FTP server", "Shared admin account"]
    assert (body["total"], body["page"], body["per_page"], body["pages"]) == (3, 1, 2, 2)
    _, page2, _ = await script.get("/api/exceptions?sort=title&per_page=2&page=2")
    assert [e["title"] for e in page2["exceptions"]] == ["Unpatched printer"]

    _, under_review, _ = await script.get("/api/exceptions?state=UNDER_REVIEW&state=APPROVED")
    assert [(e["id"], e["state"], e["rating"], e["owner_name"]) for e in under_review["exceptions"]] == [
        (str(ftp), "UNDER_REVIEW", 25, "Olga")]
    _, found, _ = await script.get("/api/exceptions?q=printer&rating_max=12")
    assert [e["title"] for e in found["exceptions"]] == ["Unpatched printer"]

    status, bad, _ = await script.get("/api/exceptions?state=LOST&rating_min=99&sort=password&per_page=500&stat=x")
    assert status == 422
    assert set(bad["problems"]) == {"state", "rating_min", "sort", "per_page", "stat"}
    assert "UNDER_REVIEW" in bad["problems"]["state"] and "unknown parameter" in bad["problems"]["stat"]
    status, bad, _ = await script.get("/api/exceptions?q=ftp%00")  # PostgreSQL text cannot hold NUL
    assert status == 422 and "cannot be stored" in bad["problems"]["q"]


async def test_read_one_with_its_timeline_and_renewal_chain(site, pool, people, as_script, make_tenant):
    e = await draft(pool, people)
    await move(pool, people, e, "UNDER_REVIEW", "Rhea")
    await move(pool, people, e, "RETURNED", "Abel", "Name the vendor's deadline")
    script = await as_script("Aud", ["exception.read"])

    status, body, response = await script.get(f"/api/exceptions/{e}", schema="Exception")
    assert status == 200 and response.headers["Cache-Control"] == "no-store"
    assert (body["state"], body["justification"], body["requester_name"], body["rating"]) == (
        "RETURNED", "Vendor cannot do SFTP before Q3", "Rhea", 12)
    assert [(ev["kind"], ev["to_state"], ev["actor_name"], ev["comment"]) for ev in body["events"]] == [
        ("transition", "UNDER_REVIEW", "Rhea", None),
        ("transition", "RETURNED", "Abel", "Name the vendor's deadline")]
    assert [link["id"] for link in body["renewal_chain"]] == [str(e)]

    for missing in ("/api/exceptions/00000000-0000-0000-0000-000000000000", "/api/exceptions/not-a-uuid",
                    "/api/exceptions/1%20OR%201=1"):
        status, body, _ = await script.get(missing)
        assert status == 404 and body["error"] == "Not Found", missing

    # Another tenant's exception does not exist for this token, whatever its id.
    other = await make_tenant()
    theirs = await _exception_in(pool, other)
    status, body, _ = await script.get(f"/api/exceptions/{theirs}")
    assert status == 404 and "no such exception" in body["message"]
    status, _, _ = await script.patch(f"/api/exceptions/{theirs}", json={"title": "Mine now"})
    assert status == 403  # this token may not even edit; and with exception.submit:
    requester = await as_script("Rhea", READ_WRITE)
    assert (await requester.patch(f"/api/exceptions/{theirs}", json={"title": "Mine now"}))[0] == 404
    assert (await requester.post(f"/api/exceptions/{theirs}/transitions", json={"to": "WITHDRAWN"}))[0] == 404


async def _exception_in(pool, tenant):
    """An exception in another tenant, made by a requester of that tenant."""
    org = Org(tenant)
    async with pool.acquire() as conn, conn.transaction():
        await set_tenant(conn, tenant.id)
        user = await conn.fetchval("INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, $2, 'Ola')"
                                   " RETURNING id", tenant.id, f"ola@{tenant.slug}.example")
        await conn.execute("INSERT INTO role_assignment (tenant_id, role_id, user_id)"
                           " SELECT $1, id, $2 FROM role WHERE seeded_as = 'requester'", tenant.id, user)
        org.users["Olga"] = user
        requester = await access.load(conn, user)
        return await create_draft(conn, tenant.id, requester, draft_form(org))


async def test_create_a_draft_and_422_naming_every_wrong_field(site, admin, pool, people, as_script):
    script = await as_script("Rhea", READ_WRITE)
    status, body, response = await script.post("/api/exceptions", json=new_draft(people, assets="ftp.example"),
                                               schema="Exception")
    assert status == 201 and response.headers["Location"] == f"/api/exceptions/{body['id']}"
    assert (body["state"], body["title"], body["assets"], body["requester_name"], body["owner_name"]) == (
        "DRAFT", "Legacy FTP server", "ftp.example", "Rhea", "Olga")
    assert body["events"] == [] and body["renewal_chain"][0]["id"] == body["id"]
    assert (await script.get(response.headers["Location"]))[1]["title"] == "Legacy FTP server"
    assert await admin.fetchval(
        "SELECT actor FROM audit_log WHERE tenant_id = $1 AND action = 'exception:exception:create' AND target_id = $2",
        people.tenant.id, body["id"]) == f"user:{people.users['Rhea']}"

    count = await admin.fetchval("SELECT count(*) FROM exception WHERE tenant_id = $1", people.tenant.id)
    wrong = new_draft(people, title="", likelihood=3.7, impact=True, ends_on="2000-01-01", owner=42,
                      assets=["not", "text"])
    wrong["state"] = "APPROVED"  # a field a script cannot set
    status, body, _ = await script.post("/api/exceptions", json=wrong, schema="Problems")
    assert status == 422
    assert body["problems"] == {
        "title": "required", "likelihood": "a whole number from 1 to 5", "impact": "a whole number from 1 to 5",
        "ends_on": "after the start", "owner": "the owner's user id (a JSON string)",
        "assets": "text (a JSON string)",
        "state": "unknown field; the fields are title, policy_ref, assets, deviation, justification, "
                 "compensating_controls, likelihood, impact, starts_on, ends_on, owner"}
    status, body, _ = await script.post("/api/exceptions", json=new_draft(
        people, ends_on=(date.today() + timedelta(days=500)).isoformat()))
    assert status == 422 and body["problems"] == {"ends_on": "at most 12 months after the start"}
    status, body, _ = await script.post("/api/exceptions", json=new_draft(people, owner=str(uuid4())))
    assert status == 422 and "owner" in body["problems"]

    # Text PostgreSQL cannot hold is the caller's mistake, named like any other, never a 500.
    status, body, _ = await script.post("/api/exceptions", json=new_draft(people, title="Legacy\x00FTP"))
    assert status == 422 and set(body["problems"]) == {"title"} and "NUL" in body["problems"]["title"]
    lone_surrogate = json.dumps(new_draft(people))[:-1] + ', "justification": "\\ud800"}'  # the last one counts
    status, body, _ = await script.post("/api/exceptions", data=lone_surrogate.encode(),
                                        headers={"Content-Type": "application/json"})
    assert status == 422 and set(body["problems"]) == {"justification"}

    for kwargs, words in (({"data": b'{"title": "Legacy FTP",', "headers": {"Content-Type": "application/json"}},
                           "not valid JSON"),
                          ({"data": b"\xff\xfe{", "headers": {"Content-Type": "application/json"}}, "not valid JSON"),
                          ({"data": b"[" * 100_000, "headers": {"Content-Type": "application/json"}},
                           "not valid JSON"),
                          ({"form": {"title": "a form"}}, "Content-Type: application/json"),
                          ({"json": ["a", "list"]}, "JSON object")):
        status, body, _ = await script.post("/api/exceptions", **kwargs)
        assert status == 400 and words in body["message"], (kwargs, body)
    assert await admin.fetchval("SELECT count(*) FROM exception WHERE tenant_id = $1", people.tenant.id) == count


async def test_patch_changes_only_what_is_sent_by_the_requester_while_it_is_a_draft(admin, pool, people, as_script):
    rhea = await as_script("Rhea", READ_WRITE)
    _, created, _ = await rhea.post("/api/exceptions", json=new_draft(people, assets="ftp.example"))
    path = f"/api/exceptions/{created['id']}"

    status, body, _ = await rhea.patch(path, json={"title": "Legacy FTP server (finance)", "impact": 5},
                                       schema="Exception")
    assert status == 200
    assert (body["title"], body["impact"], body["rating"], body["assets"], body["ends_on"]) == (
        "Legacy FTP server (finance)", 5, 15, "ftp.example", created["ends_on"])
    assert body["events"][-1]["comment"] == "Changed: Title, Impact"

    status, body, _ = await rhea.patch(path, json={"impact": "high", "assets": None, "deviation": ""})
    assert status == 422 and body["problems"] == {"impact": "a whole number from 1 to 5", "deviation": "required"}
    assert (await admin.fetchval("SELECT assets FROM exception WHERE id = $1", created["id"])) == "ftp.example"
    status, body, _ = await rhea.patch(path, json={"assets": None})  # null empties an optional field
    assert status == 200 and body["assets"] == ""

    abel = await as_script("Abel", READ_WRITE)  # a requester too, but not of this one
    status, body, _ = await abel.patch(path, json={"title": "Hijacked"})
    assert status == 403 and body["message"] == "Only the exception's requester can edit it."
    assert (await rhea.post(f"{path}/transitions", json={"to": "UNDER_REVIEW"}))[0] == 200
    status, body, _ = await rhea.patch(path, json={"title": "Too late"})
    assert status == 409 and "under review" in body["message"]
    assert await admin.fetchval("SELECT title FROM exception WHERE id = $1", created["id"]) == \
        "Legacy FTP server (finance)"


async def test_transitions_and_approval_refused_to_a_token(admin, pool, people, as_script, settings):
    rhea, abel = await as_script("Rhea", READ_WRITE), await as_script("Abel", DECIDE)
    e = await draft(pool, people)
    path = f"/api/exceptions/{e}/transitions"

    status, body, _ = await rhea.post(path, json={"to": "UNDER_REVIEW"}, schema="TransitionOutcome")
    assert status == 200 and body == {"exception_id": str(e), "from_state": "DRAFT", "state": "UNDER_REVIEW",
                                      "approval_level": None, "approvals_needed": 1}
    status, body, _ = await abel.post(path, json={"to": "RETURNED"})
    assert status == 422 and body["message"] == "A comment is required for this decision: say why."
    status, body, _ = await abel.post(path, json={"to": "RETURNED", "comment": "Name the vendor's deadline"},
                                      schema="TransitionOutcome")
    assert status == 200 and body["state"] == "RETURNED"
    assert (await rhea.post(path, json={"to": "UNDER_REVIEW", "comment": "Q3, in writing"}))[0] == 200

    # Approving needs a recent second factor, which a token never is: refused, and nothing changed.
    events = await admin.fetchval("SELECT count(*) FROM exception_event WHERE exception_id = $1", e)
    chain = await admin.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1", people.tenant.id)
    for decision in ("APPROVED", "REJECTED"):
        status, body, _ = await abel.post(path, json={"to": decision, "comment": "Accepted until Q3"})
        assert status == 403 and body == {"error": "Forbidden", "message": STEP_UP_REFUSED}
        assert "second factor" in body["message"] and "token" in body["message"]
    assert await admin.fetchval("SELECT state FROM exception WHERE id = $1", e) == "UNDER_REVIEW"
    assert await admin.fetchval("SELECT count(*) FROM exception_event WHERE exception_id = $1", e) == events
    assert await admin.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1", people.tenant.id) == chain

    # The rows' other refusals come through with their own status and words.
    status, body, _ = await rhea.post(path, json={"to": "APPROVED", "comment": "mine"})
    assert status == 403 and "exception.approve" in body["message"]
    status, body, _ = await abel.post(path, json={"to": "ACTIVE"})
    assert status == 409 and body["message"] == "An exception that is under review cannot become active."
    status, body, _ = await rhea.post(path, json={"to": "approved", "comment": 7, "why": "x"})
    assert status == 422 and set(body["problems"]) == {"to", "comment", "why"}
    status, body, _ = await rhea.post(path, json={"to": "WITHDRAWN", "comment": "x" * 5001})
    assert status == 422 and body["problems"] == {"comment": "at most 5000 characters"}
    status, body, _ = await rhea.post(path, json={"to": "WITHDRAWN", "comment": "\x00"})
    assert status == 422 and set(body["problems"]) == {"comment"}
    assert await admin.fetchval("SELECT state FROM exception WHERE id = $1", e) == "UNDER_REVIEW"

    assert (await rhea.post(path, json={"to": "WITHDRAWN", "comment": None}))[1]["state"] == "WITHDRAWN"
    assert (await verify_tenant(pool, people.tenant.id, settings)).ok


async def test_a_token_reaches_only_its_capabilities_and_its_scope(site, admin, pool, people, as_script):
    async with admin.transaction():
        await set_tenant(admin, people.tenant.id)
        await add_unit(admin, people, "North")
        await add_unit(admin, people, "South")
        await add_user(admin, people, "Nia")                      # site-bound: requester in North only
        await assign(admin, people, "requester", user="Nia", within="North")
    titles = {}
    for unit in ("North", "South"):
        async with tenant_transaction(pool, people.tenant.id) as conn:
            requester = await access.load(conn, people.users["Rhea"])
            titles[unit] = await create_draft(conn, people.tenant.id, requester,
                                              draft_form(people, title=f"{unit} firewall"),
                                              org_unit_id=people.units[unit])

    nia = await as_script("Nia", READ_WRITE)
    _, me, _ = await nia.get("/api/me", schema="Me")
    assert me["scope"]["org_unit_id"] == str(people.units["North"])
    _, listed, _ = await nia.get("/api/exceptions")
    assert [e["title"] for e in listed["exceptions"]] == ["North firewall"]
    assert (await nia.get(f"/api/exceptions/{titles['South']}"))[0] == 404
    assert (await nia.get(f"/api/exceptions/{titles['North']}"))[0] == 200
    status, made, _ = await nia.post("/api/exceptions", json=new_draft(people, owner=str(people.users["Nia"])))
    assert status == 201 and made["org_unit_id"] == str(people.units["North"]) and made["unit_name"] == "North"

    whole = await as_script("Aud", ["exception.read"])
    _, everything, _ = await whole.get("/api/exceptions")
    assert everything["total"] == 3

    # Capabilities: a token has only those it was made with, whatever its owner holds.
    export_only = await as_script("Aud", ["report.export"])
    for method, path, kwargs in (("GET", "/api/exceptions", {}), ("GET", f"/api/exceptions/{titles['North']}", {}),
                                 ("POST", f"/api/exceptions/{titles['North']}/transitions", {"json": {"to": "X"}})):
        status, body, _ = await export_only.call(method, path, **kwargs)
        assert status == 403 and body["message"] == "this token lacks exception.read", path
    read_only = await as_script("Rhea", ["exception.read"])
    status, body, _ = await read_only.post("/api/exceptions", json=new_draft(people))
    assert status == 403 and body["message"] == "this token lacks exception.submit"
    status, body, _ = await Script(site, people.tenant.slug, None).get("/api/exceptions")
    assert status == 401 and "Bearer" in body["message"]


async def test_the_other_api_routes_answer_as_documented(site, pool, people, as_script):
    auditor = await as_script("Aud", ["exception.read", "audit.read"])
    status, _, _ = await auditor.get("/api/me", schema="Me")
    assert status == 200
    status, body, _ = await auditor.get("/api/audit/events?limit=3", schema="AuditEvents")
    assert status == 200 and body["events"][0]["seq"] == 1 and len(body["events"]) <= 3
    assert (await auditor.get("/api/audit/events?limit=0"))[0] == 400
    status, _, _ = await Script(site, people.tenant.slug, None).get("/api/audit/verify", schema="Verdict")
    assert status == 200
    status, _, _ = await Script(site, people.tenant.slug, None).get("/api/audit/public", schema="PublicChains")
    assert status == 200
