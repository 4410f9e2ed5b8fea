"""Evidence upload speed for a 50 MB file (issue 6): through the app over HTTP, and encrypt + store alone.

* `through_app`: `exceptao serve` in a subprocess on a loopback port, a
  signed-in requester POSTs a --mb MiB text file to their exception as a
  streamed multipart form (httpx), until the 303: received and hashed into
  the spool, DLP-scanned, encrypted with the tenant's data key into the
  object store, the row and the audit entries written.
* `encrypt_store`: the same file's bytes read from disk, encrypted
  (app.crypto.stream) and put into the store, in this process: the
  upload-plus-encrypt part alone, without HTTP and without the scan.

Each is run --repeat times; the median is reported with every run.
`encrypt_store_figures()` is the second alone on a random key and the local
folder, with no database (for bench/dlp.py's upload-plus-encrypt figure). The store
is the local folder unless --s3 (a moto S3 server started here; moto is a
test extra). The key-encryption key is the local key file. Run from the
repository root:

    python bench/evidence_upload.py [--mb 50] [--repeat 3] [--s3]

DATABASE_URL chooses the server (an administrator URL; default
postgresql://postgres@127.0.0.1:5432/postgres). The figures are printed as one
JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from time import perf_counter
from uuid import uuid4

import asyncpg
import httpx

from _scratch import add_schema_argument, add_user, emit, log, make_tenants, schema_checksums, scratch_database
from exceptions_list import PASSWORD, served, sign_in
from app.config import Settings
from app.crypto import stream
from app.crypto.keys import DataKey, current_key
from app.db import open_pool, set_tenant, tenant_transaction
from app.evidence import aad_for
from app.storage import new_object_name, open_store

MiB = 1024 * 1024
LINE = b"2026-11-01T10:00:00Z allow tcp 203.0.113.7:40122 -> 10.0.0.21:21 rule 17 (ftp01, vendor upload)\n"
BOUNDARY = "----exceptao-bench"


async def seed(admin_url: str, tenant_id) -> str:
    """A requester and one draft exception of theirs; returns the exception's path."""
    conn = await asyncpg.connect(admin_url)
    try:
        async with conn.transaction():
            await set_tenant(conn, tenant_id)
            user = await add_user(conn, tenant_id, "requester@bench.example", "Bench Requester", "requester", PASSWORD)
            exception_id = await conn.fetchval(
                "INSERT INTO exception (tenant_id, title, policy_ref, deviation, justification, likelihood, impact,"
                " requester_id, owner_id, starts_on, ends_on) VALUES ($1, 'Legacy FTP', 'A.8.24', 'plain FTP',"
                " 'vendor', 3, 3, $2, $2, current_date, current_date + 90) RETURNING id", tenant_id, user)
    finally:
        await conn.close()
    return f"/exceptions/{exception_id}"


def write_file(path: Path, size: int) -> None:
    block = LINE * (MiB // len(LINE))
    with open(path, "wb") as f:
        left = size
        while left:
            f.write(block[:left])
            left -= min(left, len(block))


async def body(csrf: str, path: Path):
    yield (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{csrf}\r\n'
           f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="firewall.log"\r\n'
           "Content-Type: text/plain\r\n\r\n").encode()
    with open(path, "rb") as f:
        while piece := f.read(256 * 1024):
            yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def through_app(admin_url: str, env_extra: dict, data_dir: str, exception_path: str, path: Path,
                      repeat: int) -> dict:
    size = path.stat().st_size
    seconds = []
    async with served(admin_url, env_extra, data_dir) as (_, port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300,
                                     headers={"Host": f"bench.localhost:{port}"}) as client:
            await sign_in(client, "requester@bench.example")
            page = await client.get(exception_path)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            edges = sum(len(p) for p in [p async for p in body(token, Path(os.devnull))])
            for run in range(repeat):
                start = perf_counter()
                response = await client.post(
                    f"{exception_path}/evidence", content=body(token, path),
                    headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                             "Content-Length": str(edges + size)})
                seconds.append(perf_counter() - start)
                if response.status_code != 303:
                    raise RuntimeError(f"the upload answered {response.status_code}: {response.text[-500:]}")
                log(f"upload {run + 1}/{repeat}: {seconds[-1]:.2f} s, {size / seconds[-1] / 1e6:.1f} MB/s")
    return figures(size, seconds)


