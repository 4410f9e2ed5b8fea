"""Second factors: TOTP enrolment and checks, recovery codes.

The TOTP secret is stored encrypted (app.accounts.secretbox) under the
tenant's data key (app.crypto.keys), bound to its tenant, user and key;
`totp_key_id` names the key. A secret sealed under the application key before
tenant keys existed (totp_key_id NULL) still opens, and is resealed under the
tenant key the first time it is read: no step to run, no user to bother, and
the count of those left is one query away. Each check consumes its time step
in the same UPDATE that reads it, so two requests racing with one code cannot
both pass.
"""

from __future__ import annotations

import hashlib
import secrets
from uuid import UUID

import asyncpg

from app.accounts import secretbox, totp
from app.accounts.users import User
from app.config import Settings
from app.crypto.keys import current_key, key_by_id

RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def _totp_context(tenant_id: UUID, user_id: UUID) -> tuple[object, ...]:
    return ("totp", tenant_id, user_id)


async def _seal(conn: asyncpg.Connection, settings: Settings, tenant_id: UUID, user_id: UUID,
                secret: str) -> tuple[bytes, UUID]:
    key = await current_key(conn, settings)
    return secretbox.seal(key.key, secret.encode(), *_totp_context(tenant_id, user_id), key.id), key.id


async def _unseal(conn: asyncpg.Connection, settings: Settings, tenant_id: UUID, user_id: UUID,
                  sealed: bytes, key_id: UUID | None) -> str:
    if key_id is not None:
        key = await key_by_id(conn, settings, key_id)
        return secretbox.unseal(key.key, sealed, *_totp_context(tenant_id, user_id), key_id).decode()
    secret = secretbox.unseal(settings.key(), sealed, *_totp_context(tenant_id, user_id)).decode()
    resealed, key_id = await _seal(conn, settings, tenant_id, user_id, secret)
    await conn.execute("UPDATE app_user SET totp_secret = $2, totp_key_id = $3 WHERE id = $1 AND totp_key_id IS NULL",
                       user_id, resealed, key_id)
    return secret


async def pending_totp_secret(conn: asyncpg.Connection, settings: Settings, tenant_id: UUID, user: User) -> str:
    """The secret being enrolled: made once, kept (encrypted) until confirmed or replaced."""
    row = await conn.fetchrow(
        "SELECT totp_secret, totp_key_id FROM app_user WHERE id = $1 AND totp_enrolled_at IS NULL", user.id)
    if row is not None and row["totp_secret"] is not None:
        return await _unseal(conn, settings, tenant_id, user.id, row["totp_secret"], row["totp_key_id"])
    secret = totp.new_secret()
    sealed, key_id = await _seal(conn, settings, tenant_id, user.id, secret)
    await conn.execute(
        "UPDATE app_user SET totp_secret = $2, totp_key_id = $3, totp_last_step = NULL"
        " WHERE id = $1 AND totp_enrolled_at IS NULL",
        user.id, sealed, key_id,
    )
    return secret


async def check_totp(
    conn: asyncpg.Connection, settings: Settings, tenant_id: UUID, user_id: UUID, code: str, *,
    enrolling: bool = False,
) -> bool:
    """True once for a valid code of an unused time step; the step is then used."""
    row = await conn.fetchrow(
        "SELECT totp_secret, totp_key_id, totp_last_step, totp_enrolled_at IS NOT NULL AS enrolled"
        " FROM app_user WHERE id = $1",
        user_id,
    )
    if row is None or row["totp_secret"] is None or row["enrolled"] == enrolling:
        return False
    secret = await _unseal(conn, settings, tenant_id, user_id, row["totp_secret"], row["totp_key_id"])
    step = totp.accepted_step(secret, code, last_step=row["totp_last_step"])
    if step is None:
        return False
    used = await conn.fetchval(
        """
        UPDATE app_user SET totp_last_step = $2,
               totp_enrolled_at = CASE WHEN $3 THEN now() ELSE totp_enrolled_at END
         WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)
        RETURNING id
        """,
        user_id, step, enrolling,
    )
    return used is not None


async def remove_totp(conn: asyncpg.Connection, user_id: UUID) -> bool:
    done = await conn.execute(
        "UPDATE app_user SET totp_secret = NULL, totp_key_id = NULL, totp_enrolled_at = NULL, totp_last_step = NULL"
        " WHERE id = $1 AND totp_secret IS NOT NULL", user_id)
    return done != "UPDATE 0"


def _recovery_hash(code: str) -> bytes:
    normalised = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(normalised.encode()).digest()


async def new_recovery_codes(conn: asyncpg.Connection, tenant_id: UUID, user_id: UUID) -> list[str]:
    """Ten fresh codes (80 bits each), replacing any earlier ones; only their hashes are kept."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
    await conn.execute("DELETE FROM recovery_code WHERE user_id = $1", user_id)
    await conn.executemany(
        "INSERT INTO recovery_code (tenant_id, user_id, code_hash) VALUES ($1, $2, $3)",
        [(tenant_id, user_id, _recovery_hash(c)) for c in codes],
    )
    return codes


async def use_recovery_code(conn: asyncpg.Connection, user_id: UUID, code: str) -> bool:
    used = await conn.fetchval(
        "UPDATE recovery_code SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL"
        " RETURNING user_id",
        user_id, _recovery_hash(code),
    )
    return used is not None


async def recovery_codes_left(conn: asyncpg.Connection, user_id: UUID) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM recovery_code WHERE user_id = $1 AND used_at IS NULL", user_id)
