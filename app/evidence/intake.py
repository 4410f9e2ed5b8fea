"""Receiving an uploaded file: streamed to a private spool file, hashed and counted as it arrives, cut off at the limit.

Quart reads a multipart form with werkzeug's sans-IO parser and hands each
file part to a "stream factory"; its default keeps small files in memory
and large ones in an anonymous temporary file. For the evidence upload
endpoints the factory here is used instead: a `Spool` that writes to a file
in `<data dir>/spool` (0600 in a 0700 folder), feeds SHA-256 with the same
bytes, and raises 413 the moment the file passes the limit. Memory holds one
piece of the body at a time, whatever the file's size.

The body starts arriving as soon as the request exists, and the form is
parsed by the CSRF check, before any view: so the limit is decided when the
request is made. `UploadRequest` finds its endpoint in the URL map then and,
for an evidence upload, lets `UploadBody` (Quart's body, its limit counted
on everything received, not on what is buffered) take the file's limit
plus the form around it; a Content-Length above that is refused before a
byte is read, a body that grows past it as soon as it does. Before
parsing, an upload without a session cookie, not multipart or without a
Content-Length is refused. Every spool is closed (deleted) when the
request ends, however it ends, unless the upload pipeline took it over.

`install(app, ...)` puts them in place; the evidence blueprint does it when
registered. Every other endpoint keeps Quart's MAX_CONTENT_LENGTH and body timeout.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Awaitable, Callable

from quart import Quart
from quart.formparser import FormDataParser
from quart.wrappers.request import Body, Request
from werkzeug.exceptions import (BadRequest, Forbidden, HTTPException, LengthRequired, RequestEntityTooLarge,
                                 UnsupportedMediaType)
from werkzeug.routing import Map, RoutingException

FORM_OVERHEAD = 64 * 1024     # boundaries, part headers and the CSRF field around the file
STALE_SPOOL_SECONDS = 3600
# Quart gives a body 60 s to arrive; a 50 MB file over a slow uplink needs longer.
UPLOAD_SECONDS = 600


class EvidenceTooLarge(RequestEntityTooLarge):
    def __init__(self, limit: int):
        super().__init__(f"The file is larger than the limit of {limit // (1024 * 1024)} MB. Nothing was stored.")


def spool_dir(data_dir: Path) -> Path:
    path = Path(data_dir) / "spool"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def sweep_spool(data_dir: Path, older_than: float = STALE_SPOOL_SECONDS) -> int:
    """Remove spool files a crashed process left behind; how many."""
    removed = 0
    cutoff = time.time() - older_than
    for path in spool_dir(data_dir).iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class Spool:
    """One uploaded file on its way in: a private temporary file, its SHA-256 and size, refused past `limit`."""

    def __init__(self, directory: Path, limit: int):
        fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)   # 0600, O_EXCL
        self.path = Path(name)
        self._file: IO[bytes] = os.fdopen(fd, "w+b")
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.limit = limit
        self._handed_over = False

    # The file-object methods the form parser uses.
    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise EvidenceTooLarge(self.limit)
        self._sha256.update(data)
        return self._file.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._file.flush()
        return self._file.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    @property
    def sha256(self) -> bytes:
        return self._sha256.digest()

    def hand_over(self) -> "Spool":
        """The upload pipeline owns the file from now on; the end of the request no longer deletes it."""
        self._file.flush()
        self._handed_over = True
        return self

    def close(self) -> None:
        if not self._handed_over:
            self.discard()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class UploadBody(Body):
    """Quart's request body with its limit on everything received (not on what is buffered), adjustable until read."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, None)
        self.expected = expected_content_length
        self.received = 0
        self.limit: int | None = None
        self._too_large = RequestEntityTooLarge()
        self.allow(max_content_length)

    def allow(self, limit: int | None, error: RequestEntityTooLarge | None = None) -> None:
        """Set the limit; a Content-Length above it is refused on the first read, before any byte is used."""
        self.limit = limit
        self._too_large = error or RequestEntityTooLarge()
        too_large = limit is not None and self.expected is not None and self.expected > limit
        self._must_raise = self._too_large if too_large else None

    def append(self, data: bytes) -> None:
        self.received += len(data)
        if self.limit is not None and self.received > self.limit:
            # A body that grows past the limit (a false Content-Length, or none) ends here.
            if self._must_raise is None:
                self._must_raise = self._too_large
                self.set_complete()
            return
        super().append(data)


