"""Users, as an administrator sees them: invite, disable, enable."""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from app.access.admin import Admin, Refused, an_admin_remains, serialise, text
from app.accounts import resets, sessions
from app.audit import AuditAction, Pii

# app_user's check, and none of the characters that would make one address several in a mail header.
EMAIL = re.compile(r'^[^@\s,;<>()\[\]"\\]+@[^@\s,;<>()\[\]"\\]+$')


@dataclass(frozen=True)
class Person:
    id: UUID
    email: str
    display_name: str
    disabled: bool
    invited: bool                   # has not chosen a password yet
    groups: list[str]               # the groups they are in themselves
    roles: list[str]                # given to them directly, "Approver (within School A)"


async def every(conn: asyncpg.Connection) -> list[Person]:
    rows = await conn.fetch("""
        SELECT u.id, u.email, u.display_name, u.disabled_at IS NOT NULL AS disabled,
               u.password_hash IS NULL AS invited,
               array(SELECT g.name FROM group_member m JOIN user_group g ON g.id = m.group_id
                      WHERE m.user_id = u.id ORDER BY lower(g.name)) AS groups,
               array(SELECT r.name || coalesce(' (within ' || o.name || ')', '')
                       FROM role_assignment a JOIN role r ON r.id = a.role_id
                       LEFT JOIN org_unit o ON o.id = a.within_unit_id
                      WHERE a.user_id = u.id ORDER BY lower(r.name), o.name NULLS FIRST) AS roles
          FROM app_user u ORDER BY lower(u.email)""")
    return [Person(**r) for r in rows]


async def find(conn: asyncpg.Connection, user_id: UUID | None) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT id, email, display_name, disabled_at IS NOT NULL AS disabled"
                              " FROM app_user WHERE id = $1", user_id) if user_id else None
    if row is None:
        raise Refused("There is no such user.", 404)
    return row


async def invite(conn: asyncpg.Connection, by: Admin, email: str, display_name: str) -> tuple[UUID, str]:
    """A new user without a password, and the token of the link with which they choose one."""
    email = text(email, "email address", 254)
    if not EMAIL.match(email):
        raise Refused(f"“{email}” is not an email address.")
    display_name = text(display_name, "name", 200)
    if await conn.fetchval("SELECT EXISTS (SELECT FROM app_user WHERE lower(email) = lower($1))", email):
        raise Refused(f"{email} is already a user of this workspace.", 409)
    try:
        user_id = await conn.fetchval(
            "INSERT INTO app_user (tenant_id, email, display_name) VALUES ($1, $2, $3) RETURNING id",
            by.tenant_id, email, display_name)
    except asyncpg.UniqueViolationError:  # invited by someone else meanwhile
        raise Refused(f"{email} is already a user of this workspace.", 409) from None
    # No name in the event: the chain cannot forget one; the email is in audit_pii, which can.
    await by.record(conn, AuditAction.USER_INVITE, ("user", user_id), None, {"invited": True}, pii=Pii(email=email))
    return user_id, await resets.issue(conn, by.tenant_id, user_id, minutes=resets.INVITE_MINUTES)


async def disable(conn: asyncpg.Connection, by: Admin, user_id: UUID | None) -> None:
    """Disabled, signed out everywhere, its API tokens and password links dead."""
    if user_id == by.user_id:
        raise Refused("You cannot disable your own account. Ask another administrator.", 409)
    await serialise(conn)
    user = await find(conn, user_id)
    if user["disabled"]:
        return
    await conn.execute("UPDATE app_user SET disabled_at = now() WHERE id = $1", user_id)
    ended = await sessions.revoke_all(conn, user_id)
    tokens = int((await conn.execute("UPDATE api_token SET revoked_at = now()"
                                      " WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()",
                                      user_id)).split()[-1])
    await conn.execute("UPDATE password_reset SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", user_id)
    await an_admin_remains(conn)
    await by.record(conn, AuditAction.USER_DISABLE, ("user", user_id),
                    {"disabled": False, "live_sessions": ended, "live_api_tokens": tokens},
                    {"disabled": True, "live_sessions": 0, "live_api_tokens": 0}, pii=Pii(email=user["email"]))


async def enable(conn: asyncpg.Connection, by: Admin, user_id: UUID | None) -> None:
    """Enabled again; the sessions and API tokens revoked when it was disabled stay revoked."""
    user = await find(conn, user_id)
    if not user["disabled"]:
        return
    await conn.execute("UPDATE app_user SET disabled_at = NULL WHERE id = $1", user_id)
    await by.record(conn, AuditAction.USER_ENABLE, ("user", user_id), {"disabled": True}, {"disabled": False},
                    pii=Pii(email=user["email"]))
