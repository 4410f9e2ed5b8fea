"""The local-folder store: the embedded default, under the data directory.

An object is written to a temporary file in `<root>/.incoming` (same file
system), flushed to disk, then hard-linked to its name: the link appears
whole or not at all, and fails if the name exists (write once, never
clobbered). Names are checked twice: by pattern, and by resolving the path
and refusing anything outside the root (a symlink planted in the folder
cannot lead a name out of it). Files are 0600 in 0700 folders.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import AsyncIterable, AsyncIterator

from app.storage import BadObjectName, ObjectExists, ObjectMissing, checked_name

READ_CHUNK = 1024 * 1024
INCOMING = ".incoming"   # starts with a dot: no object name can reach it


class LocalStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        checked_name(name)
        root = self.root.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or path == root:
            raise BadObjectName(f"{name!r} leads outside the store")
        return path

    def _prepare(self) -> Path:
        incoming = self.root / INCOMING
        incoming.mkdir(mode=0o700, parents=True, exist_ok=True)
        return incoming

    async def put(self, name: str, chunks: AsyncIterable[bytes]) -> int:
        path = self._path(name)
        incoming = await asyncio.to_thread(self._prepare)
        temporary = incoming / secrets.token_hex(16)
        fd = await asyncio.to_thread(os.open, temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        size = 0
        try:
            with os.fdopen(fd, "wb") as file:
                async for chunk in chunks:
                    await asyncio.to_thread(file.write, chunk)
                    size += len(chunk)
                await asyncio.to_thread(file.flush)
                await asyncio.to_thread(os.fsync, file.fileno())
            await asyncio.to_thread(self._publish, temporary, path)
        finally:
            # Whatever happened (an error, a cancelled request), no partial file stays.
            temporary.unlink(missing_ok=True)
        return size

    def _publish(self, temporary: Path, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.parent.resolve().is_relative_to(self.root.resolve()):
            raise BadObjectName(f"{path.name!r} leads outside the store")
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise ObjectExists(f"an object named {path.name!r} exists") from None
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)   # the name itself survives a crash, not only the bytes
        finally:
            os.close(directory)

    async def get(self, name: str) -> AsyncIterator[bytes]:
        path = self._path(name)
        try:
            fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ObjectMissing(name) from None
        with os.fdopen(fd, "rb", buffering=0) as file:
            while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
                yield chunk

    async def delete(self, name: str) -> None:
        path = self._path(name)
        await asyncio.to_thread(path.unlink, True)

    async def exists(self, name: str) -> bool:
        path = self._path(name)
        return await asyncio.to_thread(path.is_file)

    async def close(self) -> None:
        return None
