"""Tenant export (DPA 9.1): all of one tenant's data in one ZIP archive, and its re-import.

    archive.py   the writer: tables, evidence files, the audit bundle, manifest.json
    requests.py  the tenant_export rows: asked for, claimed by the job, progress, done or failed
    restore.py   `exceptao tenant import`: checks the manifest, restores into an empty database

The archive:

    manifest.json            format, tenant, made_at, chain head {seq, hash}, every member's
                             path, size and SHA-256, and what was left out and why
    tables/<name>.json       one table's rows of this tenant: a JSON array, one row a line
    tables/<name>.csv        the same rows, a header line first
    evidence/<id>/<file>     each stored evidence file, decrypted (rejected files have none)
    audit/...                the audit bundle (app.audit.bundle), verifiable offline

Which tables: every table with a tenant_id column, found in the catalogue
(`tenant_tables`), plus the tenant's own row (tables/tenant.*); a table added
later is exported without anyone remembering to list it.

Values: JSON as PostgreSQL's to_jsonb writes them (timestamps ISO 8601 with
their offset, uuids as strings, arrays as arrays); bytea as a string of
"\\x" and lower-case hex (how PostgreSQL prints bytea; the import reads it
back as it is). In CSV: text as is, except that text a spreadsheet would
run as a formula (starting with = + - @, a tab or CR) gets a leading ', NULL
as an empty field, numbers as written, booleans true/false, arrays and JSON
values as their JSON text, bytea as in JSON. The JSON files are the exact ones
(CSV cannot tell NULL from ''); the import reads them.

Left out, because they must never leave the service (LEFT_OUT_TABLES,
LEFT_OUT_COLUMNS; the manifest lists them with these reasons):
- app_user.password_hash, app_user.totp_secret: credentials; whoever holds them can
  attack the password offline or make second-factor codes.
- tenant_key.wrapped, tenant_key.binding: the tenant's data keys (wrapped). The archive
  itself is what they protect; the rest of the row (id, dates) is kept.
- api_token.token_hash, user_session (all of it: token hashes and session ids),
  password_reset (reset tokens), recovery_code (second-factor codes): bearer
  secrets, or hashes of them, that sign someone in.
- audit_pending: a transient queue, empty outside a committing transaction.
- tenant_chain_status: the operators' note of their own last check, naming an
  operator account; platform data the app role cannot read.
- tenant_deletion: the platform's record of the tenant's deletion (counts only);
  the app role cannot read it, and a deleted tenant has nothing left to export.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

FORMAT = "exceptao-tenant-export/1"
MANIFEST = "manifest.json"

LEFT_OUT_TABLES: dict[str, str] = {
    "user_session": "sessions: their token hashes and ids sign a browser in",
    "password_reset": "reset tokens (hashed): a bearer secret that sets a password",
    "recovery_code": "second-factor recovery codes (hashed): a bearer secret",
    "audit_pending": "a transient queue of events being committed; empty outside a transaction",
    "tenant_chain_status": "the operators' record of their last check of the chain; platform data naming an operator",
    "tenant_deletion": "the platform's record of deleting this tenant (sql/0021); after it nothing is left to export",
}

LEFT_OUT_COLUMNS: dict[str, dict[str, str]] = {
    "app_user": {
        "password_hash": "a password hash can be attacked offline",
        "totp_secret": "the second-factor secret makes valid codes",
    },
    "tenant_key": {
        "wrapped": "the tenant's data key, wrapped by the platform's key-encryption key",
        "binding": "a MAC made with the data key",
    },
    "api_token": {"token_hash": "the hash of a bearer token"},
}

# Tables whose rows are exported but not restored by `exceptao tenant import`, and why.
NOT_RESTORED: dict[str, str] = {
    "api_token": "tokens cannot work without their hashes, which never leave: owners make new ones",
    "tenant_export": "earlier exports of the old installation; their archives are not in this one",
}

TENANT_TABLES = """
SELECT c.relname::text
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
   AND EXISTS (SELECT FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
 ORDER BY 1
"""

# Columns of a table in their order; generated ones are marked (they are exported, never inserted).
COLUMNS = """
SELECT a.attname::text AS name, a.attgenerated <> '' AS generated
  FROM pg_attribute a
 WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""

PRIMARY_KEY = """
SELECT a.attname::text
  FROM pg_index i
  JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = $1::regclass AND i.indisprimary
 ORDER BY k.ord
"""

# Foreign keys between tables: (table, the table it references).
REFERENCES = """
SELECT c.conrelid::regclass::text, c.confrelid::regclass::text
  FROM pg_constraint c
 WHERE c.contype = 'f'
"""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]            # all, in order, left-out ones removed
    generated: frozenset[str]           # computed by the database; never inserted
    order_by: tuple[str, ...]           # the primary key, for a stable order
    left_out: tuple[str, ...]           # columns not exported


def identifier(name: str) -> str:
    """A quoted SQL identifier. Names come from the catalogue, never from a request or an archive."""
    return '"' + name.replace('"', '""') + '"'


async def tenant_tables(conn: asyncpg.Connection) -> list[str]:
    """Every table with a tenant_id column, left-out ones included, by name."""
    return [r[0] for r in await conn.fetch(TENANT_TABLES)]


async def describe(conn: asyncpg.Connection, name: str) -> Table:
    columns = await conn.fetch(COLUMNS, name)
    left_out = LEFT_OUT_COLUMNS.get(name, {})
    return Table(name, tuple(c["name"] for c in columns if c["name"] not in left_out),
                 frozenset(c["name"] for c in columns if c["generated"]),
                 tuple(r[0] for r in await conn.fetch(PRIMARY_KEY, name)), tuple(left_out))


async def exported_tables(conn: asyncpg.Connection) -> list[Table]:
    """The tenant row's table, then every tenant table not left out, parents before the tables referring to them."""
    names = ["tenant"] + [t for t in await tenant_tables(conn) if t not in LEFT_OUT_TABLES]
    edges = [(r[0], r[1]) for r in await conn.fetch(REFERENCES)]
    return [await describe(conn, name) for name in parents_first(names, edges)]


def parents_first(names: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """`names` ordered so that a table comes after every table it references (self-references aside)."""
    wanted = set(names)
    needs = {n: {parent for child, parent in edges if child == n and parent in wanted and parent != n}
             for n in names}
    ordered: list[str] = []
    while needs:
        ready = sorted(n for n, parents in needs.items() if not parents - set(ordered))
        if not ready:
            raise RuntimeError(f"foreign keys form a cycle among {sorted(needs)}")
        ordered += ready
        for n in ready:
            del needs[n]
    return ordered


def left_out_summary() -> dict:
    """What the manifest says was left out, and why."""
    return {"tables": dict(LEFT_OUT_TABLES),
            "columns": {f"{t}.{c}": why for t, cols in LEFT_OUT_COLUMNS.items() for c, why in cols.items()}}
