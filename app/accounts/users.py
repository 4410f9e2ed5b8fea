"""Users of a tenant, as sign-in and the account pages see them."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class User:
    id: UUID
    email: str
    display_name: str
    signins: int
    has_totp: bool
    passkeys: int
    disabled: bool = False

    @property
    def has_second_factor(self) -> bool:
        return self.has_totp or self.passkeys > 0


_SELECT = """
SELECT u.id, u.email, u.display_name, u.signins, u.totp_enrolled_at IS NOT NULL AS has_totp,
       (SELECT count(*) FROM webauthn_credential w WHERE w.user_id = u.id)::int AS passkeys,
       u.disabled_at IS NOT NULL AS disabled
  FROM app_user u
"""


async def by_id(conn: asyncpg.Connection, user_id: UUID) -> User | None:
    row = await conn.fetchrow(_SELECT + " WHERE u.id = $1", user_id)
    return User(**row) if row else None


async def credentials(conn: asyncpg.Connection, email: str) -> tuple[User, str | None] | None:
    """The user with this email (any case) and their password hash."""
    row = await conn.fetchrow(
        _SELECT.replace("SELECT ", "SELECT u.password_hash, ", 1) + " WHERE lower(u.email) = lower($1)", email,
    )
    if row is None:
        return None
    values = dict(row)
    password_hash = values.pop("password_hash")
    return User(**values), password_hash
