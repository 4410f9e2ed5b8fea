"""Role assignments: a role given to a user or a group, in the whole organisation or within an org unit."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from app.access.admin import Admin, Refused, an_admin_remains, parse_id, people, roles, serialise, units
from app.audit import AuditAction


@dataclass(frozen=True)
class Assignment:
    id: UUID
    role_id: UUID
    role: str
    user_id: UUID | None
    user: str | None                # "Name <email>", for the page only
    group_id: UUID | None
    group: str | None
    within_unit_id: UUID | None
    within: str | None              # the unit's path from the root

    def as_json(self) -> dict:
        """What the audit chain keeps: the user's id, never their email."""
        holder = {"user": str(self.user_id)} if self.user_id else {"group": self.group}
        return {"role": self.role, **holder, "within_unit": self.within}


async def every(conn: asyncpg.Connection, *, group_id: UUID | None = None,
                assignment_id: UUID | None = None) -> list[Assignment]:
    rows = await conn.fetch("""
        SELECT a.id, a.role_id, r.name AS role, a.user_id, u.display_name || ' <' || u.email || '>' AS "user",
               a.group_id, g.name AS "group", a.within_unit_id
          FROM role_assignment a JOIN role r ON r.id = a.role_id
          LEFT JOIN app_user u ON u.id = a.user_id
          LEFT JOIN user_group g ON g.id = a.group_id
         WHERE ($1::uuid IS NULL OR a.group_id = $1) AND ($2::uuid IS NULL OR a.id = $2)
         ORDER BY lower(r.name), a.user_id IS NULL, lower(coalesce(u.email, g.name)), a.within_unit_id NULLS FIRST""",
        group_id, assignment_id)
    within = {unit.id: unit.label for unit in (await units.tree(conn)).nodes}  # "City / School A", not just "School A"
    return [Assignment(**r, within=within.get(r["within_unit_id"])) for r in rows]


async def assign(conn: asyncpg.Connection, by: Admin, role_id: UUID | None, holder: str,
                 within_unit_id: UUID | None) -> UUID:
    """Give a role to "user:<id>" or "group:<id>", in the whole organisation or within one org unit."""
    kind, _, holder_id = holder.partition(":")
    if kind not in ("user", "group"):
        raise Refused("Choose a user or a group to give the role to.")
    holder_id = parse_id(holder_id, kind)
    await roles.find(conn, role_id)
    if kind == "user":
        await people.find(conn, holder_id)
    elif not await conn.fetchval("SELECT EXISTS (SELECT FROM user_group WHERE id = $1)", holder_id):
        raise Refused("There is no such group.", 404)
    if within_unit_id and (await units.tree(conn)).get(within_unit_id) is None:
        raise Refused("There is no such org unit.", 404)
    try:
        assignment_id = await conn.fetchval(
            "INSERT INTO role_assignment (tenant_id, role_id, user_id, group_id, within_unit_id)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id", by.tenant_id, role_id,
            holder_id if kind == "user" else None, holder_id if kind == "group" else None, within_unit_id)
    except asyncpg.UniqueViolationError:
        raise Refused("That role is already given there, in that scope.", 409) from None
    (made,) = await every(conn, assignment_id=assignment_id)
    await by.record(conn, AuditAction.ASSIGNMENT_CREATE, ("role_assignment", assignment_id), None, made.as_json())
    return assignment_id


async def unassign(conn: asyncpg.Connection, by: Admin, assignment_id: UUID | None) -> None:
    await serialise(conn)
    found = await every(conn, assignment_id=assignment_id) if assignment_id else []
    if not found:
        raise Refused("There is no such assignment.", 404)
    await conn.execute("DELETE FROM role_assignment WHERE id = $1", assignment_id)
    await an_admin_remains(conn)
    await by.record(conn, AuditAction.ASSIGNMENT_DELETE, ("role_assignment", assignment_id), found[0].as_json(), None)
