"""Tenants: the registry, and creating one (an administrator's act, recorded in its chain)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from app.audit import AuditAction, Target, record
from app.db import set_tenant

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class TenantError(ValueError):
    pass


@dataclass(frozen=True)
class Tenant:
    id: UUID
    slug: str
    name: str
    audit_public: bool
    suspended: bool = False


_COLUMNS = "id, slug, name, audit_public, suspended_at IS NOT NULL AS suspended"


async def tenant_by_slug(conn: asyncpg.Connection | asyncpg.Pool, slug: str) -> Tenant | None:
    """The tenant named `slug`; None for a deleted one too (app.tenant_deletion), which nothing may reach."""
    if not SLUG.match(slug or ""):
        return None
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tenant WHERE slug = $1 AND deleted_at IS NULL", slug)
    return Tenant(**row) if row else None


async def is_deleted(conn: asyncpg.Connection | asyncpg.Pool, slug: str) -> bool:
    """Whether `slug` names a deleted tenant (its slug stays taken, so it never names another)."""
    return bool(SLUG.match(slug or "")) and await conn.fetchval(
        "SELECT EXISTS (SELECT FROM tenant WHERE slug = $1 AND deleted_at IS NOT NULL)", slug)


async def public_tenants(conn: asyncpg.Connection | asyncpg.Pool) -> list[Tenant]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM tenant WHERE audit_public AND deleted_at IS NULL ORDER BY slug")
    return [Tenant(**r) for r in rows]


async def create_tenant(
    admin: asyncpg.Connection, slug: str, name: str, *, actor: str, audit_public: bool = False
) -> Tenant:
    """Create a tenant with its default roles, and record the creation as the first event of its chain.

    `admin` is an administrator or operator connection (the app role cannot create tenants).
    """
    slug = (slug or "").strip().lower()
    name = (name or "").strip()
    if not SLUG.match(slug):
        raise TenantError(
            f"slug {slug!r} must be 1-63 lower-case letters, digits or hyphens, "
            "not starting or ending with a hyphen"
        )
    if not 1 <= len(name) <= 200:
        raise TenantError("name must be 1 to 200 characters")
    async with admin.transaction():
        try:
            row = await admin.fetchrow(
                f"INSERT INTO tenant (slug, name, audit_public) VALUES ($1, $2, $3) RETURNING {_COLUMNS}",
                slug, name, audit_public,
            )
        except asyncpg.UniqueViolationError:
            raise TenantError(f"a tenant with slug {slug!r} already exists") from None
        tenant = Tenant(**row)
        await set_tenant(admin, tenant.id)
        await record(
            admin,
            AuditAction.TENANT_CREATE,
            actor=actor,
            target=Target("tenant", str(tenant.id)),
            data={"slug": slug, "name": name, "audit_public": audit_public},
        )
        await admin.execute("SELECT seed_default_roles($1), seed_exception_transitions($1)", tenant.id)
    return tenant
