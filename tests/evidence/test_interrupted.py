"""An interrupted or failed upload leaves no stored object, no row and no spool file; one that was whole completes."""

from __future__ import annotations

import asyncio
import time

from app.evidence import receive
from tests.evidence.conftest import multipart, upload
from tests.evidence.helpers import CLEAN, an_exception, audit_actions, nothing_left, rows, stored_objects

MiB = 1024 * 1024


def streamed_upload(browser, parent_path: str, data: bytes):
    """A connection to POST an upload piece by piece, and the body to send on it."""
    body, content_type = multipart([("csrf_token", browser.csrf)], "export.txt", data)
    headers = browser._headers({"Content-Type": content_type, "Content-Length": str(len(body))})
    connection = browser.client.request(f"{parent_path}/evidence", method="POST", headers=headers,
                                        scope_base=browser._scope())
    return connection, body


async def test_a_client_that_goes_away_mid_body_leaves_nothing(team, pool, admin, tenant, settings):
    e = await an_exception(pool, tenant, team)
    connection, body = streamed_upload(team["Rhea"].browser, e, CLEAN * 50_000)     # 4.6 MB
    async with connection:
        for start in range(0, len(body) // 2, 64 * 1024):
            await connection.send(body[start:start + 64 * 1024])
            await asyncio.sleep(0)
        spool = settings.data_dir / "spool"
        for _ in range(200):      # the session is checked first, then the parser writes what has come so far
            if [p for p in spool.iterdir() if p.stat().st_size > 0]:
                break
            await asyncio.sleep(0.02)
        assert [p.stat().st_size > 0 for p in spool.iterdir()] == [True]   # it was on its way in
        await connection.disconnect()
    assert await rows(admin, tenant) == [] and nothing_left(settings)
    assert await audit_actions(admin, tenant) == []


async def test_a_database_failure_after_the_object_is_stored_removes_it(team, pool, admin, tenant, settings,
                                                                        monkeypatch):
    e = await an_exception(pool, tenant, team)

    async def failing_record(*args, **kwargs):
        assert len(stored_objects(settings.storage_dir)) == 1       # the object is there when the row fails
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(receive, "_record", failing_record)
    response = await upload(team["Rhea"].browser, e, "export.txt", CLEAN)
    assert response.status_code == 503 and response.headers["Retry-After"]    # the database's trouble, not a bug
    assert await rows(admin, tenant) == [] and nothing_left(settings)


async def test_a_store_failure_half_way_leaves_nothing(team, site, pool, admin, tenant, settings):
    e = await an_exception(pool, tenant, team)
    real = site.app.extensions["evidence_store"]

    class Failing:
        def __getattr__(self, name):
            return getattr(real, name)

        async def put(self, name, chunks):
            async def some(source):
                sent = 0
                async for chunk in source:
                    yield chunk
                    sent += len(chunk)
                    if sent > MiB:
                        raise OSError("No space left on device")
            return await real.put(name, some(chunks))

    site.app.extensions["evidence_store"] = Failing()
    try:
        response = await upload(team["Rhea"].browser, e, "export.txt", CLEAN * 30_000)
    finally:
        site.app.extensions["evidence_store"] = real
    assert response.status_code == 500
    assert await rows(admin, tenant) == [] and nothing_left(settings)
    assert list((settings.storage_dir / ".incoming").iterdir()) == []


async def test_a_client_that_leaves_once_the_file_is_in_does_not_stop_it_half_way(team, pool, admin, tenant,
                                                                                  settings, monkeypatch):
    e = await an_exception(pool, tenant, team)
    scanning = asyncio.Event()
    loop = asyncio.get_running_loop()
    real_scan = receive._scan

    def slow_scan(path):       # runs in a worker thread
        loop.call_soon_threadsafe(scanning.set)
        time.sleep(0.3)          # the request is cancelled while the pipeline works
        return real_scan(path)

    monkeypatch.setattr(receive, "_scan", slow_scan)
    connection, body = streamed_upload(team["Rhea"].browser, e, CLEAN)
    async with connection:
        await connection.send(body)
        await connection.send_complete()
        await asyncio.wait_for(scanning.wait(), 5)
        await connection.disconnect()
    for _ in range(100):
        if await rows(admin, tenant):
            break
        await asyncio.sleep(0.05)
    [row] = await rows(admin, tenant)
    assert row["state"] == "stored" and len(stored_objects(settings.storage_dir)) == 1
    assert list((settings.data_dir / "spool").iterdir()) == []


async def test_an_upload_without_a_live_session_is_refused_before_its_body_is_read(team, pool, admin, tenant,
                                                                                  settings):
    e = await an_exception(pool, tenant, team)
    rhea = team["Rhea"].browser
    rhea.cookies["exceptao_session"] = "signed-out-or-made-up"
    connection, body = streamed_upload(rhea, e, CLEAN * 50_000)
    async with connection:
        await connection.send(body[:64 * 1024])            # the rest never comes: the answer must not wait for it
        await asyncio.wait_for(connection.receive(), 5)
        assert connection.status_code == 403
    assert await rows(admin, tenant) == [] and nothing_left(settings)
