"""A tenant full of canaries, for the cross-tenant probe (probe.py): data of every kind the app shows, and its users.

Every free-text field holds `CANARY-<tag>-<field>-<hex>`, the tag being the tenant's;
`Seeded.pattern` finds any of them in an answer, whatever the case (addresses are
lower-cased). Data is written the ways the app writes it: services for exceptions,
their transitions, comments and attestations, and risks; the app's own upload for
evidence (encrypted, scanned); the export job for an export archive; plain inserts,
as the other tests make them, for people, units, groups and roles.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from itertools import count

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.webauthn import Aaguid, AttestedCredentialData

from app import access, risks
from app.access import tokens
from app.access.catalogue import CAPABILITIES
from app.accounts import resets
from app.accounts.passwords import hash_password
from app.db import set_tenant, tenant_transaction
from app.exceptions import create_draft
from app.exceptions.engine import Actor, transition
from app.exceptions.govern import attest
from app.jobs.tenant_export import export_tenant
from app.tenants import Tenant
from tests.web import PASSWORD, Browser, code_at, totp_secret_from

CLEAN = b"Firewall rule export, 2026-11-01: allow 203.0.113.7 to ftp01 port 21.\n"   # nothing for the scanner
ALL_ROLES = ("admin", "requester", "approver", "risk_owner", "auditor")
_addresses = count(1)   # sign-ins are throttled per address: each browser comes from its own, in a range of its own


@dataclass
class Principal:
    name: str
    browser: Browser
    token: str | None = None   # a bearer token instead of the browser's session


@dataclass
class Seeded:
    """One tenant as the probe filled it: its canary tag, ids of every kind, its principals."""

    tenant: Tenant
    tag: str
    ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    emails: list[str] = field(default_factory=list)
    principals: dict[str, Principal] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)              # what its principals have sent so far
    names: dict[str, str] = field(default_factory=dict)        # email -> display name
    principal_marks: set[str] = field(default_factory=set)     # the principals' own names and emails

    @property
    def host(self) -> str:
        return f"{self.tenant.slug}.localhost"

    def canary(self, what: str) -> str:
        return f"CANARY-{self.tag}-{what}-{secrets.token_hex(3)}"

    @property
    def pattern(self) -> re.Pattern:
        return re.compile(rf"CANARY-{self.tag}-[a-z_]+-[0-9a-f]+", re.I)

    def one(self, kind: str) -> str:
        return (self.ids.get(kind) or [str(uuid.uuid4())])[0]


async def seed(site, admin: asyncpg.Connection, tenant: Tenant) -> Seeded:
    """Fill `tenant` with canary-bearing data of every kind and sign in its principals."""
    seeded = Seeded(tenant, secrets.token_hex(4))
    people = await _people(admin, seeded)
    await _exceptions_and_risk(site.app.extensions["pool"], seeded, people)
    administrator = await _browser(site, seeded, people["admin_email"], totp=True)
    await _through_the_app(site, administrator, seeded)
    token = await _token_passkey_and_reset(site.app.extensions["pool"], seeded, people)
    await _collect_ids(admin, seeded)
    seeded.principals = {
        "admin": Principal("admin", administrator),
        "requester": Principal("requester", await _browser(site, seeded, people["requester_email"])),
        "anonymous": Principal("anonymous", await _browser(site, seeded, None)),
        "token": Principal("token", Browser(site.test_client(), seeded.host), token),
    }
    seeded.ids["session"] = [str(r["id"]) for r in await admin.fetch(
        "SELECT id FROM user_session WHERE tenant_id = $1", tenant.id)]
    return seeded


async def signed_in(site, admin: asyncpg.Connection, seeded: Seeded, kind: str) -> Browser:
    """A fresh principal of `kind` on a new user (an administrator: every role and TOTP)."""
    if kind == "anonymous":
        return await _browser(site, seeded, None)
    async with admin.transaction():
        await set_tenant(admin, seeded.tenant.id)
        if kind == "admin":
            await _user(admin, seeded, "admin", *ALL_ROLES)
        else:
            await _user(admin, seeded, "requester", "requester")
    return await _browser(site, seeded, seeded.emails[-1], totp=kind == "admin")


async def _people(admin: asyncpg.Connection, seeded: Seeded) -> dict[str, str]:
    t = seeded.tenant.id
    async with admin.transaction():
        await set_tenant(admin, t)
        unit = await admin.fetchval("INSERT INTO org_unit (tenant_id, name) VALUES ($1, $2) RETURNING id",
                                    t, seeded.canary("unit"))
        await admin.execute("INSERT INTO org_unit (tenant_id, parent_id, name) VALUES ($1, $2, $3)",
                            t, unit, seeded.canary("unit"))
        group = await admin.fetchval("INSERT INTO user_group (tenant_id, name) VALUES ($1, $2) RETURNING id",
                                     t, seeded.canary("group"))
        await admin.execute("INSERT INTO role (tenant_id, name, description) VALUES ($1, $2, $3)",
                            t, seeded.canary("role"), seeded.canary("description"))
        people = {"admin": await _user(admin, seeded, "admin", *ALL_ROLES)}
        people["admin_email"] = seeded.emails[-1]
        people["requester"] = await _user(admin, seeded, "requester", "requester")
        people["requester_email"] = seeded.emails[-1]
        people["owner"] = await _user(admin, seeded, "owner", "risk_owner")
        people["approver"] = await _user(admin, seeded, "approver", "approver")
        await admin.execute("INSERT INTO group_member (tenant_id, group_id, user_id) VALUES ($1, $2, $3)",
                            t, group, uuid.UUID(people["requester"]))
    return people


async def _user(admin: asyncpg.Connection, seeded: Seeded, label: str, *roles: str) -> str:
    """A user holding `roles`, inside the caller's tenant transaction; returns its id."""
    email = seeded.canary("email").lower() + "@example.com"
    name = seeded.names[email] = seeded.canary(label)
    user_id = await admin.fetchval(
        "INSERT INTO app_user (tenant_id, email, display_name, password_hash) VALUES ($1, $2, $3, $4) RETURNING id",
        seeded.tenant.id, email, name, hash_password(PASSWORD))
    await admin.execute(
        "INSERT INTO role_assignment (tenant_id, role_id, user_id)"
        " SELECT $1, id, $2 FROM role WHERE tenant_id = $1 AND seeded_as = ANY($3::text[])",
        seeded.tenant.id, user_id, list(roles))
    seeded.emails.append(email)
    return str(user_id)


