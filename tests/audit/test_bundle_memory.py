"""A long chain streams through the bundle writer and the offline verifier in bounded memory."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

from app.audit.bundle import write_bundle
from app.audit.offline import verify_bundle
from app.db import tenant_transaction

ROWS = 20_000


class Counting:
    """A sink that keeps nothing, as a file or a socket would not keep it in our memory."""

    def __init__(self):
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self.size += len(chunk)
        return len(chunk)


async def test_writing_and_checking_a_long_chain_holds_a_batch_not_the_chain(pool, tenant, settings, tmp_path):
    async with tenant_transaction(pool, tenant.id) as conn:
        await conn.execute(
            "SELECT audit_append('system:bulk', 'identity:user:create', 'user', g::text,"
            " jsonb_build_object('n', g, 'note', 'a row of a long chain'), NULL, NULL) FROM generate_series(1, $1) g",
            ROWS)
    configured = replace(settings, verify_batch=1000)

    sink = Counting()
    tracemalloc.start()
    try:
        summary = await write_bundle(pool, tenant.id, sink, configured)
        _, writing_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.rows == summary.head_seq == ROWS + 1
    # About one batch of 1,000 rows (some 2.7 MB, for 20,000 rows as for 50,000), far less than the file.
    assert writing_peak < 4_000_000 < sink.size / 2, (writing_peak, sink.size)

    path = tmp_path / "long.jsonl"
    with path.open("wb") as file:
        await write_bundle(pool, tenant.id, file, configured)
    tracemalloc.start()
    try:
        with path.open("rb") as file:
            report = verify_bundle(iter(file))
        _, checking_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.first is None and report.rows == ROWS + 1
    assert checking_peak < 1_000_000, checking_peak