class UploadRequest(Request):
    """The app's request class: evidence upload endpoints spool their file; every other request is Quart's."""

    body_class = UploadBody
    upload_limits: dict[str, int] = {}     # endpoint -> the largest file it takes, in bytes (per app: install)
    url_map: Map | None = None
    spool_directory: Path
    admission: Callable[[], Awaitable[None]] | None = None   # raises an HTTPException to refuse an upload

    def __init__(self, method: str, scheme: str, path: str, *args, **kwargs) -> None:
        super().__init__(method, scheme, path, *args, **kwargs)
        self.spools: list[Spool] = []
        # Decided now, before the server hands over the first byte: a limit raised after routing would come
        # too late for a body already arriving (and cut at the app's smaller limit).
        self.upload_limit = self._limit_for(method, path)
        if self.upload_limit is not None:
            self.body.allow(self.upload_limit + FORM_OVERHEAD, EvidenceTooLarge(self.upload_limit))
            self.body_timeout = UPLOAD_SECONDS

    def _limit_for(self, method: str, path: str) -> int | None:
        if method not in ("POST", "PUT") or self.url_map is None or not self.upload_limits:
            return None
        try:
            endpoint, _ = self.url_map.bind("localhost", path_info=path).match(method=method)
        except (HTTPException, RoutingException):
            return None
        return self.upload_limits.get(endpoint)

    def admit_upload(self) -> None:
        """Before a byte is read: an upload comes from a signed-in browser, as a multipart form of a known length."""
        from app.web.cookies import name

        if not self.cookies.get(name("session")):
            raise Forbidden("Sign in to upload evidence.")
        if self.mimetype != "multipart/form-data":
            raise UnsupportedMediaType("Evidence is uploaded as a multipart form (enctype multipart/form-data).")
        if self.content_length is None:
            raise LengthRequired("An upload must say its length (Content-Length).")

    async def _load_form_data(self) -> None:
        # Quart reads and parses the body here, on the first look at the form (the CSRF check's). An upload is
        # admitted first: checked as above, and its session found live, so nobody signed out spools a file.
        if self.upload_limit is not None and self._form is None:
            self.admit_upload()
            if self.admission is not None:
                await self.admission()
        await super()._load_form_data()

    def make_form_data_parser(self) -> FormDataParser:
        limit = self.upload_limit
        if limit is None:
            return super().make_form_data_parser()

        def spool_factory(total_content_length, content_type, filename, content_length) -> Spool:
            if self.spools:
                raise BadRequest("Send one file per upload.")
            self.spools.append(Spool(self.spool_directory, limit))
            return self.spools[-1]

        return self.form_data_parser_class(
            max_content_length=limit + FORM_OVERHEAD, max_form_memory_size=FORM_OVERHEAD, max_form_parts=10,
            cls=self.parameter_storage_class, stream_factory=spool_factory)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            for spool in self.spools:
                spool.close()


def install(app: Quart, data_dir: Path, upload_limits: dict[str, int],
            admission: Callable[[], Awaitable[None]] | None = None) -> None:
    """This app's requests spool the files of these endpoints (endpoint -> largest file in bytes), once
    `admission` (run in the request's context before the body is read) has let them in."""
    app.request_class = type("UploadRequest", (UploadRequest,), {
        "spool_directory": spool_dir(data_dir), "upload_limits": dict(upload_limits), "url_map": app.url_map,
        "admission": staticmethod(admission) if admission else None})