async def _browser(site, seeded: Seeded, email: str | None, *, totp: bool = False) -> Browser:
    """A browser on the tenant's host, signed in as `email` (None: anonymous) with TOTP enrolled if asked."""
    if email is not None:  # every page greets its user by name: that is no sighting of the tenant's data
        seeded.principal_marks |= {email, seeded.names[email]}
    n = next(_addresses)
    browser = Browser(site.test_client(), seeded.host, address=f"10.77.{n // 250 % 250}.{n % 250 + 1}")
    await browser.get("/signin")
    if email is not None:
        response = await browser.post("/signin", {"email": email, "password": PASSWORD})
        assert response.status_code == 303, (email, response.status_code, browser.last_body[:300])
        if totp:
            await browser.get("/account/totp")
            enrolled = await browser.post("/account/totp", {"code": code_at(totp_secret_from(browser.last_body))})
            assert enrolled.status_code == 200, enrolled.status_code
        await browser.get("/account")
    return browser


# From DRAFT to each state: (to, who, comment?); the administrator's draft is the one evidence is added to.
PATHS = {
    "DRAFT by the administrator": [],
    "DRAFT": [],
    "UNDER_REVIEW": [("UNDER_REVIEW", "requester")],
    "RETURNED": [("UNDER_REVIEW", "requester"), ("RETURNED", "approver", "comment")],
    "ACTIVE": [("UNDER_REVIEW", "requester"), ("APPROVED", "approver", "comment"), ("ACTIVE", "system:activation")],
    "REJECTED": [("UNDER_REVIEW", "requester"), ("REJECTED", "approver", "comment")],
}


