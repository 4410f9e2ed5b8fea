"""Forward-only numbered SQL migrations, applied in order under a lock.

Each file `NNNN_name.sql` in sql/ runs in its own transaction as
exceptao_migrator, unless its first line is `-- run-as: admin`. What ran is
recorded with the SHA-256 of the file; a file edited after it was applied is
refused, and so is a schema that leaves a tenant table without forced RLS.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from app.db import unprotected_tenant_tables

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATION_LOCK = 0x4D494752  # "MIGR": one migrator at a time per database
FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def runs_as_admin(self) -> bool:
        return self.sql.startswith("-- run-as: admin")


def load_migrations(*dirs: Path) -> list[Migration]:
    found: dict[int, Migration] = {}
    for directory in dirs or (SQL_DIR,):
        for path in sorted(directory.glob("*.sql")):
            match = FILE_NAME.match(path.name)
            if not match:
                raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
            version = int(match.group(1))
            if version in found:
                raise MigrationError(f"{path.name}: version {version} is used twice")
            found[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def migrate(admin_url: str, *dirs: Path) -> list[str]:
    """Apply pending migrations; return the names of those applied."""
    migrations = load_migrations(*dirs)
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            return await _apply(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        );
        REVOKE ALL ON schema_migrations FROM PUBLIC;
        """
    )
    applied = {r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")}
    for m in migrations:
        done = applied.get(m.version)
        if done and done["checksum"] != m.checksum:
            raise MigrationError(
                f"{m.name} was edited after it was applied (checksum {done['checksum'][:12]}… "
                f"recorded, {m.checksum[:12]}… on disk); migrations are forward-only: add a new one"
            )
    ran = []
    for m in migrations:
        if m.version in applied:
            continue
        async with conn.transaction():
            if not m.runs_as_admin:
                await conn.execute("SET LOCAL ROLE exceptao_migrator")
            try:
                await conn.execute(m.sql)
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{m.name}: {exc}") from exc
            await conn.execute("RESET ROLE")
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m.version, m.name, m.checksum,
            )
            problems = await unprotected_tenant_tables(conn)
            if problems:
                raise MigrationError(f"{m.name} leaves tenant tables unprotected: " + "; ".join(problems))
        ran.append(m.name)
    return ran
