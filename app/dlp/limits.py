"""How much work one file may cost, and the refusal when it is more or the file cannot be read."""

from __future__ import annotations

import time
from dataclasses import dataclass

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """How much work one file may cost; past any of them the file is unscannable."""

    zip_members: int = 5_000             # entries in an Office file's ZIP directory
    zip_member_bytes: int = 64 * MiB     # uncompressed bytes read from one entry
    zip_total_bytes: int = 256 * MiB     # uncompressed bytes read from the whole file
    zip_ratio: int = 100                 # uncompressed / compressed bytes of one entry ...
    zip_ratio_floor: int = 1 * MiB       # ... once the entry has produced this much
    pdf_pages: int = 2_000
    pdf_stream_bytes: int = 64 * MiB     # one decompressed PDF stream
    pdf_text_bytes: int = 256 * MiB      # text extracted from all pages
    seconds: float = 120.0               # wall time for one file


class Unscannable(Exception):
    """The file cannot be read completely; `reason` says why, in a few words."""

    def __init__(self, reason: str, file_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.file_type = file_type  # as far as it was recognised


class Deadline:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self._end:
            raise Unscannable(f"took longer than {self._seconds:g} s")