async def _exceptions_and_risk(pool: asyncpg.Pool, seeded: Seeded, people: dict[str, str]) -> None:
    t = seeded.tenant.id
    start = date.today()

    async def actor(conn, who: str) -> Actor:
        if who.startswith("system:"):
            return Actor(system=who.removeprefix("system:"))
        return Actor(await access.load(conn, uuid.UUID(people[who])), stepped_up=True)

    for state, moves in PATHS.items():
        form = {"title": seeded.canary("title"), "policy_ref": seeded.canary("policy"),
                "assets": seeded.canary("assets"), "deviation": seeded.canary("deviation"),
                "justification": seeded.canary("justification"), "likelihood": "3", "impact": "4",
                "starts_on": start.isoformat(), "ends_on": (start + timedelta(days=180)).isoformat(),
                "owner": people["owner"]}
        async with tenant_transaction(pool, t) as conn:
            requester = await actor(conn, "admin" if state.endswith("administrator") else "requester")
            exception_id = await create_draft(conn, t, requester.access, form)
            for to, who, *comment in moves:
                await transition(conn, exception_id, to, await actor(conn, who),
                                 seeded.canary(comment[0]) if comment else None)
            if state == "ACTIVE":
                await attest(conn, exception_id, await actor(conn, "owner"), seeded.canary("attestation"))
        seeded.ids["exception"].append(str(exception_id))
    async with tenant_transaction(pool, t) as conn:
        risk_id = await risks.create(conn, t, (await actor(conn, "owner")).access, {
            "title": seeded.canary("title"), "description": seeded.canary("description"), "likelihood": "3",
            "impact": "4", "owner": people["owner"], "treatment": "mitigate",
            "review_on": (start + timedelta(days=30)).isoformat()})
    seeded.ids["risk"].append(str(risk_id))


async def _through_the_app(site, browser: Browser, seeded: Seeded) -> None:
    """Evidence on the administrator's draft and on the risk, and an export archive made by its job."""
    for parent in (f"/exceptions/{seeded.ids['exception'][0]}", f"/risks/{seeded.ids['risk'][0]}"):
        content = seeded.canary("content").encode() + b"\n" + CLEAN
        await _upload(browser, parent, seeded.canary("file") + ".txt", content)
    exported = await browser.post("/admin/export")
    assert exported.status_code == 303, (exported.status_code, browser.last_body[:300])
    # The job's work itself, not run_job: its advisory lock and run record are no part of what is probed here.
    made = await export_tenant(site.app.extensions["pool"], seeded.tenant.id, datetime.now(timezone.utc),
                               site.app.config["EXCEPTAO"])
    assert made.get("exports_made") == 1, made


async def _upload(browser: Browser, parent: str, filename: str, data: bytes) -> None:
    boundary = "----probe" + secrets.token_hex(8)
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{browser.csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    response = await browser.client.post(f"{parent}/evidence", data=body, headers=browser._headers(
        {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(len(body))}),
        scope_base=browser._scope())
    browser._keep(response)
    assert response.status_code == 303, (response.status_code, (await response.get_data())[:300])


async def _token_passkey_and_reset(pool: asyncpg.Pool, seeded: Seeded, people: dict[str, str]) -> str:
    """The administrator's token with every capability (returned), a passkey of theirs, a reset link of the owner."""
    t = seeded.tenant.id
    credential_id = secrets.token_bytes(32)   # a real credential structure, made without an authenticator
    public_key = ES256.from_cryptography_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    async with tenant_transaction(pool, t) as conn:
        owner = await access.load(conn, uuid.UUID(people["admin"]))
        assert owner.capabilities == set(CAPABILITIES), set(CAPABILITIES) - owner.capabilities
        token, _ = await tokens.create(conn, t, owner, seeded.canary("token"), sorted(CAPABILITIES), 1)
        await conn.execute(
            "INSERT INTO webauthn_credential (tenant_id, user_id, credential_id, credential, name)"
            " VALUES ($1, $2, $3, $4, $5)", t, uuid.UUID(people["admin"]), credential_id,
            bytes(AttestedCredentialData.create(Aaguid.NONE, credential_id, public_key)), seeded.canary("passkey"))
        seeded.ids["reset"] = [await resets.issue(conn, t, uuid.UUID(people["owner"]))]
    return token


async def _collect_ids(admin: asyncpg.Connection, seeded: Seeded) -> None:
    for kind, table in (("user", "app_user"), ("group", "user_group"), ("role", "role"), ("unit", "org_unit"),
                        ("evidence", "evidence"), ("export", "tenant_export"), ("token", "api_token"),
                        ("passkey", "webauthn_credential"), ("assignment", "role_assignment")):
        seeded.ids[kind] = [str(r["id"]) for r in await admin.fetch(
            f"SELECT id FROM {table} WHERE tenant_id = $1 ORDER BY id", seeded.tenant.id)]
    seeded.ids["tenant"] = [str(seeded.tenant.id)]
    assert len(seeded.ids["evidence"]) == 2, "evidence uploads were refused"
