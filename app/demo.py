"""First-run demo data for the embedded default: tenant `acme` and its demo users."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from argon2 import PasswordHasher

from app.audit import AuditAction, Target, record
from app.audit.events import system_actor
from app.tenants import create_tenant, tenant_by_slug

DEMO_SLUG = "acme"
DEMO_USERS = (  # email, name, default role
    ("admin@acme.example", "Ada Admin", "admin"),
    ("requester@acme.example", "Rhea Requester", "requester"),
    ("approver@acme.example", "Abel Approver", "approver"),
)


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str


async def seed_demo(admin_url: str, data_dir: Path) -> list[DemoLogin] | None:
    """Create the demo tenant and users unless they exist; return the new logins.

    The passwords are random, shown once, and kept in data_dir (mode 0600) for
    a local demo; only their Argon2id hashes are in the database.
    """
    conn = await asyncpg.connect(admin_url)
    try:
        if await tenant_by_slug(conn, DEMO_SLUG):
            return None
        actor = system_actor("demo")
        tenant = await create_tenant(conn, DEMO_SLUG, "Acme Corporation (demo)", actor=actor, audit_public=True)
        hasher = PasswordHasher()
        logins = []
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant.id))
            for email, name, role in DEMO_USERS:
                password = secrets.token_urlsafe(12)
                user_id = await conn.fetchval(
                    "INSERT INTO app_user (tenant_id, email, display_name, password_hash)"
                    " VALUES ($1, $2, $3, $4) RETURNING id",
                    tenant.id, email, name, hasher.hash(password),
                )
                await record(conn, AuditAction.USER_CREATE, actor=actor, target=Target("user", str(user_id)))
                role_id, role_name = await conn.fetchrow(
                    "SELECT id, name FROM role WHERE tenant_id = $1 AND seeded_as = $2", tenant.id, role)
                assignment = await conn.fetchval(
                    "INSERT INTO role_assignment (tenant_id, role_id, user_id) VALUES ($1, $2, $3) RETURNING id",
                    tenant.id, role_id, user_id)
                await record(conn, AuditAction.ASSIGNMENT_CREATE, actor=actor,
                             target=Target("role_assignment", str(assignment)),
                             data={"before": None, "after": {"role": role_name, "user": str(user_id),
                                                             "within_unit": None}})
                logins.append(DemoLogin(email, password))
    finally:
        await conn.close()
    credentials = credentials_file(data_dir)
    credentials.parent.mkdir(parents=True, exist_ok=True)
    credentials.touch(mode=0o600)
    credentials.write_text("".join(f"{l.email} {l.password}\n" for l in logins))
    return logins


def credentials_file(data_dir: Path) -> Path:
    return Path(data_dir) / "demo-credentials.txt"
