"""Erasure of a person (DPA section 11), and pseudonymising a whole tenant (DPA 9.3).

The audit chain cannot forget anybody: deleting or editing a row would break
every hash after it. So a person's identity lives outside it, in audit_pii,
and the chain holds only a salted commitment. Erasure replaces their email
and IP address there with one stable `actor_tombstone_<uuid>`, drops the user
agent and destroys the salt: nobody can recover or check who it was, and the
chain still verifies (those rows count as erased, not broken). Their account
is anonymised, and the address is taken out of the tenant's free text.

Each erasure is recorded with its legal-basis note (DPA 11.4), never with the
address: even a hash of an address can be matched against a guess.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from app.access.admin import Refused, an_admin_remains, serialise
from app.audit.events import AuditAction, Target, record, system_actor
from app.exceptions.query import to_csv

TOMBSTONE_PREFIX = "actor_tombstone_"
ERASED_DOMAIN = "erased.invalid"     # app_user.email must look like an address; .invalid never resolves
ERASED_NAME = "Erased person"
DEFAULT_BASIS = (
    "GDPR Art. 6(1)(f), legitimate interest in audit integrity (DPA 11.4): the audit event records "
    "(action, time, target, hash) are retained with the actor's email and IP address replaced by a "
    "tombstone, because deleting or altering them would break the hash chain of every later record."
)
NOTHING = ("Nothing in this workspace is recorded for that address (it may have been erased already). "
           "Nothing was changed or recorded.")
LONGEST_BASIS = 5000
LONGEST_REFERENCE = 200

# Sessions, second factors, API tokens, reset and invitation links, and the mail queued for the person.
_CREDENTIALS_AND_MAIL = (
    "DELETE FROM user_session WHERE user_id = $1",
    "DELETE FROM recovery_code WHERE user_id = $1",
    "DELETE FROM webauthn_credential WHERE user_id = $1",
    "DELETE FROM password_reset WHERE user_id = $1",
    "DELETE FROM api_token WHERE user_id = $1",
    "DELETE FROM mail_outbox WHERE user_id = $1",
)


def tombstone_text(tombstone: UUID) -> str:
    return f"{TOMBSTONE_PREFIX}{tombstone}"


@dataclass(frozen=True)
class Erasure:
    """One erased person, as recorded: who asked, why, and what was changed; never who was erased."""

    id: UUID
    tombstone: str
    erased_at: datetime
    requested_by: str
    basis: str
    reference: str | None
    audit_rows: int
    account_anonymised: bool
    other_records: int
    requester_name: str | None = None   # the requesting user's name now, for the screen and the export

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Erasure:
        return cls(**{**dict(row), "tombstone": tombstone_text(row["tombstone"])})

    def as_json(self) -> dict:
        return {**asdict(self), "id": str(self.id), "erased_at": self.erased_at.isoformat()}


@dataclass(frozen=True)
class Preview:
    """What an erasure of an address would change, for the confirmation step."""

    audit_rows: int
    account_id: UUID | None
    account_name: str | None
    account_disabled: bool
    text_rows: int          # records elsewhere whose free text holds the address

    @property
    def anything(self) -> bool:
        return self.audit_rows > 0 or self.account_id is not None or self.text_rows > 0


def _address(email: str | None) -> str:
    email = (email or "").strip()
    if not email:
        raise Refused("Give the email address of the person to erase.")
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise Refused(f"“{email}” is not an email address.")
    return email


def request_fields(email: str | None, basis: str | None, reference: str | None) -> tuple[str, str, str | None]:
    """The address, legal basis and reference of an erasure request, trimmed; Refused when one is unusable."""
    email = _address(email)
    return (email, _note(basis, "legal basis", LONGEST_BASIS, email, required=True),
            _note(reference, "request reference", LONGEST_REFERENCE, email, required=False))


def _note(value: str | None, what: str, longest: int, email: str, *, required: bool) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise Refused(f"Give the {what}.")
        return None
    if len(value) > longest:
        raise Refused(f"The {what} is longer than {longest} characters.")
    if email.lower() in value.lower():
        raise Refused(f"The {what} must not contain the address being erased: it is kept after the erasure.")
    return value


async def _account(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, display_name, disabled_at IS NOT NULL AS disabled FROM app_user"
                               " WHERE lower(email) = lower($1)", email)


class _Rehearsed(Exception):
    pass


async def _text_rows(conn: asyncpg.Connection, email: str) -> int:
    """How many records' free text holds the address: the replacement itself, rehearsed and rolled back."""
    found = 0
    try:
        async with conn.transaction():  # a savepoint in the caller's transaction
            found = await conn.fetchval("SELECT erase_address_in_text($1, $2)", email, tombstone_text(uuid.uuid4()))
            raise _Rehearsed
    except _Rehearsed:
        pass
    return found


async def preview(conn: asyncpg.Connection, email: str) -> Preview:
    """How many audit rows, which account and how many other records an erasure of `email` would change.

    Changes nothing: the free-text count is the replacement rehearsed in a
    savepoint that is rolled back, so `conn` must not be read-only.
    """
    email = _address(email)
    account = await _account(conn, email)
    rows = await conn.fetchval("SELECT count(*) FROM erasure_candidates($1, $2)",
                               email, account["id"] if account else None)
    return Preview(rows, account["id"] if account else None, account["display_name"] if account else None,
                   bool(account and account["disabled"]), await _text_rows(conn, email))


