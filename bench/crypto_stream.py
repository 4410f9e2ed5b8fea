"""Encrypting and decrypting an evidence-sized stream (app/crypto/stream.py), and what it costs in memory.

A `--mb` MiB plaintext arrives in 64 KiB pieces (as an upload does); it is
encrypted, and the sealed stream decrypted, through the async API the upload and
download paths use. For each direction: MB/s over `--rounds` rounds (the best
and the median), and the peak of Python allocations (tracemalloc) in one
separate round. No database, no Vault: the data key is in hand, as it is once
unwrapped and cached. Run from the repository root:

    python bench/crypto_stream.py [--mb 50] [--rounds 5]

The figures are printed as one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import tracemalloc
import uuid

from app.crypto.keys import DataKey
from app.crypto.stream import CHUNK_SIZE, decrypt, encrypt

AAD = b"tenant/evidence"


async def source(pieces: list[bytes]):
    for piece in pieces:
        yield piece


async def drain(stream) -> int:
    total = 0
    async for part in stream:
        total += len(part)
    return total


async def collect(stream) -> list[bytes]:
    return [part async for part in stream]


async def timed(make_stream) -> float:
    started = time.perf_counter()
    await drain(make_stream())
    return time.perf_counter() - started


async def peak(make_stream) -> int:
    tracemalloc.start()
    try:
        await drain(make_stream())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def run(mb: int, rounds: int) -> dict:
    key = DataKey(uuid.uuid4(), os.urandom(32))
    block = os.urandom(CHUNK_SIZE)
    plaintext = [block] * (mb * 1024 * 1024 // CHUNK_SIZE)
    sealed = await collect(encrypt(key, source(plaintext), aad=AAD))
    size = mb * 1024 * 1024

    def encrypting():
        return encrypt(key, source(plaintext), aad=AAD)

    def decrypting():
        return decrypt(key, source(sealed), aad=AAD)

    figures = {"mb": mb, "chunk_bytes": CHUNK_SIZE, "rounds": rounds}
    for name, make in (("encrypt", encrypting), ("decrypt", decrypting)):
        seconds = [await timed(make) for _ in range(rounds)]
        figures[name] = {
            "mb_per_s_best": round(size / min(seconds) / 1e6, 1),
            "mb_per_s_median": round(size / statistics.median(seconds) / 1e6, 1),
            "peak_alloc_mib": round(await peak(make) / 2**20, 2),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.mb, args.rounds))))


if __name__ == "__main__":
    main()
