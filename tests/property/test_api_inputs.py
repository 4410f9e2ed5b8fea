"""No request makes the JSON API answer 500: generated inputs for every operation the API documents.

A script's bugs, a fuzzer or an attacker send the API what nobody planned:
wrong types, huge or NUL-laden text, escaped lone surrogates, deep nesting,
duplicated keys, non-JSON bodies and wrong content types, ids that are not
UUIDs or belong to another tenant. Whatever arrives, the answer must be a
client error in the documented shape, or a success that matches the document;
a 500 (or an HTML traceback) is a bug in the app.

The requests are drawn with hypothesis from the served /api/openapi.json (its
paths, parameters and body field names) mixed with junk, sent with a token
holding every capability a tenant's administrator can give it. Drawing happens
first (hypothesis's @given cannot drive an async test), then each request is
sent, so a failure names the exact request but is not shrunk.

CI runs a fixed, derandomized set of examples (PROPERTY_EXAMPLES, default 25 per
operation); for a deeper local search:

    PROPERTY_EXAMPLES=500 pytest -q tests/property
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from openapi_schema_validator import OAS31Validator, oas31_format_checker

from app import access
from app.access import tokens
from app.access.catalogue import CAPABILITIES
from app.db import tenant_transaction
from tests.access.org import add_user, assign
from tests.exceptions import test_engine
from tests.exceptions.test_api import _exception_in
from tests.exceptions.test_engine import draft
from tests.views import conftest as view_fixtures

people = test_engine.people
site = view_fixtures.site

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "25"))
DRAWING = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                   suppress_health_check=list(HealthCheck))

EXTREME_NUMBERS = st.sampled_from([0, -1, 2**31, -(2**63), 2**64, 10**400, 1e308, -1e-308, 3.7, True, False])
HUGE = st.sampled_from(["x" * 100_000, "é" * 20_000, "\x00" * 50, "1" * 5000])
NASTY_TEXT = st.sampled_from(["", " ", "\x00", "a\x00b", "\x01\x1f\x7f", "\u202e", "'; DROP TABLE exception; --",
                              "%00", "%ff", "../../etc/passwd", "{{7*7}}", "<script>", "null", "NaN", "-0",
                              "2026-02-30", "9999-99-99", "0000-00-00", "00000000-0000-0000-0000-000000000000",
                              "not-a-uuid"])
TEXT = st.one_of(st.text(max_size=40), NASTY_TEXT, HUGE)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), EXTREME_NUMBERS, st.floats(allow_nan=False),
                    TEXT)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


RAW_BODIES = st.sampled_from([
    (b"", "application/json"), (b"null", "application/json"), (b"[]", "application/json"),
    (b'"text"', "application/json"), (b"12", "application/json"), (b"{", "application/json"),
    (b"\xff\xfe\x00{}", "application/json"), (b"\xed\xa0\x80", "application/json"),
    (b'{"title": "\\ud800", "to": "\\udfff", "comment": "\\u0000"}', "application/json"),
    (b'{"title": "a", "title": 7, "to": "WITHDRAWN", "to": null}', "application/json"),
    (nested(5000).encode(), "application/json"), (b"[" * 50_000, "application/json"),
    (b'{"likelihood": 1e999, "impact": -1e999, "to": 1e999}', "application/json"),
    (b'{"likelihood": NaN, "impact": Infinity}', "application/json"),
    (b"title=a&to=WITHDRAWN", "application/x-www-form-urlencoded"), (b"title=%ff%00", "application/x-www-form-urlencoded"),
    (b"--x\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n\xff\x00\r\n--x--\r\n",
     "multipart/form-data; boundary=x"),
    (b'{"title": "a"}', "text/plain"), (b'{"title": "a"}', "application/json; charset=latin-1"),
    (b'{"title": "a"}', ""), (b"<xml/>", "application/xml"),
])


def value_for(schema: dict):
    """Values a parameter's schema allows, and ones it does not."""
    allowed = st.nothing()
    items = schema.get("items", schema)
    if "enum" in items:
        allowed = st.sampled_from(items["enum"])
    elif items.get("type") == "integer" or items.get("type") == ["integer", "null"]:
        allowed = st.integers(min_value=items.get("minimum", -10), max_value=items.get("maximum", 1000))
    elif items.get("type") == "boolean":
        allowed = st.sampled_from(["true", "false", "1", "0"])
    elif items.get("format") == "uuid":
        allowed = st.uuids()
    return st.one_of(allowed, TEXT, EXTREME_NUMBERS).map(str)


