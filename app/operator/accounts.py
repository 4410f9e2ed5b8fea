"""Operator accounts: made from the command line, signed in with password and TOTP every time.

The TOTP secret is sealed with the application key and bound to the
operator's id; a code is accepted once (its time step is consumed in the
UPDATE that checks it). Every way a sign-in can fail answers alike, and the
attempts are throttled like tenant sign-ins, under buckets of their own.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg

from app.accounts import passwords, secretbox, throttle, totp

SIGNIN_FAILED = "Email, password or code is incorrect."
TOO_MANY = "Too many attempts. Wait {wait} and try again."

SIGNIN_PER_ADDRESS = throttle.Limit("operator-signin-address", 20, 300)
SIGNIN_PER_ACCOUNT = throttle.Limit("operator-signin-account", 5, 300)

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class OperatorError(ValueError):
    pass


class SigninRefused(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Operator:
    id: UUID
    email: str
    display_name: str


@dataclass(frozen=True)
class NewOperator:
    """A new account and its credentials, shown once to whoever made it."""

    operator: Operator
    password: str
    totp_secret: str

    @property
    def otpauth_uri(self) -> str:
        return totp.provisioning_uri(self.totp_secret, f"operator:{self.operator.email}")


def _totp_context(operator_id: UUID) -> tuple[object, ...]:
    return ("operator-totp", operator_id)


async def create_operator(admin: asyncpg.Connection, key: bytes, email: str, name: str) -> NewOperator:
    """A new operator with a generated password and TOTP secret (there is no operator without TOTP).

    `admin` is an administrator connection: the operator role cannot make operators.
    """
    email = (email or "").strip()
    name = (name or "").strip()
    if not EMAIL.match(email) or len(email) > 254:
        raise OperatorError(f"{email!r} is not an email address")
    if not 1 <= len(name) <= 200:
        raise OperatorError("the name must be 1 to 200 characters")
    operator = Operator(uuid4(), email, name)
    password = secrets.token_urlsafe(18)  # 144 bits
    secret = totp.new_secret()
    try:
        await admin.execute(
            "INSERT INTO operator_account (id, email, display_name, password_hash, totp_secret)"
            " VALUES ($1, $2, $3, $4, $5)",
            operator.id, email, name, await passwords.hashed(password),
            secretbox.seal(key, secret.encode(), *_totp_context(operator.id)),
        )
    except asyncpg.UniqueViolationError:
        raise OperatorError(f"an operator with email {email!r} already exists") from None
    return NewOperator(operator, password, secret)


async def sign_in(pool: asyncpg.Pool, key: bytes, email: str, password: str, code: str,
                  address: str | None) -> Operator:
    """The operator these credentials prove, all three of them; SigninRefused otherwise."""
    account = ("operator", email.lower())
    async with pool.acquire() as conn:
        if not (await throttle.allow(conn, key, SIGNIN_PER_ADDRESS, address)
                and await throttle.allow(conn, key, SIGNIN_PER_ACCOUNT, *account)):
            raise SigninRefused(TOO_MANY.format(wait="a few minutes"), 429)
        if wait_until := await throttle.signin_wait(conn, key, *account):
            now = await conn.fetchval("SELECT now()")
            raise SigninRefused(TOO_MANY.format(wait=throttle.wait_words(wait_until, now)), 429)
        async with conn.transaction():
            operator = await _check(conn, key, email, password, code)
        if operator is None:
            await throttle.signin_failed(conn, key, *account)
            raise SigninRefused(SIGNIN_FAILED, 401)
        await throttle.signin_succeeded(conn, key, *account)
    return operator


async def _check(conn: asyncpg.Connection, key: bytes, email: str, password: str, code: str) -> Operator | None:
    row = await conn.fetchrow(
        "SELECT id, email, display_name, password_hash, totp_secret, totp_last_step, disabled_at"
        " FROM operator_account WHERE lower(email) = lower($1)",
        email,
    ) if email else None
    # One Argon2 verification whether or not the account exists.
    if not await passwords.verified(row["password_hash"] if row else None, password):
        return None
    if row["disabled_at"] is not None:
        return None
    secret = secretbox.unseal(key, row["totp_secret"], *_totp_context(row["id"])).decode()
    step = totp.accepted_step(secret, code, last_step=row["totp_last_step"])
    if step is None:
        return None
    used = await conn.fetchval(
        "UPDATE operator_account SET totp_last_step = $2"
        " WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2) RETURNING id",
        row["id"], step,
    )
    if used is None:
        return None
    if passwords.needs_rehash(row["password_hash"]):
        await conn.execute("UPDATE operator_account SET password_hash = $2 WHERE id = $1",
                           row["id"], await passwords.hashed(password))
    return Operator(row["id"], row["email"], row["display_name"])
