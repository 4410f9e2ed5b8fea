"""Groups: made, renamed, moved under another group, deleted, and their members."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from app.access.admin import Admin, Refused, an_admin_remains, assignments, people, serialise, text, trees
from app.audit import AuditAction


async def tree(conn: asyncpg.Connection) -> trees.Tree:
    return trees.build([dict(r) for r in await conn.fetch("SELECT id, name, parent_id, description FROM user_group")])


async def find(conn: asyncpg.Connection, group_id: UUID | None) -> tuple[trees.Tree, trees.Node]:
    groups = await tree(conn)
    if (node := groups.get(group_id)) is None:
        raise Refused("There is no such group.", 404)
    return groups, node


async def members(conn: asyncpg.Connection, group_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT u.id, u.email, u.display_name, u.disabled_at IS NOT NULL AS disabled"
        "  FROM group_member m JOIN app_user u ON u.id = m.user_id WHERE m.group_id = $1 ORDER BY lower(u.email)",
        group_id)


def _state(name: str, description: str, parent: trees.Node | None) -> dict:
    return {"name": name, "description": description,
            "parent_id": str(parent.id) if parent else None, "parent": parent.label if parent else None}


async def save(conn: asyncpg.Connection, by: Admin, group_id: UUID | None, name: str, description: str,
               parent_id: UUID | None) -> UUID:
    """Make a group (group_id None), or change its name, description and parent."""
    name, description = text(name, "group's name", 200), text(description, "description", 1000, required=False)
    await serialise(conn)
    groups, node = await find(conn, group_id) if group_id else (await tree(conn), None)
    parent = groups.parent(parent_id, "group")
    try:
        if node is None:
            group_id = await conn.fetchval(
                "INSERT INTO user_group (tenant_id, name, description, parent_id) VALUES ($1, $2, $3, $4)"
                " RETURNING id", by.tenant_id, name, description, parent_id)
        else:
            await conn.execute("UPDATE user_group SET name = $2, description = $3, parent_id = $4 WHERE id = $1",
                               group_id, name, description, parent_id)
    except asyncpg.UniqueViolationError:
        raise Refused(f"There is already a group named “{name}”.", 409) from None
    except asyncpg.CheckViolationError as error:
        raise trees.loop_refused(error, "Group", name, parent) from None
    after = _state(name, description, parent)
    if node is None:
        await by.record(conn, AuditAction.GROUP_CREATE, ("group", group_id), None, after)
    else:
        await an_admin_remains(conn)  # a moved group's members leave the roles of its old parents
        before = _state(node.name, node.description, groups.get(node.parent_id))
        await by.record(conn, AuditAction.GROUP_UPDATE, ("group", group_id), before, after)
    return group_id


async def delete(conn: asyncpg.Connection, by: Admin, group_id: UUID | None) -> None:
    """Delete a group without groups under it; its memberships and assignments go with it."""
    await serialise(conn)
    groups, node = await find(conn, group_id)
    if node.children:
        raise Refused(f"“{node.name}” has groups under it ({', '.join(c.name for c in node.children)}). "
                      "Move or delete those first.", 409)
    before = {**_state(node.name, node.description, groups.get(node.parent_id)),
              "members": [str(m["id"]) for m in await members(conn, node.id)],
              "roles": [a.as_json() for a in await assignments.every(conn, group_id=node.id)]}
    await conn.execute("DELETE FROM user_group WHERE id = $1", node.id)
    await an_admin_remains(conn)
    await by.record(conn, AuditAction.GROUP_DELETE, ("group", node.id), before, None)


async def add_member(conn: asyncpg.Connection, by: Admin, group_id: UUID | None, user_id: UUID | None) -> None:
    _, node = await find(conn, group_id)
    await people.find(conn, user_id)
    added = await conn.fetchval(
        "INSERT INTO group_member (tenant_id, group_id, user_id) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING user_id", by.tenant_id, node.id, user_id)
    if added:
        await by.record(conn, AuditAction.GROUP_MEMBER_ADD, ("group", node.id), None,
                        {"group": node.name, "user": str(user_id)})


async def remove_member(conn: asyncpg.Connection, by: Admin, group_id: UUID | None, user_id: UUID | None) -> None:
    await serialise(conn)
    _, node = await find(conn, group_id)
    removed = await conn.fetchval("DELETE FROM group_member WHERE group_id = $1 AND user_id = $2 RETURNING user_id",
                                  node.id, user_id)
    if removed:
        await an_admin_remains(conn)
        await by.record(conn, AuditAction.GROUP_MEMBER_REMOVE, ("group", node.id),
                        {"group": node.name, "user": str(user_id)}, None)
