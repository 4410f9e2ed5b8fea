"""No form post makes any screen answer 500: generated fields for every POST route in the URL map.

Signed in as a tenant administrator (every seeded role, TOTP enrolled, a valid
CSRF token), each POST route is sent its real field names (read from its
handler's source and the templates) mixed with junk fields, missing fields,
overlong values, NUL bytes, control characters, non-UTF-8 bytes, invalid dates
and numbers, in urlencoded and multipart bodies, with this tenant's, another
tenant's and random UUIDs in the path. The answer may refuse, but never with a
500 or a traceback. Routes are read from the URL map, so a new POST route is
covered without anyone listing it; /api/ routes are left to test_api_inputs.py,
which speaks their JSON.

Drawing is derandomized (FORM_EXAMPLES per route, default 6); for a deeper
local search: FORM_EXAMPLES=100 pytest -q tests/property
"""

from __future__ import annotations

import inspect
import os
import re
import uuid
from pathlib import Path
from urllib.parse import quote_from_bytes

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.exceptions.test_api import _exception_in
from tests.exceptions.test_engine import Org, draft
from tests.views import conftest as view_fixtures
from tests.web import Browser, code_at, make_user, totp_secret_from
from tests.views.test_signin import sign_in
from tests.views.test_tokens import give_role

site = view_fixtures.site

EXAMPLES = int(os.environ.get("FORM_EXAMPLES", "6"))
DRAWING = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                   suppress_health_check=list(HealthCheck))
TEMPLATES = Path(__file__).resolve().parents[2] / "app" / "templates"
# Posts after which the browser's session is gone (or its second factor): the next example gets a fresh one.
SESSION_ENDING = {"auth.signout", "account.revoke_all_sessions", "account.revoke_session", "account.totp_remove",
                  "operator.signout", "auth.switch_scope", "passkeys.remove", "admin.disable"}

VALUES = st.one_of(
    st.text(max_size=30).map(str.encode),
    st.binary(max_size=30),
    st.sampled_from([b"", b"\x00", b"a\x00b", b"\x01\x1b[31m\x7f", b"\xff\xfe", b"\xed\xa0\x80", b"\xc3",
                     b"x" * 100_000, b"2026-02-30", b"0000-00-00", b"99999-01-01", b"-1", b"0", b"1e999", b"NaN",
                     b"99999999999999999999999", b"3.7", b"on", b"true", b"not-a-uuid",
                     b"00000000-0000-0000-0000-000000000000", b"<script>", b"' OR 1=1 --"]),
)


# Every real field of a route set to each of these at once, whatever hypothesis draws besides.
EVERY_FIELD = [b"a\x00b", b"x" * 100_000, b"\xff\xfe\xc3", b"\x01\x1b\x7f", b"2026-02-30", b"99999999999999999999999",
               b"-1", b""]


def template_fields() -> list[str]:
    names = set()
    for page in TEMPLATES.rglob("*.html"):
        names |= set(re.findall(r'name="([\w.\-]+)"', page.read_text()))
    return sorted(names - {"csrf_token"})


def handler_fields(view) -> list[str]:
    source = inspect.getsource(inspect.unwrap(view))
    return sorted(set(re.findall(r'''(?:form|files|args)\s*(?:\.get|\.getlist|\.get_all)?\s*[(\[]\s*["']([\w.\-]+)["']''',
                                 source)) - {"csrf_token"})


def post_routes(app) -> list:
    return sorted((rule for rule in app.url_map.iter_rules()
                   if "POST" in rule.methods and not rule.rule.startswith("/api/")), key=lambda r: r.rule)


def bodies(names: list[str], everywhere: list[str], ids: list[str]):
    """(fields, multipart?, path ids) for one route."""
    name = st.one_of(st.sampled_from(names or everywhere), st.sampled_from(everywhere), st.text(max_size=8))
    fields = st.lists(st.tuples(name.map(str.encode), st.one_of(VALUES, st.sampled_from(ids).map(str.encode))),
                      max_size=8)
    path_id = st.one_of(st.sampled_from(ids), st.uuids().map(str))
    return st.tuples(fields, st.booleans(), path_id)


