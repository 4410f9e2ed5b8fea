"""A 50 MB file goes in and comes out over a real HTTP server with memory that does not grow with it.

The app is served by Hypercorn on a loopback port (tests/browser's
`live_url`, in this process, so tracemalloc sees the server and the client alike) and httpx streams the
multipart body from a generator, as a browser streams a file from disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc

import httpx

from tests.evidence.helpers import an_exception, rows

MiB = 1024 * 1024
SIZE = 50 * MiB            # the default limit, exactly
LINE = b"2026-11-01T10:00:00Z allow tcp 203.0.113.7:40122 -> 10.0.0.21:21 rule 17 (ftp01, vendor upload)\n"
# Measured: 11 MiB at the peak for a 10 MiB file and for a 50 MiB one (the parser's, the scanner's and the
# cipher's windows of about 1 MiB each, in server and client); a third of the file leaves room, not growth.
PEAK_LIMIT = 16 * MiB


def text_file(size: int):
    block = LINE * (64 * 1024 // len(LINE))
    whole, rest = divmod(size, len(block))
    for _ in range(whole):
        yield block
    yield block[:rest]


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for piece in text_file(size):
        digest.update(piece)
    return digest.hexdigest()


async def streamed_body(csrf: str, size: int, boundary: str):
    yield (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{csrf}\r\n'
           f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="firewall.log"\r\n'
           "Content-Type: text/plain\r\n\r\n").encode()
    for piece in text_file(size):
        yield piece
        await asyncio.sleep(0)
    yield f"\r\n--{boundary}--\r\n".encode()


async def _collect_edges(csrf: str, boundary: str) -> list[bytes]:
    return [p async for p in streamed_body(csrf, 0, boundary) if p]


def cookie_header(browser) -> str:
    return "; ".join(f"{k}={v}" for k, v in browser.cookies.items())


async def test_a_50_mb_upload_and_download_keep_memory_flat(team, live_url, pool, admin, tenant, settings):
    e = await an_exception(pool, tenant, team)
    rhea, aud = team["Rhea"].browser, team["Aud"].browser
    boundary = "----exceptao-memory"
    edges = sum(len(p) for p in await _collect_edges(rhea.csrf, boundary))
    async with httpx.AsyncClient(base_url=f"http://{live_url}", timeout=120) as client:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            response = await client.post(
                f"{e}/evidence", content=streamed_body(rhea.csrf, SIZE, boundary),
                headers={"Host": rhea.host, "Cookie": cookie_header(rhea), "Content-Length": str(edges + SIZE),
                         "Content-Type": f"multipart/form-data; boundary={boundary}"})
            upload_peak = tracemalloc.get_traced_memory()[1]
            assert response.status_code == 303, response.text[-1500:]
            evidence_id = response.headers["Location"].split("/")[2]

            tracemalloc.reset_peak()
            digest, size = hashlib.sha256(), 0
            async with client.stream("GET", f"/evidence/{evidence_id}",
                                     headers={"Host": aud.host, "Cookie": cookie_header(aud)}) as download:
                assert download.status_code == 200
                async for piece in download.aiter_bytes():
                    digest.update(piece)
                    size += len(piece)
            download_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    [row] = await rows(admin, tenant)
    assert row["size"] == SIZE and row["sha256"].hex() == expected_sha256(SIZE) and row["state"] == "stored"
    assert size == SIZE and digest.hexdigest() == row["sha256"].hex()
    assert upload_peak < PEAK_LIMIT, f"upload peak {upload_peak / MiB:.1f} MiB for a {SIZE // MiB} MiB file"
    assert download_peak < PEAK_LIMIT, f"download peak {download_peak / MiB:.1f} MiB for a {SIZE // MiB} MiB file"
