"""The cross-tenant probe: every route in the URL map, as every kind of user of one tenant, must show nothing of another.

Usage (a QuartTestApp from `app.test_app()`, a superuser connection, two tenants):

    findings = await run_probe(site, admin, (tenant_a, tenant_b))
    findings.assert_clean()            # AssertionError naming every leak, 500 and unprobed route

`run_probe` seeds each tenant (canaries.py) with data of every kind the app shows
(exceptions in several states with comments and an attestation, a risk, evidence
uploaded through the app, org units, groups, users, a custom role, an API token, a
passkey, a reset link, notifications, an export archive, and the audit events all of
these record), every free-text field holding a canary `CANARY-<tag>-<field>-<hex>` of
its tenant. Then, for each tenant in turn, it sends every rule of `app.url_map` (every
method it allows) as that tenant's administrator (every role, TOTP, fresh second
factor), a requester, an anonymous browser and an API token with every capability, on
the tenant's own host (and, for GETs, with the other tenant's administrator's
session cookie and token, which must get nothing of either tenant):

- GET with the tenant's own ids in the path, then with the other tenant's ids in the
  path and the query string (to the API, also with an `X-Tenant` header naming the
  other tenant);
- unsafe methods only with the other tenant's ids, in the path and in every id-looking
  field of a multipart form (a small file attached) or JSON body, so the tenant's own
  data is not destroyed; those that may end the sender's session (sign-out, revoking
  sessions, removing TOTP...) go last and the principal is signed in anew after each.
  The rest of the form is plausible values, so a handler gets as far as the ids.

A response (body, headers, a zip's members) that holds a canary of the other tenant,
or one of its ids that the request did not carry, is a leak; a 500 or a traceback is
an error; a change to any row of the other tenant while this tenant's unsafe requests
ran is a cross-tenant write. `Findings.sightings` records where each tenant saw its
own canaries, and `Findings.unseen` names the pages of MUST_SEE where it did not, so a
caller can require that a full run saw data at all rather than only refusals.

The pgbouncer test runs the same probe with the app's pool behind pgbouncer: only
`site` differs. Keep `run_probe`'s signature stable.
"""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import product
from typing import Iterable, Sequence
from urllib.parse import urlencode

import asyncpg

from app.openapi import document
from app.tenants import Tenant
from tests.property.test_form_inputs import handler_fields
from tests.reliability.canaries import CLEAN, Principal, Seeded, seed, signed_in
from tests.web import PASSWORD, Browser

__all__ = ["EXCLUDED", "MUST_SEE", "Findings", "Seeded", "coverage", "plan", "run_probe", "seed"]

# Routes not probed, each with why. Anything else in the URL map that the probe did not send fails it.
EXCLUDED = {
    "/static/<path:filename>": "packaged CSS/JS/htmx files, the same for every tenant; no tenant data",
}

# Requests after which the sender's session (or its second factor) may be gone: sent last, then signed in anew.
SESSION_ENDING = {"auth.signout", "account.revoke_all_sessions", "account.revoke_session", "account.totp_remove",
                  "auth.switch_scope", "auth.signin", "auth.factor", "passkeys.signin", "passkeys.factor",
                  "passkeys.remove", "admin.disable", "reset.set_new_password"}

PRINCIPALS = ("admin", "requester", "anonymous", "token")

# The tenant's own record of what its users did: it may rightly hold whatever they sent before, the other
# tenant's ids they tried included (the exception list's filters are audited, for one).
RECORDS = {"api.audit_events", "audit_page.index", "audit_bundle.download", "erasure.export"}

# The operator panel is no tenant's: its routes must refuse every tenant principal, except these open doors.
OPERATOR_OPEN = {"operator.signin_form"}

