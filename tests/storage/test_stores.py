"""The object stores behind one interface: the local folder and two S3 providers (moto servers)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc

import pytest

from app.storage import BadObjectName, ObjectExists, ObjectMissing, new_object_name, open_store
from app.storage.local import INCOMING, LocalStore
from tests.storage.conftest import chunks_of

MiB = 1024 * 1024


@pytest.fixture(params=["local", "r2", "b2"])
async def store(request, tmp_path, s3_providers):
    if request.param == "local":
        yield LocalStore(tmp_path / "objects")
        return
    provider = s3_providers[request.param]
    store = provider.store(await provider.new_bucket())
    yield store
    await store.close()


async def read_all(store, name: str) -> bytes:
    return b"".join([chunk async for chunk in store.get(name)])


def pseudo_random(size: int) -> bytes:
    """Incompressible, reproducible bytes (a SHA-256 counter stream)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest() * 64
        counter += 1
    return bytes(out[:size])


async def test_round_trip(store):
    name = new_object_name("test")
    data = b"evidence \x00\xff bytes" * 100
    assert await store.put(name, chunks_of(data, 7)) == len(data)
    assert await store.exists(name)
    assert await read_all(store, name) == data


async def test_an_empty_object(store):
    name = new_object_name("test")
    assert await store.put(name, chunks_of(b"")) == 0
    assert await store.exists(name)
    assert await read_all(store, name) == b""


async def test_a_large_object_goes_up_in_parts_and_comes_back_whole(store):
    data = pseudo_random(12 * MiB + 12345)   # S3: two full 5 MiB parts and a short last one
    name = new_object_name("test")
    assert await store.put(name, chunks_of(data)) == len(data)
    assert hashlib.sha256(await read_all(store, name)).digest() == hashlib.sha256(data).digest()
    if not isinstance(store, LocalStore):
        s3 = await store.client()
        head = await s3.head_object(Bucket=store.bucket, Key=name)
        assert head["ETag"].strip('"').endswith("-3")   # a multipart upload of three parts


async def test_delete_and_missing(store):
    name = new_object_name("test")
    await store.put(name, chunks_of(b"x"))
    await store.delete(name)
    assert not await store.exists(name)
    with pytest.raises(ObjectMissing):
        await read_all(store, name)
    await store.delete(name)   # deleting what is gone is not an error
    with pytest.raises(ObjectMissing):
        await read_all(store, new_object_name("test"))


@pytest.mark.parametrize("name", ["", "../outside", "a/../../b", "/etc/passwd", ".hidden", "a//b", "a/./b", "a/",
                                  "a\\b", "a\x00b", "evidence/\u00e9", "x" * 600, INCOMING + "/x"])
async def test_names_that_could_escape_or_confuse_are_refused(store, name):
    with pytest.raises(BadObjectName):
        await store.put(name, chunks_of(b"x"))
    with pytest.raises(BadObjectName):
        await read_all(store, name)
    with pytest.raises(BadObjectName):
        await store.delete(name)


async def test_a_failing_source_leaves_nothing(store):
    name = new_object_name("test")

    async def broken():
        yield pseudo_random(6 * MiB)      # S3: enough for a first part to be uploaded
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await store.put(name, broken())
    assert not await store.exists(name)
    if isinstance(store, LocalStore):
        assert list((store.root / INCOMING).iterdir()) == []
    else:
        s3 = await store.client()
        assert (await s3.list_multipart_uploads(Bucket=store.bucket)).get("Uploads", []) == []


async def test_a_cancelled_put_leaves_nothing(store):
    name = new_object_name("test")
    started = asyncio.Event()

    async def slow():
        yield pseudo_random(6 * MiB)
        started.set()
        await asyncio.sleep(60)
        yield b"never"

    task = asyncio.create_task(store.put(name, slow()))
    await started.wait()
    await asyncio.sleep(0.2)       # S3: the first part is on its way or up
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await store.exists(name)
    if not isinstance(store, LocalStore):
        s3 = await store.client()
        assert (await s3.list_multipart_uploads(Bucket=store.bucket)).get("Uploads", []) == []


async def test_local_objects_are_write_once_and_private(tmp_path):
    store = LocalStore(tmp_path / "objects")
    name = new_object_name("test")
    await store.put(name, chunks_of(b"first"))
    with pytest.raises(ObjectExists):
        await store.put(name, chunks_of(b"second"))
    assert await read_all(store, name) == b"first"
    path = store.root / name
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert list((store.root / INCOMING).iterdir()) == []


async def test_a_symlink_in_the_folder_does_not_lead_a_name_out(tmp_path):
    store = LocalStore(tmp_path / "objects")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not yours")
    store.root.mkdir()
    os.symlink(outside, store.root / "evidence")
    with pytest.raises(BadObjectName):
        await read_all(store, "evidence/secret")
    with pytest.raises(BadObjectName):
        await store.put("evidence/planted", chunks_of(b"x"))
    assert not (outside / "planted").exists()


async def test_local_put_streams_with_flat_memory(tmp_path):
    store = LocalStore(tmp_path / "objects")

    async def generated(total: int, size: int = 64 * 1024):
        block = pseudo_random(size)
        for _ in range(total // size):
            yield block

    tracemalloc.start()
    try:
        await store.put(new_object_name("test"), generated(40 * MiB))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * MiB, f"peak {peak} bytes for a 40 MiB object"


def test_settings_choose_the_store(settings, s3_providers):
    from dataclasses import replace

    from app.storage.s3 import S3Store

    assert isinstance(open_store(settings), LocalStore)
    assert open_store(settings).root == settings.data_dir / "objects"
    provider = s3_providers["b2"]
    chosen = open_store(replace(settings, s3_bucket="b2-bucket", s3_endpoint=provider.endpoint, s3_part_mb=6))
    assert isinstance(chosen, S3Store) and chosen.bucket == "b2-bucket" and chosen.part_size == 6 * MiB


def test_settings_from_the_environment():
    from app.config import Settings

    s = Settings.from_env({"EXCEPTAO_S3_BUCKET": "evidence", "EXCEPTAO_S3_ENDPOINT": "https://acct.r2.cloudflarestorage.com",
                           "EXCEPTAO_S3_REGION": "auto", "EXCEPTAO_S3_ACCESS_KEY_ID": "id",
                           "EXCEPTAO_S3_SECRET_ACCESS_KEY": "secret", "EXCEPTAO_S3_ADDRESSING": "path",
                           "EXCEPTAO_S3_PART_MB": "16", "EXCEPTAO_EVIDENCE_MAX_MB": "20",
                           "EXCEPTAO_STORAGE_DIR": "/srv/objects"})
    assert (s.s3_bucket, s.s3_endpoint, s.s3_region, s.s3_access_key_id, s.s3_addressing_style, s.s3_part_mb,
            s.evidence_max_mb, str(s.storage_dir)) == ("evidence", "https://acct.r2.cloudflarestorage.com", "auto",
                                                       "id", "path", 16, 20, "/srv/objects")
    assert "secret" not in repr(s)
