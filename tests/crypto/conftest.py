from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg
import pytest

from app.config import url_for_role
from app.migrations import migrate
from tests.conftest import scratch_database


@pytest.fixture
def own_database(server_url):
    """A migrated database of its own: a rotation rewraps every tenant's keys, and other tests' keys are under other
    tests' key files."""
    with scratch_database(server_url) as url:
        asyncio.run(migrate(url))
        yield url


@pytest.fixture
async def own(own_database, settings):
    """An administrator connection, the app pool and settings, all on `own_database`."""
    admin = await asyncpg.connect(own_database)
    pool = await asyncpg.create_pool(url_for_role(own_database, "exceptao_app"), min_size=1, max_size=5)
    yield admin, pool, replace(settings, database_url=own_database)
    await pool.close()
    await admin.close()
