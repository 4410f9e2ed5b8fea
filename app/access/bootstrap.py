"""Bootstrapping from the command line: a first user with a role, an API token for a script.

Both run on an administrator connection (the operator's or a deploy script's)
and are recorded in the tenant's chain with actor system:cli. An administrator
is not held by row-level security, so every query here names its tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from app.access import load
from app.access.tokens import TokenError, create
from app.accounts import resets
from app.audit import AuditAction, Pii, Target, record
from app.audit.events import system_actor
from app.config import Settings
from app.db import set_tenant
from app.tenants import Tenant, tenant_by_slug

ACTOR = system_actor("cli")


class BootstrapError(ValueError):
    pass


@dataclass(frozen=True)
class InviteLink:
    url: str
    valid_hours: int


def tenant_base_url(settings: Settings, slug: str) -> str:
    """Where a tenant's pages are: plain HTTP on a local *.localhost, HTTPS on a real domain."""
    if settings.base_domain == "localhost":
        return f"http://{slug}.localhost:{settings.port}"
    return f"https://{slug}.{settings.base_domain}"


async def _tenant(conn: asyncpg.Connection, slug: str) -> Tenant:
    tenant = await tenant_by_slug(conn, slug.strip().lower())
    if tenant is None:
        raise BootstrapError(f"there is no tenant {slug!r}")
    return tenant


async def add_user(conn: asyncpg.Connection, settings: Settings, slug: str, email: str, name: str | None,
                   role_name: str) -> InviteLink:
    email = email.strip()
    name = (name or email.split("@")[0]).strip()
    tenant = await _tenant(conn, slug)
    async with conn.transaction():
        await set_tenant(conn, tenant.id)
        role = await conn.fetchrow(
            "SELECT id, name FROM role WHERE tenant_id = $1 AND (lower(name) = lower($2) OR seeded_as = $2)"
            " ORDER BY seeded_as = $2 DESC LIMIT 1", tenant.id, role_name.strip())
        if role is None:
            roles = await conn.fetchval("SELECT string_agg(name, ', ' ORDER BY name) FROM role WHERE tenant_id = $1",
                                        tenant.id)
            raise BootstrapError(f"tenant {tenant.slug} has no role {role_name!r} (it has: {roles})")
        try:
            user_id = await conn.fetchval(
                "INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, $2, $3) RETURNING id",
                tenant.id, email, name)
        except asyncpg.UniqueViolationError:
            raise BootstrapError(f"{email} is already a user of {tenant.slug}") from None
        except asyncpg.CheckViolationError:
            raise BootstrapError(f"{email!r} is not an email address, or the name is longer than 200") from None
        await record(conn, AuditAction.USER_INVITE, actor=ACTOR, target=Target("user", user_id),
                     data={"before": None, "after": {"invited": True}}, pii=Pii(email=email))
        assignment = await conn.fetchval(
            "INSERT INTO role_assignment (tenant_id, role_id, user_id) VALUES ($1, $2, $3) RETURNING id",
            tenant.id, role["id"], user_id)
        await record(conn, AuditAction.ASSIGNMENT_CREATE, actor=ACTOR, target=Target("role_assignment", assignment),
                     data={"before": None, "after": {"role": role["name"], "user": str(user_id), "within_unit": None}})
        token = await resets.issue(conn, tenant.id, user_id, minutes=resets.INVITE_MINUTES)
    return InviteLink(f"{tenant_base_url(settings, tenant.slug)}/reset/{token}", resets.INVITE_MINUTES // 60)


async def create_token(conn: asyncpg.Connection, slug: str, email: str, capabilities: list[str], name: str,
                       days: int) -> str:
    tenant = await _tenant(conn, slug)
    async with conn.transaction():
        await set_tenant(conn, tenant.id)
        user_id = await conn.fetchval(
            "SELECT id FROM app_user WHERE tenant_id = $1 AND lower(email) = lower($2) AND disabled_at IS NULL",
            tenant.id, email.strip())
        if user_id is None:
            raise BootstrapError(f"{tenant.slug} has no enabled user {email}")
        try:
            secret, token = await create(conn, tenant.id, await load(conn, user_id), name, capabilities, days)
        except TokenError as exc:
            raise BootstrapError(str(exc)) from None
        await record(conn, AuditAction.TOKEN_CREATE, actor=ACTOR, target=Target("api_token", token.id),
                     data={"before": None, "after": token.as_json()})
    return secret