async def encrypt_store(settings: Settings, key: DataKey, tenant_id, path: Path, repeat: int) -> dict:
    """The file read from disk, encrypted under `key` and put into the settings' store, `repeat` times."""
    store = open_store(settings)
    size = path.stat().st_size
    seconds = []

    async def chunks():
        with open(path, "rb") as f:
            while piece := await asyncio.to_thread(f.read, MiB):
                yield piece

    try:
        for run in range(repeat):
            name = new_object_name("evidence")
            start = perf_counter()
            await store.put(name, stream.encrypt(key, chunks(), aad=aad_for(tenant_id, uuid4())))
            seconds.append(perf_counter() - start)
            log(f"encrypt + store {run + 1}/{repeat}: {seconds[-1]:.2f} s, {size / seconds[-1] / 1e6:.1f} MB/s")
            await store.delete(name)
    finally:
        await store.close()
    return figures(size, seconds)


def encrypt_store_figures(mb: int = 50, repeat: int = 3) -> dict:
    """Upload-plus-encrypt alone, without a database: a random data key, the local folder store.

    For bench/dlp.py, which needs no database either.
    """
    with tempfile.TemporaryDirectory(prefix="exceptao-bench-") as data_dir:
        path = Path(data_dir) / "firewall.log"
        write_file(path, mb * MiB)
        settings = Settings(data_dir=Path(data_dir))
        key = DataKey(uuid4(), secrets.token_bytes(32))
        return asyncio.run(encrypt_store(settings, key, uuid4(), path, repeat))


async def tenant_key(settings: Settings, tenant_id) -> DataKey:
    pool = await open_pool(settings)
    try:
        async with tenant_transaction(pool, tenant_id) as conn:
            return await current_key(conn, settings)
    finally:
        await pool.close()


def figures(size: int, seconds: list[float]) -> dict:
    median = statistics.median(seconds)
    return {"bytes": size, "median_s": round(median, 3), "runs_s": [round(s, 3) for s in seconds],
            "mb_per_s": round(size / median / 1e6, 1)}


def moto_settings(settings: Settings) -> tuple[Settings, dict, object]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"EXCEPTAO_S3_BUCKET": "bench-evidence", "EXCEPTAO_S3_ENDPOINT": f"http://{host}:{port}",
           "EXCEPTAO_S3_ACCESS_KEY_ID": "bench", "EXCEPTAO_S3_SECRET_ACCESS_KEY": "bench",
           "EXCEPTAO_S3_ADDRESSING": "path"}
    configured = replace(settings, s3_bucket="bench-evidence", s3_endpoint=env["EXCEPTAO_S3_ENDPOINT"],
                         s3_access_key_id="bench", s3_secret_access_key="bench", s3_addressing_style="path")
    return configured, env, server


async def make_bucket(settings: Settings) -> None:
    store = open_store(settings)
    try:
        await (await store.client()).create_bucket(Bucket=settings.s3_bucket)
    finally:
        await store.close()


async def run(args) -> dict:
    async with scratch_database(args.sql_dir) as admin_url:
        [tenant] = await make_tenants(admin_url, ["bench"])
        exception_path = await seed(admin_url, tenant.id)
        with tempfile.TemporaryDirectory(prefix="exceptao-bench-") as data_dir:
            path = Path(data_dir) / "firewall.log"
            write_file(path, args.mb * MiB)
            settings = Settings(database_url=admin_url, data_dir=Path(data_dir), pool_min=1, pool_max=2)
            env, server = {}, None
            if args.s3:
                settings, env, server = moto_settings(settings)
                await make_bucket(settings)
            try:
                log("encrypt + store")
                alone = await encrypt_store(settings, await tenant_key(settings, tenant.id), tenant.id, path,
                                            args.repeat)
                log("through the app")
                app = await through_app(admin_url, env, data_dir, exception_path, path, args.repeat)
            finally:
                if server is not None:
                    server.stop()
        return {"benchmark": "evidence_upload", "mb": args.mb, "store": "s3 (moto)" if args.s3 else "local folder",
                "kek": "local key file", "encrypt_store": alone, "through_app": app, "cpus": os.cpu_count(),
                "schema": await schema_checksums(admin_url)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--s3", action="store_true", help="store in a moto S3 server started here")
    add_schema_argument(parser)
    emit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