async def _anonymise_account(conn: asyncpg.Connection, user_id: UUID, tombstone: str) -> int:
    """The account keeps its id (the chain names it) and nothing else of the person; returns records removed."""
    await conn.execute(
        "UPDATE app_user SET email = $2, display_name = $3, password_hash = NULL, totp_secret = NULL,"
        " totp_last_step = NULL, totp_enrolled_at = NULL, totp_key_id = NULL,"
        " webauthn_user_id = uuid_send(gen_random_uuid()), disabled_at = coalesce(disabled_at, now())"
        " WHERE id = $1",
        user_id, f"{tombstone}@{ERASED_DOMAIN}", ERASED_NAME)
    return sum([int((await conn.execute(delete, user_id)).split()[-1]) for delete in _CREDENTIALS_AND_MAIL])


async def _administered(conn: asyncpg.Connection) -> bool:
    """Somebody enabled holds tenant.admin now (so erasing the last of them is refused)."""
    try:
        await an_admin_remains(conn)
    except Refused:
        return False
    return True


async def erase_actor(
    conn: asyncpg.Connection, tenant_id: UUID, email: str, *, basis: str, reference: str | None = None,
    requested_by: str,
) -> Erasure:
    """Erase the person with `email` (any case) from the current tenant, in the caller's transaction.

    Raises Refused when the request is incomplete, when it would erase the
    requester or the last administrator, or when nothing is recorded for the
    address (then nothing is changed or recorded, so asking twice is harmless).
    """
    email, basis, reference = request_fields(email, basis, reference)
    await serialise(conn)  # erasing an administrator could leave the tenant without one
    account = await _account(conn, email)
    user_id = account["id"] if account else None
    if user_id is not None and requested_by == f"user:{user_id}":
        raise Refused("You cannot erase your own account. Ask another administrator.", 409)
    administered = await _administered(conn) if user_id is not None else False
    tombstone = uuid.uuid4()
    stone = tombstone_text(tombstone)
    audit_rows = await conn.fetchval("SELECT erase_audit_pii($1, $2, $3)", email, user_id, stone)
    other = await conn.fetchval("SELECT erase_address_in_text($1, $2)", email, stone)
    if user_id is not None:
        other += await _anonymise_account(conn, user_id, stone)
        if administered:
            await an_admin_remains(conn)
    elif audit_rows == 0 and other == 0:
        raise Refused(NOTHING, 404)
    row = await conn.fetchrow(
        "INSERT INTO erasure (tenant_id, tombstone, requested_by, basis, reference, audit_rows, account_anonymised,"
        " other_records) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " RETURNING id, tombstone, erased_at, requested_by, basis, reference, audit_rows, account_anonymised,"
        " other_records",
        tenant_id, tombstone, requested_by, basis, reference, audit_rows, user_id is not None, other)
    erasure = Erasure.from_row(row)
    await record(conn, AuditAction.USER_ERASE, actor=requested_by, target=Target("erasure", str(erasure.id)),
                 data={"tombstone": stone, "audit_rows": audit_rows, "account_anonymised": user_id is not None,
                       "other_records": other})
    return erasure


async def pseudonymise_everyone(conn: asyncpg.Connection, tenant_id: UUID, *, basis: str) -> int:
    """Every identity left in the tenant's audit_pii gets its own tombstone; returns the rows pseudonymised.

    For tenant deletion (DPA 9.3: only audit rows with pseudonymised actors
    are kept). Accounts are not touched: deletion removes them. Each identity
    is recorded as an erasure with `basis`.
    """
    basis = (basis or "").strip()
    if not basis:
        raise Refused("Give the legal basis.")
    by = system_actor("pseudonymise")
    erased = await conn.fetch("SELECT tombstone, audit_rows FROM erase_audit_pii_all()")
    for person in erased:
        await conn.execute(
            "INSERT INTO erasure (tenant_id, tombstone, requested_by, basis, audit_rows, account_anonymised,"
            " other_records) VALUES ($1, $2, $3, $4, $5, false, 0)",
            tenant_id, UUID(person["tombstone"].removeprefix(TOMBSTONE_PREFIX)), by, basis, person["audit_rows"])
    total = sum(p["audit_rows"] for p in erased)
    await record(conn, AuditAction.EVERYONE_PSEUDONYMISE, actor=by,
                 data={"identities": len(erased), "audit_rows": total})
    return total


async def erasures(conn: asyncpg.Connection) -> list[Erasure]:
    """The current tenant's erasures, latest first."""
    rows = await conn.fetch(
        "SELECT e.id, e.tombstone, e.erased_at, e.requested_by, e.basis, e.reference, e.audit_rows,"
        " e.account_anonymised, e.other_records, u.display_name AS requester_name"
        " FROM erasure e LEFT JOIN app_user u ON 'user:' || u.id::text = e.requested_by"
        " ORDER BY e.erased_at DESC")
    return [Erasure.from_row(r) for r in rows]


EXPORT_COLUMNS = ("id", "erased_at", "tombstone", "requested_by", "requester_name", "basis", "reference", "audit_rows",
                  "account_anonymised", "other_records")


async def export(conn: asyncpg.Connection, fmt: str, *, by: str) -> str:
    """Every erasure record with its legal-basis note (DPA 11.4: provided on request), as CSV or JSON; recorded."""
    records = [e.as_json() for e in await erasures(conn)]
    await record(conn, AuditAction.ERASURE_EXPORT, actor=by, data={"format": fmt, "rows": len(records)})
    if fmt == "csv":
        return to_csv(EXPORT_COLUMNS, ([r[c] for c in EXPORT_COLUMNS] for r in records))
    return json.dumps({"erasures": records}, ensure_ascii=False, indent=2)
