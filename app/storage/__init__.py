"""Object storage behind one interface: a local folder (the embedded default) or an S3-compatible store.

What is stored is already encrypted by its owner (evidence with the tenant's
data key); a store only keeps bytes under a name. Names are opaque: random,
made by `new_object_name`, never a tenant's name or a file's name, so a
listing of the bucket tells nobody whose files they are or what they hold.

    put(name, chunks) -> bytes stored     the folder refuses a name in use (ObjectExists); on S3 the
                                          128 random bits of a name are what keeps it unique
    get(name)         -> async chunks     ObjectMissing on the first chunk if absent
    delete(name)                          nothing happens when it is absent
    exists(name)      -> bool

`open_store(settings)`: S3 when EXCEPTAO_S3_BUCKET is set, else the folder
`<data dir>/objects` (app/config.py documents the settings).
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, AsyncIterable, AsyncIterator, Protocol

if TYPE_CHECKING:
    from app.config import Settings

# Segments of letters, digits, '.', '_' and '-', each starting with a letter or
# digit (so no '..' and no hidden files), joined by '/'. Stricter than S3 needs:
# the same name must be a safe relative path in the local folder.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
NAME_LIMIT = 512


class StorageError(RuntimeError):
    pass


class ObjectMissing(StorageError, LookupError):
    pass


class ObjectExists(StorageError):
    pass


class BadObjectName(StorageError, ValueError):
    pass


def checked_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > NAME_LIMIT or not _NAME.match(name):
        raise BadObjectName(f"not an object name: {name!r}")
    return name


def new_object_name(kind: str) -> str:
    """`<kind>/<2 hex>/<32 hex>`: 128 random bits; the two-character folder keeps local directories small."""
    token = secrets.token_hex(16)
    return checked_name(f"{kind}/{token[:2]}/{token}")


class ObjectStore(Protocol):
    async def put(self, name: str, chunks: AsyncIterable[bytes]) -> int: ...

    def get(self, name: str) -> AsyncIterator[bytes]: ...

    async def delete(self, name: str) -> None: ...

    async def exists(self, name: str) -> bool: ...

    async def close(self) -> None: ...


def open_store(settings: "Settings") -> ObjectStore:
    if settings.s3_bucket:
        from app.storage.s3 import S3Store

        return S3Store.from_settings(settings)
    from app.storage.local import LocalStore

    return LocalStore(settings.storage_dir)