# Where each principal must have seen its own tenant's canaries (beyond its own name on the page): a full
# run that did not was refused where it should have been shown data, and proves nothing (Findings.unseen).
MUST_SEE = {
    "admin": {"exceptions.index", "exceptions.detail", "exceptions.review", "exceptions.export", "risks.register",
              "risks.show", "evidence.details", "evidence.download", "admin.users_page", "admin.groups_page",
              "admin.group_page", "admin.units_page", "admin.unit_page", "admin.roles_page", "admin.role_page",
              "admin.assignments_page", "tokens.index", "audit_bundle.download", "tenant_export.download",
              "account.security"},
    "requester": {"exceptions.index", "exceptions.detail", "exceptions.mine"},
    "token": {"exceptions_api.list_exceptions_api", "exceptions_api.get_exception_api", "api.audit_events"},
}
# The id kind a path parameter or form field names.
PARAM_KINDS = {"exception_id": "exception", "risk_id": "risk", "evidence_id": "evidence", "user_id": "user",
               "group_id": "group", "role_id": "role", "unit_id": "unit", "assignment_id": "assignment",
               "session_id": "session", "token_id": "token", "export_id": "export", "passkey_id": "passkey",
               "tenant_id": "tenant"}
FIELD_KINDS = {"owner": "user", "holder": "user", "user": "user", "role": "role", "within": "unit", "unit": "unit",
               "workspace": "unit", "exception_id": "exception", "risk_id": "risk", "evidence_id": "evidence",
               "predecessor_id": "exception"}
# Plain values for the other fields, so a handler gets past its checks to the ids it would look up.
FIELD_VALUES = {"likelihood": "3", "impact": "4", "treatment": "mitigate", "days": "30", "decision": "release",
                "to": "WITHDRAWN", "capability": "exception.read", "code": "000000", "step_up_code": "000000",
                "password": PASSWORD, "password_again": PASSWORD, "public": "on", "full": "1", "page": "1",
                "limit": "10", "after": "0", "basis": "art17", "policy": "block", "rating_min": "1",
                "rating_max": "25", "expiring_within": "30", "sort": "title", "state": "DRAFT"}
# Uploads read the file and the CSRF token only, and refuse a form of more than 10 parts.
UPLOADS = {"evidence.upload_to_exception", "evidence.upload_to_risk"}
TEXT_FIELDS = ("title", "policy_ref", "assets", "deviation", "justification", "description", "name", "comment",
               "reason", "reference", "q", "slug")


@dataclass
class Findings:
    leaks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    unprobed: list[str] = field(default_factory=list)
    # (tenant slug, endpoint) -> principals that saw their own tenant's canary there
    sightings: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    requests: int = 0

    def seen(self, slug: str, principal: str | None = None) -> set[str]:
        """Endpoints where the tenant's users (or this principal of it) saw their own canaries."""
        return {endpoint for (s, endpoint), who in self.sightings.items()
                if s == slug and (principal is None or principal in who)}

    def unseen(self, slug: str) -> list[str]:
        """'principal endpoint' of MUST_SEE where the tenant's principal never saw its own canaries."""
        return [f"{principal} {endpoint}" for principal, endpoints in sorted(MUST_SEE.items())
                for endpoint in sorted(endpoints - self.seen(slug, principal))]

    def problems(self) -> list[str]:
        return ([f"LEAK {x}" for x in self.leaks] + [f"ERROR {x}" for x in self.errors]
                + [f"CROSS-TENANT WRITE {x}" for x in self.writes] + [f"UNPROBED {x}" for x in self.unprobed])

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, f"{len(problems)} problems in {self.requests} requests:\n" + "\n".join(problems[:40])


# Requests ------------------------------------------------------------------------------------------------------


@dataclass
class Probe:
    method: str
    path: str
    endpoint: str
    rule: str
    body: list[tuple[str, str]] | None = None
    json_body: dict | None = None
    headers: dict = field(default_factory=dict)


def _kind(rule: str, name: str) -> str | None:
    if name == "token":
        return "reset"
    if name == "parent_id":
        return "exception" if rule.startswith("/exceptions/") else "risk"
    return PARAM_KINDS.get(name)


def _fill(rule: str, ids: Seeded, variant: int = 0) -> str:
    """The rule's path with `ids`' ids (the `variant`-th of each kind; a random UUID for a kind it has none of)."""
    def one(match: re.Match) -> str:
        name = match.group(1)
        if name == "fmt":
            return ("csv", "json")[variant % 2]
        kind = _kind(rule, name)
        choices = ids.ids.get(kind) or [str(uuid.uuid4())]
        return choices[variant % len(choices)]
    return re.sub(r"<(?:\w+:)?(\w+)>", one, rule)


