"""A tenant worth deleting: people who signed in, an exception, evidence files, queued mail; and a neighbour.

Everything is made through the app (sign-ins, uploads) or its services (mail
queue, notifications), so the rows and objects are the ones real use leaves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import pytest

from app import mail, notifications
from app.cli import main
from app.db import tenant_transaction
from app.storage import new_object_name, open_store
from app.tenants import Tenant
from tests.evidence.conftest import make_team, site, upload
from tests.evidence.helpers import CLEAN, SENSITIVE, an_exception, evidence_id_from
from tests.exceptions.test_screens import Person
from tests.storage.conftest import s3_providers

__all__ = ["site", "s3_providers"]   # fixtures, found by pytest under these names

# Every table with a tenant_id column, read here independently of the code under test.
TENANT_TABLES = """
SELECT c.relname::text AS name, format('%I.%I', n.nspname, c.relname) AS quoted
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
 ORDER BY 1
"""
AUDIT_KEPT = {"audit_log", "audit_anchor", "audit_pii", "tenant_deletion"}


@dataclass
class World:
    tenant: Tenant
    team: dict[str, Person]
    emails: list[str]
    objects: list[str] = field(default_factory=list)


def exceptao(*argv: str):
    """Run the command as from a shell (its own event loop, so in a thread of its own)."""
    return asyncio.to_thread(main, list(argv))


@pytest.fixture
def cli(admin_url, tmp_path, monkeypatch):
    """The command on this run's database and the site's local object store and key file."""
    monkeypatch.setenv("DATABASE_URL", admin_url)
    monkeypatch.setenv("EXCEPTAO_DATA_DIR", str(tmp_path))
    for name in ("EXCEPTAO_STORAGE_DIR", "EXCEPTAO_S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    return exceptao


async def populate(site, admin, pool, tenant: Tenant, settings, *, files: int = 2) -> World:
    """Three people signed in; an exception with a person's address in its title; evidence; an export archive
    in the object store; mail; a notification. `settings` name the store the site uses."""
    team = await make_team(site, admin, tenant)
    emails = [r["email"] for r in await admin.fetch("SELECT email FROM app_user WHERE tenant_id = $1", tenant.id)]
    world = World(tenant, team, emails)
    parent = await an_exception(pool, tenant, team)
    await admin.execute("UPDATE exception SET title = $2 WHERE id = $1",
                        UUID(parent.rsplit("/", 1)[1]), f"Legacy FTP, ask {emails[0]}")
    for n in range(files):
        response = await upload(team["Rhea"].browser, parent, f"export {n}.txt", (CLEAN, SENSITIVE)[n % 2])
        evidence_id = evidence_id_from(response)
        world.objects.append(await admin.fetchval("SELECT object_name FROM evidence WHERE id = $1", evidence_id))
    world.objects.append(await an_export_archive(admin, tenant, team["Olga"].id, settings))
    async with tenant_transaction(pool, tenant.id) as conn:
        await mail.queue(conn, team["Olga"].id, "A reminder", f"Hello {emails[1]}, an exception waits for you.")
        await notifications.notify(conn, team["Olga"].id, "reminder", "An exception waits for you.")
    return world


async def an_export_archive(admin, tenant: Tenant, requested_by: UUID, settings) -> str:
    """A finished tenant export (sql/0020) whose archive is in the object store, as the export job leaves it."""
    name = new_object_name("export")
    store = open_store(settings)
    try:
        async def archive():
            yield b"an encrypted archive stands here"

        size = await store.put(name, archive())
    finally:
        await store.close()
    await admin.execute(
        "INSERT INTO tenant_export (tenant_id, requested_by, state, started_at, object_key, size, sha256,"
        " finished_at, expires_at) VALUES ($1, $2, 'done', now(), $3, $4, $5, now(), now() + interval '7 days')",
        tenant.id, requested_by, name, size, bytes(32))
    return name


async def counts(admin, tenant_id) -> dict[str, int]:
    """The tenant's rows in every tenant table (as the superuser: no row-level security)."""
    return {t["name"]: await admin.fetchval(f"SELECT count(*) FROM {t['quoted']} WHERE tenant_id = $1", tenant_id)
            for t in await admin.fetch(TENANT_TABLES)}


def in_store(root: Path, name: str) -> bool:
    return (root / name).exists()


async def ended_days_ago(cli, tenant: Tenant, days: int) -> None:
    from datetime import datetime, timedelta, timezone

    at = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()
    assert await cli("tenant", "end", tenant.slug, "--at", at) == 0
