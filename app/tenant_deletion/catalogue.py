"""Which tables hold a tenant's data, read from the database's catalogue, and in which order they empty.

Deletion must not depend on a list someone has to remember to extend: every
table with a `tenant_id` column is found here, so a table added by a later
migration is emptied too (or the deletion fails loudly, and its test with it).
What is kept is named, with why.
"""

from __future__ import annotations

from dataclasses import dataclass
from graphlib import TopologicalSorter
from uuid import UUID

import asyncpg

# Kept under DPA 9.3: the chain and its anchors (append-only for every role),
# audit_pii pseudonymised (a tombstone, the salt destroyed), and the record of
# the deletion itself (counts only).
KEPT = {
    "audit_log": "audit log records, kept under DPA 9.3",
    "audit_anchor": "timestamps of the chain heads, kept with the chain",
    "audit_pii": "pseudonymised: every identity a tombstone, every salt destroyed (DPA 9.3, 11)",
    "tenant_deletion": "the record of this deletion (counts only)",
}
# Events waiting for their transaction's commit, which moves them into the
# chain: it never holds a committed row, and deleting there would drop the
# event this deletion itself records.
TRANSIENT = {"audit_pending"}
# Destroyed last: without them anything of the tenant's left in a backup stays sealed.
DATA_KEYS = "tenant_key"
# Columns that name an object in the object store.
OBJECT_COLUMNS = ("object_name", "object_key")

_TABLES = """
SELECT c.oid, c.relname::text AS name, format('%I.%I', n.nspname, c.relname) AS quoted,
       coalesce((SELECT array_agg(quote_ident(a.attname) ORDER BY a.attname)
                   FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND NOT a.attisdropped AND a.attname = ANY($1::text[])
                    AND a.atttypid = 'text'::regtype), '{}') AS object_columns
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%'
   AND EXISTS (SELECT FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
"""

_REFERENCES = """
SELECT conrelid AS referencing, confrelid AS referenced
  FROM pg_constraint
 WHERE contype = 'f' AND conrelid <> confrelid
"""


@dataclass(frozen=True)
class TenantTable:
    name: str                        # as the catalogue has it, for reports
    quoted: str                      # schema-qualified and quoted, for SQL
    object_columns: tuple[str, ...]  # quoted names of columns naming stored objects


async def tables_to_empty(conn: asyncpg.Connection) -> list[TenantTable]:
    """Every tenant table deletion empties, each after every table that references it, the data keys last."""
    found = {r["oid"]: r for r in await conn.fetch(_TABLES, list(OBJECT_COLUMNS))}
    emptied = {oid: r for oid, r in found.items() if r["name"] not in KEPT and r["name"] not in TRANSIENT}
    # A table may be emptied once every table referencing it is: those are its predecessors.
    order: dict[int, set[int]] = {oid: set() for oid in emptied}
    for ref in await conn.fetch(_REFERENCES):
        if ref["referencing"] in emptied and ref["referenced"] in emptied:
            order[ref["referenced"]].add(ref["referencing"])
    keys = [oid for oid, r in emptied.items() if r["name"] == DATA_KEYS]
    for oid in keys:
        order[oid] |= set(emptied) - {oid}
    sorter = TopologicalSorter(order)
    sorter.prepare()  # graphlib.CycleError if two tables reference each other: said, not guessed around
    ordered = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda oid: emptied[oid]["name"])
        ordered += ready
        sorter.done(*ready)
    return [TenantTable(emptied[oid]["name"], emptied[oid]["quoted"], tuple(emptied[oid]["object_columns"]))
            for oid in ordered]


async def count_rows(conn: asyncpg.Connection, tenant_id: UUID, quoted: str) -> int:
    """Rows of the tenant in a table; `quoted` comes from the catalogue or KEPT, never from input."""
    return await conn.fetchval(f"SELECT count(*) FROM {quoted} WHERE tenant_id = $1", tenant_id)