def _variants(rule: str, seeded: Seeded, limit: int) -> int:
    kinds = [_kind(rule, name) for name in re.findall(r"<(?:\w+:)?(\w+)>", rule)]
    counts = [len(seeded.ids.get(k) or [1]) for k in kinds if k] + [2 if "<fmt>" in rule else 1]
    return min(max(counts), limit)


def _form(rule: str, endpoint: str, view, own: Seeded, other: Seeded) -> list[tuple[str, str]]:
    """Every field a form might have: ids of the other tenant in the id-looking ones, plain values elsewhere."""
    names = set(handler_fields(view)) | set(FIELD_KINDS) | set(FIELD_VALUES) | set(TEXT_FIELDS) | {
        "email", "parent", "starts_on", "ends_on", "review_on", "next"}
    start = date.today()
    fields = []
    for name in sorted(names):
        if name in FIELD_KINDS:
            value = other.one(FIELD_KINDS[name])
        elif name == "parent":
            value = other.one("group" if rule.startswith("/admin/groups") else "unit")
        elif name == "email":
            # Inviting the other tenant's address would store it here, and later pages would rightly show it.
            value = own.canary("email").lower() + "@example.com" if endpoint == "admin.invite" else other.emails[0]
        elif name in ("starts_on", "review_on"):
            value = start.isoformat()
        elif name == "ends_on":
            value = (start + timedelta(days=90)).isoformat()
        elif name == "next":
            value = f"/exceptions/{other.one('exception')}"
        elif name in FIELD_VALUES:
            value = FIELD_VALUES[name]
        else:
            value = "probe " + name
        fields.append((name, value))
    return fields


def _query(other: Seeded) -> dict:
    # q: part of the other tenant's canary without its prefix, so an echo of the query is no leak but a hit is
    return {"owner": other.one("user"), "unit": other.one("unit"), "workspace": other.one("unit"),
            "q": other.tag, "next": f"/exceptions/{other.one('exception')}", "after": "0", "full": "1"}


def plan(app, own: Seeded, other: Seeded, *, only: Iterable[str] | None = None) -> tuple[list[Probe], list[Probe]]:
    """(GET probes, unsafe probes) for every rule of the map; `only` limits them to those endpoints.

    Requests with the other tenant's ids go to the own host; those to the API go once more naming
    the other tenant in X-Tenant (the API's tenant), so the own token is tried there too, and GETs
    of pages once more as htmx requests.
    """
    gets, unsafe = [], []
    spec = document(app)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.rule in EXCLUDED or (only is not None and rule.endpoint not in only):
            continue
        view = app.view_functions[rule.endpoint]
        api = rule.rule.startswith("/api/")
        # Pages also go as htmx asks for them: the named block alone, which some screens fill by other queries.
        tenant_headers = [{}, {"X-Tenant": other.tenant.slug}] if api else [{}, {"HX-Request": "true"}]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method == "GET":
                for n in range(_variants(rule.rule, own, 6)):
                    gets.append(Probe("GET", _fill(rule.rule, own, n), rule.endpoint, rule.rule))
                for n, headers in product(range(_variants(rule.rule, other, 6)), tenant_headers):
                    path = _fill(rule.rule, other, n) + "?" + urlencode(_query(other))
                    gets.append(Probe("GET", path, rule.endpoint, rule.rule, headers=headers))
                continue
            for n, headers in product(range(_variants(rule.rule, other, 3)), tenant_headers[:1 + api]):
                form = _form(rule.rule, rule.endpoint, view, own, other)
                probe = Probe(method, _fill(rule.rule, other, n), rule.endpoint, rule.rule, headers=headers)
                if api:
                    probe.json_body = _documented(spec, rule.rule, method, dict(form))
                elif rule.endpoint in UPLOADS:
                    probe.body = []
                else:
                    probe.body = form
                unsafe.append(probe)
    unsafe.sort(key=lambda p: p.endpoint in SESSION_ENDING)
    return gets, unsafe