def requests(spec: dict, path: str, method: str, ids: list[str], slugs: list[str]):
    """A strategy of (url, headers, body) for one documented operation."""
    item = spec["paths"][path]
    operation = item[method]
    parameters = [spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                  for p in item.get("parameters", []) + operation.get("parameters", [])]
    query = [p for p in parameters if p["in"] == "query"]
    fields = []
    if body_spec := operation.get("requestBody"):
        schema = body_spec["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        fields = sorted(schema.get("properties", {}))

    ids_in_path = st.one_of(st.sampled_from(ids), st.uuids().map(str), TEXT.filter(bool), st.text(min_size=1))
    query_pairs = st.lists(st.one_of(
        *[st.tuples(st.just(p["name"]), value_for(p["schema"])) for p in query],
        st.tuples(st.text(max_size=10), TEXT)), max_size=6)
    json_body = st.one_of(
        st.fixed_dictionaries({}, optional={f: JSON_VALUES for f in fields}),
        st.dictionaries(st.sampled_from(fields or ["x"]) | st.text(max_size=10), JSON_VALUES, max_size=6),
        JSON_VALUES,
    ).map(lambda value: (json.dumps(value).encode(), "application/json"))
    tenant_header = st.one_of(st.none(), st.sampled_from(slugs), TEXT.filter(lambda s: "\x00" not in s and
                                                                              "\n" not in s and s.isascii()))

    @st.composite
    def draw(draw):
        url = path.replace("{exception_id}", quote(draw(ids_in_path), safe=""))
        pairs = draw(query_pairs)
        if pairs:
            url += "?" + urlencode(pairs)
        headers = {}
        if (slug := draw(tenant_header)) is not None:
            headers["X-Tenant"] = slug
        body = None
        if method in ("post", "patch", "put") or draw(st.booleans()):
            body = draw(st.one_of(json_body, RAW_BODIES))
        return url, headers, body

    return draw()


def drawn(strategy) -> list:
    examples = []

    @DRAWING
    @given(strategy)
    def collect(example):
        examples.append(example)

    collect()
    return examples


@pytest.fixture
async def administrator_token(site, admin, people):
    """A token holding every capability: its owner holds every seeded role."""
    name = "Ada"
    await add_user(admin, people, name)
    for role in people.roles:
        await assign(admin, people, role, user=name)
    pool = site.app.extensions["pool"]
    async with tenant_transaction(pool, people.tenant.id) as conn:
        owner = await access.load(conn, people.users[name])
        assert owner.capabilities == set(CAPABILITIES), set(CAPABILITIES) - owner.capabilities
        token, _ = await tokens.create(conn, people.tenant.id, owner, "fuzzer", sorted(owner.capabilities), 1)
    return token


def operations(spec: dict) -> list[tuple[str, str]]:
    return [(path, method) for path, item in spec["paths"].items() for method in item if method != "parameters"]


def response_schema(spec: dict, path: str, method: str, status: int) -> dict | None:
    response = spec["paths"][path][method]["responses"].get(str(status))
    if response is None:
        return None
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response.get("content", {}).get("application/json", {}).get("schema")


async def test_no_generated_request_makes_any_api_operation_answer_500(site, pool, people, make_tenant,
                                                                     administrator_token):
    client = site.test_client()
    spec = await (await client.get("/api/openapi.json")).get_json()
    mine = await draft(pool, people)
    other = await make_tenant()
    theirs = await _exception_in(pool, other)
    ids = [str(mine), str(theirs)]
    slugs = [people.tenant.slug, other.slug]
    components = spec["components"]

    def conforms(body, schema: dict) -> None:
        OAS31Validator({**schema, "components": components}, format_checker=oas31_format_checker).validate(body)

    failures = []
    for path, method in operations(spec):
        for url, headers, body in drawn(requests(spec, path, method, ids, slugs)):
            headers = {"Host": f"{people.tenant.slug}.localhost", "Authorization": f"Bearer {administrator_token}",
                       **headers}
            kwargs = {}
            if body is not None:
                kwargs["data"] = body[0]
                if body[1]:
                    headers["Content-Type"] = body[1]
            response = await client.open(url, method=method.upper(), headers=headers, **kwargs)
            text = await response.get_data(as_text=True)
            where = f"{method.upper()} {url[:200]} {headers.get('Content-Type')} {repr(body)[:200]}"
            if response.status_code >= 500 or "Traceback" in text:
                failures.append(f"{response.status_code} for {where}")
                continue
            if path == "/api/openapi.json":
                continue
            if response.mimetype != "application/json":
                failures.append(f"{response.status_code} {response.mimetype} for {where}")
                continue
            answer = json.loads(text)
            schema = response_schema(spec, path, method, response.status_code)
            try:
                if schema is not None:
                    conforms(answer, schema)
                elif response.status_code >= 400:  # undocumented status: still the error shape
                    conforms(answer, {"$ref": "#/components/schemas/" + ("Problems" if "problems" in answer
                                                                          else "Error")})
                else:
                    failures.append(f"undocumented {response.status_code} for {where}")
            except Exception as error:  # noqa: BLE001 - collected so one run names every drift
                failures.append(f"{response.status_code} off the document ({str(error)[:200]}) for {where}")
    assert not failures, "\n".join(failures[:30])
