"""A tenant shaped like a municipality: nested org units, nested groups, and users reached every way."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from app.db import set_tenant
from app.tenants import Tenant


@dataclass
class Org:
    tenant: Tenant
    units: dict[str, UUID] = field(default_factory=dict)
    groups: dict[str, UUID] = field(default_factory=dict)
    roles: dict[str, UUID] = field(default_factory=dict)
    users: dict[str, UUID] = field(default_factory=dict)


async def add_unit(admin: asyncpg.Connection, org: Org, name: str, parent: str | None = None) -> UUID:
    org.units[name] = await admin.fetchval(
        "INSERT INTO org_unit (tenant_id, parent_id, name) VALUES ($1, $2, $3) RETURNING id",
        org.tenant.id, org.units.get(parent), name)
    return org.units[name]


async def add_group(admin: asyncpg.Connection, org: Org, name: str, parent: str | None = None) -> UUID:
    org.groups[name] = await admin.fetchval(
        "INSERT INTO user_group (tenant_id, parent_id, name) VALUES ($1, $2, $3) RETURNING id",
        org.tenant.id, org.groups.get(parent), name)
    return org.groups[name]


async def add_user(admin: asyncpg.Connection, org: Org, name: str, *, groups: tuple[str, ...] = (),
                   email: str | None = None) -> UUID:
    user_id = await admin.fetchval(
        "INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, $2, $3) RETURNING id",
        org.tenant.id, email or f"{name.lower()}@{org.tenant.slug}.example", name)
    for group in groups:
        await admin.execute("INSERT INTO group_member (tenant_id, group_id, user_id) VALUES ($1, $2, $3)",
                            org.tenant.id, org.groups[group], user_id)
    org.users[name] = user_id
    return user_id


async def assign(admin: asyncpg.Connection, org: Org, role: str, *, user: str | None = None,
                 group: str | None = None, within: str | None = None) -> UUID:
    return await admin.fetchval(
        "INSERT INTO role_assignment (tenant_id, role_id, user_id, group_id, within_unit_id)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id",
        org.tenant.id, org.roles[role], org.users.get(user) if user else None,
        org.groups.get(group) if group else None, org.units.get(within) if within else None)


async def municipality(admin: asyncpg.Connection, tenant: Tenant) -> Org:
    """City → District North → School A → Class A1, and School B beside School A.

    Groups: Staff → Teachers → Maths (Maths's parent is Teachers, whose parent is Staff).
    """
    org = Org(tenant)
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        org.roles = {r["seeded_as"]: r["id"] for r in await admin.fetch(
            "SELECT id, seeded_as FROM role WHERE tenant_id = $1", tenant.id)}
        await add_unit(admin, org, "City")
        await add_unit(admin, org, "District North", "City")
        await add_unit(admin, org, "School A", "District North")
        await add_unit(admin, org, "Class A1", "School A")
        await add_unit(admin, org, "School B", "District North")
        await add_group(admin, org, "Staff")
        await add_group(admin, org, "Teachers", "Staff")
        await add_group(admin, org, "Maths", "Teachers")

        await add_user(admin, org, "Direct")                       # a role of their own, tenant-wide
        await assign(admin, org, "requester", user="Direct")
        await add_user(admin, org, "Nested", groups=("Maths",))    # reached through two parent groups
        await assign(admin, org, "auditor", group="Staff")
        await add_user(admin, org, "Teacher", groups=("Teachers",))
        await add_user(admin, org, "Principal")                    # site-bound: only within School A
        await assign(admin, org, "approver", user="Principal", within="School A")
        await add_user(admin, org, "Inspector")                    # site-bound higher up: the district
        await assign(admin, org, "risk_owner", user="Inspector", within="District North")
        await add_user(admin, org, "Mixed")                        # tenant-wide and site-bound grants
        await assign(admin, org, "requester", user="Mixed")
        await assign(admin, org, "approver", user="Mixed", within="School B")
        await add_user(admin, org, "Nobody")
        await add_user(admin, org, "Gone")
        await assign(admin, org, "admin", user="Gone")
        await admin.execute("UPDATE app_user SET disabled_at = now() WHERE id = $1", org.users["Gone"])
    return org
