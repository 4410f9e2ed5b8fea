"""Numbered, forward-only migrations under a lock, with checksums."""

import asyncio
import shutil

import asyncpg
import pytest

from app.cli import main
from app.migrations import SQL_DIR, MigrationError, load_migrations, migrate
from tests.conftest import scratch_database


def applied(url: str) -> list[tuple[int, str]]:
    async def fetch():
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY 1")]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_migrate_applies_each_file_once_and_records_its_checksum(server_url):
    files = load_migrations()
    with scratch_database(server_url) as url:
        assert asyncio.run(migrate(url)) == [m.name for m in files]
        assert asyncio.run(migrate(url)) == []
        assert applied(url) == [(m.version, m.checksum) for m in files]


def test_concurrent_migrations_queue_on_the_lock(server_url):
    with scratch_database(server_url) as url:
        async def both():
            return await asyncio.gather(migrate(url), migrate(url))

        first, second = asyncio.run(both())
        assert sorted([first, second], key=len) == [[], [m.name for m in load_migrations()]]
        assert len(applied(url)) == len(load_migrations())


def test_an_edited_applied_migration_is_refused(server_url, tmp_path):
    for path in SQL_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    with scratch_database(server_url) as url:
        asyncio.run(migrate(url, tmp_path))
        edited = tmp_path / "0002_tenants.sql"
        edited.write_text(edited.read_text() + "\n-- a quiet edit\n")
        (tmp_path / "0999_later.sql").write_text("CREATE TABLE later (id int);")
        with pytest.raises(MigrationError, match="0002_tenants.sql was edited after it was applied"):
            asyncio.run(migrate(url, tmp_path))
        # Nothing after the refusal ran either.
        assert 999 not in [v for v, _ in applied(url)]


def test_a_failing_migration_leaves_nothing_half_applied(server_url, tmp_path):
    (tmp_path / "0998_broken.sql").write_text("CREATE TABLE half (id int);\nSELECT no_such_function();")
    with scratch_database(server_url) as url:
        with pytest.raises(MigrationError, match="0998_broken.sql"):
            asyncio.run(migrate(url, SQL_DIR, tmp_path))

        async def half_exists():
            conn = await asyncpg.connect(url)
            try:
                return await conn.fetchval("SELECT to_regclass('half') IS NOT NULL")
            finally:
                await conn.close()

        assert asyncio.run(half_exists()) is False
        assert 998 not in [v for v, _ in applied(url)]


def test_cli_migrate(server_url, monkeypatch, capsys):
    with scratch_database(server_url) as url:
        monkeypatch.setenv("DATABASE_URL", url)
        assert main(["migrate"]) == 0
        assert "applied 0003_audit_chain.sql" in capsys.readouterr().out
        assert main(["migrate"]) == 0
        assert "nothing to apply" in capsys.readouterr().out


def test_tenants_made_before_access_control_get_its_seed_data(server_url, tmp_path):
    """A tenant that existed before 0005 and 0008 gets the default roles and the exception transitions."""
    for path in sorted(SQL_DIR.glob("000[1-4]_*.sql")):
        shutil.copy(path, tmp_path)

    async def check(url: str) -> tuple[int, int]:
        await migrate(url, tmp_path)
        conn = await asyncpg.connect(url)
        try:
            tenant = await conn.fetchval("INSERT INTO tenant (slug, name) VALUES ('old', 'Old') RETURNING id")
            await migrate(url)
            return (await conn.fetchval("SELECT count(*) FROM role WHERE tenant_id = $1", tenant),
                    await conn.fetchval("SELECT count(*) FROM exception_transition WHERE tenant_id = $1", tenant))
        finally:
            await conn.close()

    with scratch_database(server_url) as url:
        roles, transitions = asyncio.run(check(url))
    assert roles == 5 and transitions == 16
