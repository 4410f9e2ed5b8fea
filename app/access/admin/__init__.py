"""Administering a tenant's access: users, groups, roles, assignments and org units (one module each).

Every change runs in the caller's tenant transaction and records itself there
with its state before and after. A change that could take tenant.admin away
from somebody first takes the tenant's administration lock (so two admins
cannot each remove the other at once), and ends by checking that an enabled
user still holds tenant.admin in the whole organisation; when none does it
raises Refused, and the caller's transaction rolls the change back.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from app.audit import AuditAction, Pii, Target, record
from app.audit.events import user_actor

ADMIN = "tenant.admin"
LAST_ADMIN = ("Nothing was changed: afterwards nobody enabled would hold tenant.admin in the whole organisation, "
              "and nobody could administer this workspace any more. Give another user that first.")


class Refused(ValueError):
    """A change that cannot be made; the message says why, in words for the page."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Admin:
    """Who makes the change, in which tenant."""

    tenant_id: UUID
    user_id: UUID

    async def record(self, conn: asyncpg.Connection, action: AuditAction, target: tuple[str, object], before, after,
                     pii: Pii | None = None) -> None:
        await record(conn, action, actor=user_actor(self.user_id), target=Target(target[0], str(target[1])),
                     data={"before": before, "after": after}, pii=pii)


def parse_id(value: str | None, what: str) -> UUID | None:
    """A UUID from a form field ('' is None); Refused for anything else."""
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError:
        raise Refused(f"That {what} does not exist.", 404) from None


def text(value: str | None, what: str, longest: int, *, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise Refused(f"Give the {what}.")
    if len(value) > longest:
        raise Refused(f"The {what} is longer than {longest} characters.")
    return value


async def serialise(conn: asyncpg.Connection) -> None:
    """Changes that could take tenant.admin away from somebody run one at a time per tenant."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('tenant_admins:' || app_current_tenant(), 0))")


# An enabled user holds tenant.admin in the whole organisation: assigned to
# them, or to a group they are in or below (as access_grants walks groups).
_AN_ADMIN_REMAINS = """
WITH RECURSIVE
wide AS (SELECT a.user_id, a.group_id FROM role_assignment a JOIN role_capability c ON c.role_id = a.role_id
          WHERE c.capability = 'tenant.admin' AND a.within_unit_id IS NULL),
reached(id, depth) AS (
    SELECT group_id, 1 FROM wide WHERE group_id IS NOT NULL
    UNION
    SELECT g.id, r.depth + 1 FROM user_group g JOIN reached r ON g.parent_id = r.id WHERE r.depth < 64
)
SELECT EXISTS (SELECT FROM app_user u WHERE u.disabled_at IS NULL AND (
    u.id IN (SELECT user_id FROM wide)
    OR u.id IN (SELECT m.user_id FROM group_member m JOIN reached r ON r.id = m.group_id)))
"""


async def an_admin_remains(conn: asyncpg.Connection) -> None:
    """Refused (so the caller's transaction rolls back) when nobody could administer the tenant any more."""
    if not await conn.fetchval(_AN_ADMIN_REMAINS):
        raise Refused(LAST_ADMIN, 409)
