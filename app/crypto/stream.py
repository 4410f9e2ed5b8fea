"""Files encrypted under a tenant's data key: AES-256-GCM in 64 KiB chunks, each authenticated on its own.

The construction is STREAM (Hoang, Reyhanitabar, Rogaway, Vizár, "Online
Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015),
with a per-file key as in Tink's AES-GCM-HKDF streaming AEAD:

    header  = MAGIC(7) ‖ VERSION(1) ‖ data key id(16) ‖ salt(16) ‖ nonce prefix(8)        48 bytes
    file key = HKDF-SHA256(data key, salt, "exceptao/stream/v1" ‖ key id)
    chunk i  = AES-256-GCM(file key, nonce = prefix ‖ i (u32, big-endian),
                           aad = header ‖ SHA-256(caller's aad) ‖ i (u64) ‖ final (u8),
                           plaintext: 64 KiB, the last chunk 0 to 64 KiB)

Every chunk but the last is full; a file ends with exactly one chunk marked
final (an empty file is one empty final chunk). So a flipped byte, a chunk
moved, swapped, dropped or taken from another file, a cut tail and anything
appended all fail a tag, and so does the wrong caller aad (say another
tenant's or another evidence's id). The per-file key (random 128-bit salt)
keeps nonces from colliding across the many files of one data key.

Decrypting yields each chunk only after its tag verified. A stream cut at a
chunk boundary is found at its end, after the chunks before it were yielded:
a caller that must not release any part of a truncated file finishes reading
before it commits to anything (a download checks its SHA-256 at the end too).
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from typing import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.crypto import Tampered
from app.crypto.keys import DataKey

CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
SEALED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
MAGIC = b"XTAOENC"
VERSION = 1
HEADER_SIZE = 48
_KEY_ID, _SALT, _PREFIX = slice(8, 24), slice(24, 40), slice(40, 48)  # where each field sits in the header
_MAX_CHUNKS = 2**32  # the nonce's counter; 256 TiB, far past any evidence file

KeyLookup = Callable[[UUID], Awaitable["bytes | DataKey"]]

__all__ = ["CHUNK_SIZE", "HEADER_SIZE", "Tampered", "decrypt", "decrypt_bytes", "decrypt_iter", "encrypt",
           "encrypt_bytes", "encrypt_iter", "key_id_of", "sealed_size"]


class _Chunks:
    """The chunk cipher of one file: its key, nonce prefix and the associated data every chunk binds."""

    def __init__(self, data_key: bytes, header: bytes, aad: bytes):
        if not aad:
            raise ValueError("aad must name what the file belongs to (its tenant and record), so it cannot be moved")
        file_key = HKDF(hashes.SHA256(), 32, header[_SALT], b"exceptao/stream/v1" + header[_KEY_ID]).derive(data_key)
        self._aead = AESGCM(file_key)
        self._prefix = header[_PREFIX]
        self._bound = header + hashlib.sha256(aad).digest()
        self.index = 0

    def _nonce_and_aad(self, final: bool) -> tuple[bytes, bytes]:
        return (self._prefix + struct.pack(">I", self.index),
                self._bound + struct.pack(">QB", self.index, final))

    def seal(self, plaintext: bytes, final: bool) -> bytes:
        if self.index >= _MAX_CHUNKS:
            raise ValueError("the file is larger than the encrypted format allows (256 TiB)")
        nonce, aad = self._nonce_and_aad(final)
        self.index += 1
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, final: bool) -> bytes:
        if self.index >= _MAX_CHUNKS:
            raise Tampered("the encrypted file has more chunks than its format allows")
        nonce, aad = self._nonce_and_aad(final)
        try:
            plaintext = self._aead.decrypt(nonce, sealed, aad)
        except InvalidTag:
            where = "its last chunk" if final else f"chunk {self.index}"
            raise Tampered(f"the encrypted file failed authentication at {where}: it was changed, cut, "
                           "reordered, or belongs to another record") from None
        self.index += 1
        return plaintext


def _header(key_id: UUID) -> bytes:
    return MAGIC + bytes([VERSION]) + key_id.bytes + secrets.token_bytes(16) + secrets.token_bytes(8)


def _parse_header(header: bytes) -> UUID:
    if len(header) < HEADER_SIZE:
        raise Tampered("the encrypted file is cut short: its header is incomplete")
    if header[:len(MAGIC)] != MAGIC:
        raise Tampered("not an Exceptao encrypted file (its header was changed or it was never encrypted)")
    if header[len(MAGIC)] != VERSION:
        raise Tampered(f"unknown encrypted file format version {header[len(MAGIC)]}")
    return UUID(bytes=bytes(header[_KEY_ID]))


class _Sealer:
    """Re-chunks plaintext of any piece sizes; holds back at least one byte so the last chunk can be marked final."""

    def __init__(self, key: DataKey, aad: bytes):
        self.header = _header(key.id)
        self._chunks = _Chunks(key.key, self.header, aad)
        self._pending = bytearray()

    def push(self, piece: bytes) -> list[bytes]:
        self._pending += piece
        full = max(len(self._pending) - 1, 0) // CHUNK_SIZE  # keep >= 1 byte back: it may be the end
        sealed = [self._chunks.seal(self._pending[i * CHUNK_SIZE:(i + 1) * CHUNK_SIZE], final=False)
                  for i in range(full)]
        del self._pending[:full * CHUNK_SIZE]
        return sealed

    def finish(self) -> bytes:
        last = self._chunks.seal(bytes(self._pending), final=True)
        self._pending.clear()
        return last


class _Opener:
    """Splits the sealed stream into chunks; one sealed chunk is held back until the next shows it is not the last."""

    def __init__(self, data_key: bytes, header: bytes, aad: bytes):
        self._chunks = _Chunks(data_key, header, aad)
        self._pending = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._pending += data
        full = max(len(self._pending) - 1, 0) // SEALED_CHUNK_SIZE
        opened = [self._chunks.open(self._pending[i * SEALED_CHUNK_SIZE:(i + 1) * SEALED_CHUNK_SIZE], final=False)
                  for i in range(full)]
        del self._pending[:full * SEALED_CHUNK_SIZE]
        return opened

    def finish(self) -> bytes:
        if len(self._pending) < TAG_SIZE:
            raise Tampered("the encrypted file is cut short: its last chunk is missing")
        return self._chunks.open(bytes(self._pending), final=True)


def _key_for(header_key_id: UUID, key: bytes | DataKey) -> bytes:
    if isinstance(key, DataKey):
        if key.id != header_key_id:
            raise Tampered(f"the file names data key {header_key_id}, not the key {key.id} it was opened with")
        return key.key
    return key


async def encrypt(key: DataKey, chunks: AsyncIterable[bytes], *, aad: bytes) -> AsyncIterator[bytes]:
    """The sealed stream: the header, then one sealed chunk per 64 KiB of plaintext (input pieces of any size)."""
    sealer = _Sealer(key, aad)
    yield sealer.header
    async for piece in chunks:
        for sealed in sealer.push(piece):
            yield sealed
    yield sealer.finish()


async def decrypt(lookup: KeyLookup | DataKey, chunks: AsyncIterable[bytes], *, aad: bytes) -> AsyncIterator[bytes]:
    """The plaintext, chunk by chunk, each yielded only once authenticated; Tampered on any failure.

    `lookup` is the data key itself, or an async function from the key id in
    the header to the key (bytes or a DataKey), e.g.
    `lambda key_id: key_by_id(conn, settings, key_id)`; a LookupError from it
    (no such key for this tenant) is reported as Tampered.
    """
    source = aiter(chunks)
    header = bytearray()
    async for piece in source:
        header += piece
        if len(header) >= HEADER_SIZE:
            break
    key_id = _parse_header(header)
    if isinstance(lookup, DataKey):
        data_key = _key_for(key_id, lookup)
    else:
        try:
            data_key = _key_for(key_id, await lookup(key_id))
        except LookupError:
            raise Tampered(f"the file names data key {key_id}, which this tenant does not have") from None
    opener = _Opener(data_key, bytes(header[:HEADER_SIZE]), aad)
    for plaintext in opener.push(bytes(header[HEADER_SIZE:])):
        yield plaintext
    async for piece in source:
        for plaintext in opener.push(piece):
            yield plaintext
    yield opener.finish()


def encrypt_iter(key: DataKey, chunks: Iterable[bytes], *, aad: bytes) -> Iterator[bytes]:
    """`encrypt` for synchronous code (a worker thread, a command)."""
    sealer = _Sealer(key, aad)
    yield sealer.header
    for piece in chunks:
        yield from sealer.push(piece)
    yield sealer.finish()


def decrypt_iter(key: DataKey, chunks: Iterable[bytes], *, aad: bytes) -> Iterator[bytes]:
    """`decrypt` for synchronous code, with the data key already in hand."""
    source = iter(chunks)
    header = bytearray()
    for piece in source:
        header += piece
        if len(header) >= HEADER_SIZE:
            break
    opener = _Opener(_key_for(_parse_header(header), key), bytes(header[:HEADER_SIZE]), aad)
    yield from opener.push(bytes(header[HEADER_SIZE:]))
    for piece in source:
        yield from opener.push(piece)
    yield opener.finish()


def encrypt_bytes(key: DataKey, plaintext: bytes, *, aad: bytes) -> bytes:
    return b"".join(encrypt_iter(key, [plaintext], aad=aad))


def decrypt_bytes(key: DataKey, sealed: bytes, *, aad: bytes) -> bytes:
    return b"".join(decrypt_iter(key, [sealed], aad=aad))


def sealed_size(plaintext_size: int) -> int:
    """How many bytes a plaintext of this size takes encrypted (for a storage quota or a Content-Length)."""
    return HEADER_SIZE + plaintext_size + TAG_SIZE * (max(plaintext_size - 1, 0) // CHUNK_SIZE + 1)


def key_id_of(header: bytes) -> UUID:
    """The data key a sealed file names; Tampered if `header` (its first HEADER_SIZE bytes) is not one."""
    return _parse_header(header)