def drawn(strategy) -> list:
    examples = []

    @DRAWING
    @given(strategy)
    def collect(example):
        examples.append(example)

    collect()
    return examples


def encoded(csrf: str, fields: list[tuple[bytes, bytes]], multipart: bool) -> tuple[bytes, str]:
    fields = [(b"csrf_token", csrf.encode())] + fields
    if not multipart:
        return (b"&".join(quote_from_bytes(k).encode() + b"=" + quote_from_bytes(v).encode() for k, v in fields),
                "application/x-www-form-urlencoded")
    boundary = b"propertyboundary"
    parts = [b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + k.replace(b'"', b"") + b"\"\r\n\r\n"
             + v.replace(b"--" + boundary, b"") + b"\r\n" for k, v in fields]
    return b"".join(parts) + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


async def administrator(site, admin, tenant, n: int = 1):
    """A fresh administrator with TOTP, from its own address (sign-ins are throttled per address)."""
    email = await make_user(admin, tenant)
    browser = Browser(site.test_client(), f"{tenant.slug}.localhost", address=f"198.51.100.{n % 250 + 1}")
    await sign_in(browser, email)
    await browser.get("/account/totp")
    assert (await browser.post("/account/totp", {"code": code_at(totp_secret_from(browser.last_body))})
            ).status_code == 200
    for role in await admin.fetch("SELECT seeded_as FROM role WHERE tenant_id = $1 AND seeded_as IS NOT NULL",
                                  tenant.id):
        await give_role(admin, tenant, email, role["seeded_as"])
    await browser.get("/account")
    return browser


async def test_no_generated_form_makes_any_post_route_answer_500(site, admin, pool, tenant, make_tenant):
    from tests.access.org import add_user, assign

    org = Org(tenant)
    org.roles = {r["seeded_as"]: r["id"] for r in await admin.fetch(
        "SELECT id, seeded_as FROM role WHERE tenant_id = $1", tenant.id)}
    async with admin.transaction():
        await admin.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant.id))
        for name, role in (("Rhea", "requester"), ("Olga", "risk_owner")):
            await add_user(admin, org, name)
            await assign(admin, org, role, user=name)
    mine = await draft(pool, org)
    other = await make_tenant()
    theirs = await _exception_in(pool, other)
    ids = [str(mine), str(theirs), str(uuid.uuid4())]
    everywhere = template_fields()
    browser = await administrator(site, admin, tenant)

    failures, routes, fresh = [], post_routes(site.app), 1
    assert len(routes) > 40  # the map was read, not an empty list
    for rule in routes:
        names = handler_fields(site.app.view_functions[rule.endpoint])
        # A handler that passes its form on (to a validator elsewhere) names no field itself: send them all.
        fixed = [([(n.encode(), value) for n in names or everywhere], multipart, ids[0])
                 for value in EVERY_FIELD for multipart in (False, True)]
        for fields, multipart, path_id in fixed + drawn(bodies(names, everywhere, ids)):
            path = re.sub(r"<uuid:[^>]+>", path_id, rule.rule)
            path = re.sub(r"<[^>]+>", "x" * 40, path)
            data, content_type = encoded(browser.csrf or "", fields, multipart)
            response = await browser.client.post(path, data=data, headers=browser._headers(
                {"Content-Type": content_type}), scope_base=browser._scope())
            browser._keep(response)
            text = (await response.get_data()).decode(errors="replace")
            if match := re.search(r'name="csrf_token" value="([^"]+)"', text):
                browser.csrf = match.group(1)
            if response.status_code >= 500 or "Traceback" in text:
                failures.append(f"{response.status_code} for POST {path} {content_type[:9]} {fields!r:.300}")
            if rule.endpoint in SESSION_ENDING:
                fresh += 1
                browser = await administrator(site, admin, tenant, fresh)
    assert not failures, "\n".join(failures[:30])