def _documented(spec: dict, rule: str, method: str, form: dict) -> dict:
    """The JSON body the API documents for the operation (it refuses other fields), from the form's values."""
    operation = spec["paths"].get(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule), {}).get(method.lower(), {})
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    body = {}
    for name, prop in schema.get("properties", {}).items():
        value = form.get(name, "probe " + name)
        body[name] = int(value) if "integer" in str(prop.get("type")) and value.isdigit() else value
    return body or form


def _multipart(fields: list[tuple[str, str]]) -> tuple[bytes, str]:
    """A form as a browser posts one with a file (uploads read nothing else), a small clean file attached."""
    boundary = "----probe" + uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="probe.txt"\r\n'
                 f"Content-Type: text/plain\r\n\r\n".encode() + CLEAN + f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _texts(body: bytes) -> list[str]:
    texts = [body.decode("utf-8", "replace")]
    if body[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                texts += [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()]
        except zipfile.BadZipFile:
            pass
    return texts


async def _send(principal: Principal, probe: Probe) -> tuple[int, str, str]:
    """(status, everything the answer showed, everything the request carried)."""
    browser = principal.browser
    headers = dict(probe.headers)
    if principal.token:
        headers["Authorization"] = f"Bearer {principal.token}"
    data = None
    sent = probe.path + json.dumps(probe.headers)
    if probe.json_body is not None:
        data = json.dumps(probe.json_body).encode()
        headers["Content-Type"] = "application/json"
        sent += data.decode()
    elif probe.body is not None:
        data, headers["Content-Type"] = _multipart([("csrf_token", browser.csrf or "")] + probe.body)
        sent += json.dumps(probe.body)
    if data is not None:
        headers["Content-Length"] = str(len(data))
        if principal.token is None and probe.json_body is not None:
            headers["X-CSRF-Token"] = browser.csrf or ""
    response = await browser.client.open(probe.path, method=probe.method, data=data,
                                         headers=browser._headers(headers), scope_base=browser._scope())
    browser._keep(response)
    body = await response.get_data()
    texts = _texts(body)
    if match := re.search(r'name="csrf_token" value="([^"]+)"', texts[0]):
        browser.csrf = match.group(1)
    shown = "\n".join(texts) + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return response.status_code, shown, sent


def _check(findings: Findings, own: Seeded, other: Seeded, who: str, probe: Probe, status: int, shown: str,
           sent: str) -> None:
    own.sent.append(sent)
    if probe.endpoint in RECORDS:
        sent = "\n".join(own.sent)
    where = f"{own.tenant.slug} {who} {probe.method} {probe.path[:160]} -> {status}"
    if status >= 500 or "Traceback" in shown:
        findings.errors.append(where)
    if probe.endpoint.startswith("operator.") and probe.endpoint not in OPERATOR_OPEN and status < 300:
        findings.errors.append(f"{where}: an operator route answered a tenant's user")
    lowered = sent.lower()
    for canary in sorted({m.group(0) for m in other.pattern.finditer(shown)}):
        if canary.lower() not in lowered:
            findings.leaks.append(f"{where}: shows {canary} of {other.tenant.slug}")
    for kind, ids in sorted(other.ids.items()):
        for id_ in ids:
            if id_ in shown and id_ not in sent:
                at = shown.index(id_)
                findings.leaks.append(f"{where}: shows {kind} id {id_} of {other.tenant.slug} in"
                                      f" {shown[max(0, at - 120):at + 60]!r}")
    mine = {m.group(0) for m in own.pattern.finditer(shown)}
    if who not in PRINCIPALS and mine:
        findings.leaks.append(f"{where}: shows {sorted(mine)[0]} of {own.tenant.slug} to {other.tenant.slug}'s"
                              " credentials")
    elif mine - own.principal_marks:
        findings.sightings[(own.tenant.slug, probe.endpoint)].add(who)


async def _snapshot(admin: asyncpg.Connection, tenant: Tenant) -> dict[str, str]:
    """A digest of every row the tenant has, table by table."""
    tables = [r["table_name"] for r in await admin.fetch(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'tenant_id'"
        " AND table_name IN (SELECT tablename FROM pg_tables WHERE schemaname = 'public') ORDER BY 1")]
    digests = {}
    for table in tables:
        digests[table] = await admin.fetchval(
            f'SELECT md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) FROM "{table}" t'
            " WHERE tenant_id = $1", tenant.id)
    return digests


async def _fresh_second_factor(admin: asyncpg.Connection, seeded: Seeded) -> None:
    await admin.execute("UPDATE user_session SET factor_at = now() WHERE tenant_id = $1 AND factor_at IS NOT NULL",
                        seeded.tenant.id)


async def probe_tenant(site, admin: asyncpg.Connection, own: Seeded, other: Seeded, findings: Findings, *,
                       only: Iterable[str] | None = None, unsafe: bool = True) -> set[tuple[str, str]]:
    """Send the plan as each of `own`'s principals; returns the (rule, method) pairs sent."""
    gets, posts = plan(site.app, own, other, only=only)
    sent = set()
    await _fresh_second_factor(admin, own)
    await _fresh_second_factor(admin, other)
    principals = own.principals | {   # the other tenant's credentials, brought to this tenant's host
        "other's session": Principal("other's session", Browser(site.test_client(), own.host,
                                                               cookies=dict(other.principals["admin"].browser.cookies))),
        "other's token": Principal("other's token", Browser(site.test_client(), own.host),
                                   other.principals["token"].token)}
    for who, principal in principals.items():
        for probe in gets:
            if who not in PRINCIPALS and "X-Tenant" in probe.headers:
                continue   # naming the other tenant, its own credentials rightly get its own data
            status, shown, carried = await _send(principal, probe)
            findings.requests += 1
            _check(findings, own, other, who, probe, status, shown, carried)
            sent.add((probe.rule, "GET"))
    if not unsafe:
        return sent
    before = await _snapshot(admin, other.tenant)
    await _fresh_second_factor(admin, own)
    for who in PRINCIPALS:
        for probe in posts:
            principal = own.principals[who]
            status, shown, carried = await _send(principal, probe)
            findings.requests += 1
            _check(findings, own, other, who, probe, status, shown, carried)
            sent.add((probe.rule, probe.method))
            if probe.endpoint in SESSION_ENDING and who in ("admin", "requester"):
                principal.browser = await signed_in(site, admin, own, who)
    after = await _snapshot(admin, other.tenant)
    findings.writes += [f"{own.tenant.slug}'s requests changed {table} of {other.tenant.slug}"
                        for table in before if before[table] != after.get(table)]
    return sent


def coverage(app, sent: set[tuple[str, str]], only: Iterable[str] | None = None) -> list[str]:
    """Every (rule, method) of the map that was neither sent nor excluded."""
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.rule in EXCLUDED or (only is not None and rule.endpoint not in only):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if (rule.rule, method) not in sent:
                missing.append(f"{method} {rule.rule} ({rule.endpoint}): neither probed nor in EXCLUDED")
    return missing


async def run_probe(site, admin: asyncpg.Connection, tenants: Sequence[Tenant], *,
                    only: Iterable[str] | None = None, unsafe: bool = True) -> Findings:
    """Seed both tenants, probe each against the other, and return what was found.

    `site`: the app under test (`async with app.test_app() as site`); `admin`: a superuser
    connection to the same database (seeding, and digests of the other tenant's rows);
    `tenants`: two tenants. `only`: probe just these endpoints (a quicker run); `unsafe`:
    False sends GETs only. Raises nothing for what it finds: see `Findings.assert_clean`.
    """
    first, second = tenants
    only = set(only) if only is not None else None
    a, b = await seed(site, admin, first), await seed(site, admin, second)
    findings = Findings()
    sent = await probe_tenant(site, admin, a, b, findings, only=only, unsafe=unsafe)
    sent &= await probe_tenant(site, admin, b, a, findings, only=only, unsafe=unsafe)
    findings.unprobed = coverage(site.app, sent, only) if unsafe else []
    return findings
