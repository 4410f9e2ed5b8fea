"""Text out of a file for the scanner: plain text here, PDF in `pdf`, Office Open XML in `office`.

The type is decided by content, never by name: `%PDF-` is a PDF, a ZIP holding
`[Content_Types].xml` is an Office document (which one by its main part), bytes
without NULs are text (UTF-8, else Windows-1252: both ASCII-compatible, which is
all the scanner needs; UTF-16 by its byte-order mark or its zero bytes is decoded).

A file we cannot read completely is refused with `Unscannable(reason)`, never a
crash and never a partial expansion: see `limits`.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import BinaryIO

from app.dlp.detect import Scanner
from app.dlp.limits import Deadline, Limits, MiB, Unscannable
from app.dlp.office import feed_ooxml
from app.dlp.pdf import feed_pdf

_READ = MiB
_SNIFF = 64 * 1024


def sniff(head: bytes) -> str:
    """The file type by its first bytes: pdf, zip, text, utf-16-le/-be (text), or binary."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(codecs.BOM_UTF16_LE) and not head.startswith(codecs.BOM_UTF32_LE):
        return "utf-16-le"
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be"
    if b"\x00" not in head:
        return "text"
    # UTF-16 without a byte-order mark: mostly ASCII, so every other byte is zero.
    even, odd = head[0::2], head[1::2]
    if len(head) >= 4 and even.count(0) == 0 and odd.count(0) > 0.9 * len(odd):
        return "utf-16-le"
    if len(head) >= 4 and odd.count(0) == 0 and even.count(0) > 0.9 * len(even):
        return "utf-16-be"
    return "binary"


def extract(path: Path, scanner: Scanner, limits: Limits) -> str:
    """Feed the file's text to `scanner`; return its type (text, pdf, docx, xlsx, pptx). Raises Unscannable."""
    deadline = Deadline(limits.seconds)
    with open(path, "rb") as f:
        head = f.read(_SNIFF)
        kind = sniff(head)
        try:
            return _extract(f, head, kind, scanner, limits, deadline)
        except Unscannable as refused:
            refused.file_type = refused.file_type or ("text" if kind.startswith("utf-16") else kind)
            raise


def _extract(f: BinaryIO, head: bytes, kind: str, scanner: Scanner, limits: Limits, deadline: Deadline) -> str:
    if kind == "text":
        _feed_bytes(f, head, scanner, deadline)
        return "text"
    if kind.startswith("utf-16"):
        _feed_utf16(f, head, kind, scanner, deadline)
        return "text"
    if kind == "pdf":
        feed_pdf(f, scanner, limits, deadline)
        return "pdf"
    if kind == "zip":
        return feed_ooxml(f, scanner, limits, deadline)
    raise Unscannable("unsupported file type (binary)")


def _feed_bytes(f: BinaryIO, head: bytes, scanner: Scanner, deadline: Deadline) -> None:
    piece = head
    while piece:
        scanner.feed(piece)
        deadline.check()
        piece = f.read(_READ)


def _feed_utf16(f: BinaryIO, head: bytes, encoding: str, scanner: Scanner, deadline: Deadline) -> None:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    piece = head[2:] if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else head
    while piece:
        scanner.feed(decoder.decode(piece).encode("utf-8"))
        deadline.check()
        piece = f.read(_READ)
    scanner.feed(decoder.decode(b"", final=True).encode("utf-8"))

