"""The chunked file format: round trips of every awkward size, flat memory, and every way stored bytes can be tampered with."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import uuid

import pytest

from app.crypto import Tampered
from app.crypto.keys import DataKey, UnknownKey
from app.crypto.stream import (CHUNK_SIZE, HEADER_SIZE, decrypt, decrypt_bytes, encrypt, encrypt_bytes, key_id_of,
                               sealed_size)

SEALED = CHUNK_SIZE + 16
AAD = b"tenant:7f0c/evidence:91aa"


def new_key() -> DataKey:
    return DataKey(uuid.uuid4(), os.urandom(32))


async def pieces(data: bytes, sizes=(1, 7, 4096, CHUNK_SIZE + 3, 100_000)):
    """`data` cut into pieces of uneven sizes, as a network upload arrives."""
    at, i = 0, 0
    while at < len(data):
        size = sizes[i % len(sizes)]
        yield data[at:at + size]
        at, i = at + size, i + 1


async def sealed_of(key: DataKey, data: bytes, aad: bytes = AAD) -> bytes:
    return b"".join([c async for c in encrypt(key, pieces(data), aad=aad)])


async def opened(key, sealed: bytes, aad: bytes = AAD, *, piece_sizes=(1000, SEALED, 3)) -> tuple[bytes, Exception | None]:
    """What decrypt yielded before it stopped, and why it stopped (None: it finished)."""
    out = []
    try:
        async for plaintext in decrypt(key, pieces(sealed, piece_sizes), aad=aad):
            out.append(plaintext)
    except Exception as exc:
        return b"".join(out), exc
    return b"".join(out), None


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 5 * CHUNK_SIZE + 123])
async def test_round_trip_of_every_awkward_size(size):
    key, data = new_key(), os.urandom(size)
    sealed = await sealed_of(key, data)
    assert len(sealed) == sealed_size(size)
    assert key_id_of(sealed[:HEADER_SIZE]) == key.id
    assert await opened(key, sealed) == (data, None)
    assert decrypt_bytes(key, encrypt_bytes(key, data, aad=AAD), aad=AAD) == data


async def test_decrypt_yields_chunk_by_chunk_and_looks_the_key_up_by_the_id_in_the_header():
    key, data = new_key(), os.urandom(3 * CHUNK_SIZE + 5)
    asked = []

    async def lookup(key_id):
        asked.append(key_id)
        return key.key

    sizes = [len(p) async for p in decrypt(lookup, pieces(await sealed_of(key, data), (SEALED,)), aad=AAD)]
    assert asked == [key.id] and sizes == [CHUNK_SIZE] * 3 + [5]


async def test_the_same_plaintext_never_encrypts_alike():
    key, data = new_key(), b"x" * 1000
    assert await sealed_of(key, data) != await sealed_of(key, data)


async def test_fifty_megabytes_stream_through_in_flat_memory():
    """50 MB encrypted and decrypted end to end while tracemalloc's peak stays a few chunks, not the file."""
    key, total, piece = new_key(), 50 * 1024 * 1024, os.urandom(1024 * 1024)

    async def upload():
        for _ in range(total // len(piece)):
            yield piece

    digest, count = hashlib.sha256(), 0
    tracemalloc.start()
    try:
        async for plaintext in decrypt(key, encrypt(key, upload(), aad=AAD), aad=AAD):
            digest.update(plaintext)
            count += len(plaintext)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == total
    assert digest.digest() == hashlib.sha256(piece * (total // len(piece))).digest()
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a 50 MiB file"


# Stored bytes tampered with. Each must raise Tampered, and whatever was yielded
# before must be genuine plaintext from the start of the file (authenticated chunks only).

DATA = os.urandom(3 * CHUNK_SIZE + 1000)  # four chunks: three full, one short and final


def chunk(sealed: bytes, i: int) -> slice:
    return slice(HEADER_SIZE + i * SEALED, HEADER_SIZE + (i + 1) * SEALED)


def flip(sealed: bytes, at: int) -> bytes:
    return sealed[:at] + bytes([sealed[at] ^ 0x01]) + sealed[at + 1:]


def swap(sealed: bytes, i: int, j: int) -> bytes:
    parts = [sealed[:HEADER_SIZE]] + [sealed[chunk(sealed, k)] for k in range(4)]
    parts[1 + i], parts[1 + j] = parts[1 + j], parts[1 + i]
    return b"".join(parts)


TAMPERINGS = {
    "magic": lambda s, other: flip(s, 0),
    "format version": lambda s, other: flip(s, 7),
    "key id in header": lambda s, other: flip(s, 10),
    "salt in header": lambda s, other: flip(s, 30),
    "nonce prefix in header": lambda s, other: flip(s, HEADER_SIZE - 1),
    "byte in first chunk": lambda s, other: flip(s, HEADER_SIZE + 5),
    "byte in middle chunk": lambda s, other: flip(s, HEADER_SIZE + SEALED + CHUNK_SIZE // 2),
    "tag of a chunk": lambda s, other: flip(s, HEADER_SIZE + 2 * SEALED - 1),
    "tag of the last chunk": lambda s, other: flip(s, len(s) - 1),
    "last chunk dropped": lambda s, other: s[:HEADER_SIZE + 3 * SEALED],
    "last two chunks dropped": lambda s, other: s[:HEADER_SIZE + 2 * SEALED],
    "cut mid-chunk": lambda s, other: s[:HEADER_SIZE + SEALED + 1234],
    "cut inside the last tag": lambda s, other: s[:-3],
    "cut inside the header": lambda s, other: s[:HEADER_SIZE - 1],
    "header only": lambda s, other: s[:HEADER_SIZE],
    "nothing at all": lambda s, other: b"",
    "two chunks swapped": lambda s, other: swap(s, 0, 1),
    "middle chunks swapped": lambda s, other: swap(s, 1, 2),
    "chunk from another file spliced in": lambda s, other: s[:chunk(s, 1).start] + other[chunk(other, 1)] + s[chunk(s, 1).stop:],
    "header of another file": lambda s, other: other[:HEADER_SIZE] + s[HEADER_SIZE:],
    "chunk appended": lambda s, other: s + other[chunk(other, 0)],
    "final chunk repeated": lambda s, other: s + s[chunk(s, 3).start:],
    "byte appended": lambda s, other: s + b"\x00",
}


@pytest.mark.parametrize("how", list(TAMPERINGS))
async def test_tampered_stored_bytes_are_refused_without_unauthenticated_plaintext(how):
    key = new_key()
    sealed, other = await sealed_of(key, DATA), await sealed_of(key, DATA)
    for piece_sizes in ((SEALED,), (1, 999, 70_000)):
        out, error = await opened(key, TAMPERINGS[how](sealed, other), piece_sizes=piece_sizes)
        assert isinstance(error, Tampered), (how, error)
        assert str(error)
        assert DATA.startswith(out), f"{how}: yielded bytes that are not the file's"
        assert len(out) % CHUNK_SIZE == 0, f"{how}: yielded part of a chunk"


async def test_wrong_aad_wrong_key_and_unknown_key_are_refused_before_any_plaintext():
    key = new_key()
    sealed = await sealed_of(key, DATA)
    out, error = await opened(key, sealed, aad=b"tenant:other/evidence:91aa")
    assert out == b"" and isinstance(error, Tampered)

    out, error = await opened(DataKey(key.id, os.urandom(32)), sealed)
    assert out == b"" and isinstance(error, Tampered)

    out, error = await opened(new_key(), sealed)  # a key of another id: refused on the header alone
    assert out == b"" and isinstance(error, Tampered) and str(key.id) in str(error)

    async def no_such_key(key_id):
        raise UnknownKey(key_id)

    out, error = await opened(no_such_key, sealed)
    assert out == b"" and isinstance(error, Tampered)

    with pytest.raises(ValueError, match="aad"):
        encrypt_bytes(key, b"bound to nothing", aad=b"")


def test_a_data_key_never_shows_its_bytes():
    key = new_key()
    for text in (repr(key), str(key), f"{key}"):
        assert str(key.id) in text
        assert key.key.hex() not in text and repr(key.key) not in text
