"""Org units: the tree of sites and departments; made, renamed, moved and deleted."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from app.access.admin import Admin, Refused, text, trees
from app.audit import AuditAction


async def tree(conn: asyncpg.Connection) -> trees.Tree:
    return trees.build([dict(r) for r in await conn.fetch("SELECT id, name, parent_id FROM org_unit")])


def _state(name: str, parent: trees.Node | None) -> dict:
    return {"name": name, "parent_id": str(parent.id) if parent else None, "parent": parent.label if parent else None}


async def save(conn: asyncpg.Connection, by: Admin, unit_id: UUID | None, name: str, parent_id: UUID | None) -> UUID:
    """Make an org unit (unit_id None), or rename or move it."""
    name = text(name, "unit's name", 200)
    units = await tree(conn)
    node = units.get(unit_id)
    if unit_id is not None and node is None:
        raise Refused("There is no such org unit.", 404)
    parent = units.parent(parent_id, "unit")
    try:
        if node is None:
            unit_id = await conn.fetchval("INSERT INTO org_unit (tenant_id, name, parent_id) VALUES ($1, $2, $3)"
                                          " RETURNING id", by.tenant_id, name, parent_id)
        else:
            await conn.execute("UPDATE org_unit SET name = $2, parent_id = $3 WHERE id = $1", unit_id, name, parent_id)
    except asyncpg.UniqueViolationError:
        raise Refused(f"There is already a unit named “{name}” "
                      f"{'under ' + parent.label if parent else 'at the top'}.", 409) from None
    except asyncpg.CheckViolationError as error:
        raise trees.loop_refused(error, "Unit", name, parent) from None
    if node is None:
        await by.record(conn, AuditAction.ORG_UNIT_CREATE, ("org_unit", unit_id), None, _state(name, parent))
    else:
        await by.record(conn, AuditAction.ORG_UNIT_UPDATE, ("org_unit", unit_id),
                        _state(node.name, units.get(node.parent_id)), _state(name, parent))
    return unit_id


async def delete(conn: asyncpg.Connection, by: Admin, unit_id: UUID | None) -> None:
    """Delete a unit with no units under it that no assignment is limited to."""
    units = await tree(conn)
    if (node := units.get(unit_id)) is None:
        raise Refused("There is no such org unit.", 404)
    if node.children:
        raise Refused(f"“{node.label}” has units under it ({', '.join(c.name for c in node.children)}). "
                      "Move or delete those first.", 409)
    used = await conn.fetchval("SELECT count(*) FROM role_assignment WHERE within_unit_id = $1", node.id)
    if used:
        raise Refused(f"“{node.label}” limits {used} role assignment{'s' * (used > 1)}. Remove those first.", 409)
    # Tokens made in the unit's scope cannot work any more (no one holds a role there) and go with it.
    tokens = await conn.fetchval("SELECT count(*) FROM api_token WHERE scope_unit_id = $1", node.id)
    try:
        await conn.execute("DELETE FROM org_unit WHERE id = $1", node.id)
    except asyncpg.ForeignKeyViolationError:
        raise Refused(f"“{node.label}” is still referred to by data filed under it, so it is kept.", 409) from None
    await by.record(conn, AuditAction.ORG_UNIT_DELETE, ("org_unit", node.id),
                    {**_state(node.name, units.get(node.parent_id)), "api_tokens": tokens}, None)
