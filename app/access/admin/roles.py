"""Roles: named sets of capabilities from the catalogue, made, edited and deleted."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from app.access.admin import Admin, Refused, an_admin_remains, serialise, text
from app.access.catalogue import unknown
from app.audit import AuditAction


@dataclass(frozen=True)
class Role:
    id: UUID
    name: str
    description: str
    capabilities: list[str]
    assigned: int                   # how many assignments give it

    def as_json(self) -> dict:
        return {"name": self.name, "description": self.description, "capabilities": sorted(self.capabilities)}


_ROLES = """
SELECT r.id, r.name, r.description,
       array(SELECT c.capability FROM role_capability c WHERE c.role_id = r.id ORDER BY 1) AS capabilities,
       (SELECT count(*) FROM role_assignment a WHERE a.role_id = r.id)::int AS assigned
  FROM role r
"""


async def every(conn: asyncpg.Connection) -> list[Role]:
    return [Role(**r) for r in await conn.fetch(_ROLES + " ORDER BY lower(r.name)")]


async def find(conn: asyncpg.Connection, role_id: UUID | None) -> Role:
    row = await conn.fetchrow(_ROLES + " WHERE r.id = $1", role_id) if role_id else None
    if row is None:
        raise Refused("There is no such role.", 404)
    return Role(**row)


async def save(conn: asyncpg.Connection, by: Admin, role_id: UUID | None, name: str, description: str,
               capabilities: list[str]) -> UUID:
    """Make a role (role_id None), or change its name, description and capabilities."""
    name, description = text(name, "role's name", 100), text(description, "description", 1000, required=False)
    if bad := unknown(capabilities):
        raise Refused(f"Unknown capabilities: {', '.join(bad)}.")
    await serialise(conn)
    before = await find(conn, role_id) if role_id else None
    try:
        if before is None:
            role_id = await conn.fetchval("INSERT INTO role (tenant_id, name, description) VALUES ($1, $2, $3)"
                                          " RETURNING id", by.tenant_id, name, description)
        else:
            await conn.execute("UPDATE role SET name = $2, description = $3 WHERE id = $1", role_id, name, description)
    except asyncpg.UniqueViolationError:
        raise Refused(f"There is already a role named “{name}”.", 409) from None
    await conn.execute("DELETE FROM role_capability WHERE role_id = $1", role_id)
    await conn.execute("INSERT INTO role_capability (tenant_id, role_id, capability)"
                       " SELECT $1, $2, unnest($3::text[])", by.tenant_id, role_id, sorted(set(capabilities)))
    after = await find(conn, role_id)
    if before is None:
        await by.record(conn, AuditAction.ROLE_CREATE, ("role", role_id), None, after.as_json())
    else:
        await an_admin_remains(conn)
        await by.record(conn, AuditAction.ROLE_UPDATE, ("role", role_id), before.as_json(), after.as_json())
    return role_id


async def delete(conn: asyncpg.Connection, by: Admin, role_id: UUID | None) -> None:
    """Delete a role nobody holds."""
    doomed = await find(conn, role_id)
    if doomed.assigned:
        raise Refused(f"“{doomed.name}” is still assigned {doomed.assigned} time{'s' * (doomed.assigned > 1)}. "
                      "Remove its assignments first.", 409)
    try:
        await conn.execute("DELETE FROM role WHERE id = $1", doomed.id)
    except asyncpg.ForeignKeyViolationError:  # assigned meanwhile
        raise Refused(f"“{doomed.name}” was just assigned. Remove its assignments first.", 409) from None
    await by.record(conn, AuditAction.ROLE_DELETE, ("role", doomed.id), doomed.as_json(), None)
