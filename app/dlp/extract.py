"""Text out of a file for the scanner: plain text, PDF, and Office Open XML (DOCX, XLSX, PPTX).

The type is decided by content, never by name: `%PDF-` is a PDF, a ZIP holding
`[Content_Types].xml` is an Office document (which one by its main part), bytes
without NULs are text (UTF-8, else Windows-1252: both ASCII-compatible, which is
all the scanner needs; UTF-16 by its byte-order mark or its zero bytes is decoded).

A file we cannot read completely is refused with `Unscannable(reason)`, never a
crash and never a partial expansion: every decompression is bounded by `Limits`,
counted on the bytes actually produced (a ZIP header's declared sizes are checked
first, but not trusted), and every XML part is parsed with DTDs and entities
forbidden (defusedxml).
"""

from __future__ import annotations

import codecs
import struct
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO
from xml.sax import SAXException
from xml.sax.handler import ContentHandler, feature_namespaces

from defusedxml import DefusedXmlException
from defusedxml.sax import make_parser

from app.dlp.detect import Scanner

MiB = 1 << 20
_READ = MiB
_SNIFF = 64 * 1024


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


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self._end:
            raise Unscannable(f"took longer than {self._seconds:g} s")


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
    deadline = _Deadline(limits.seconds)
    with open(path, "rb") as f:
        head = f.read(_SNIFF)
        kind = sniff(head)
        try:
            return _extract(f, head, kind, scanner, limits, deadline)
        except Unscannable as refused:
            refused.file_type = refused.file_type or ("text" if kind.startswith("utf-16") else kind)
            raise


def _extract(f: BinaryIO, head: bytes, kind: str, scanner: Scanner, limits: Limits, deadline: _Deadline) -> str:
    if kind == "text":
        _feed_bytes(f, head, scanner, deadline)
        return "text"
    if kind.startswith("utf-16"):
        _feed_utf16(f, head, kind, scanner, deadline)
        return "text"
    if kind == "pdf":
        _feed_pdf(f, scanner, limits, deadline)
        return "pdf"
    if kind == "zip":
        return _feed_ooxml(f, scanner, limits, deadline)
    raise Unscannable("unsupported file type (binary)")


def _feed_bytes(f: BinaryIO, head: bytes, scanner: Scanner, deadline: _Deadline) -> None:
    piece = head
    while piece:
        scanner.feed(piece)
        deadline.check()
        piece = f.read(_READ)


def _feed_utf16(f: BinaryIO, head: bytes, encoding: str, scanner: Scanner, deadline: _Deadline) -> None:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    piece = head[2:] if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else head
    while piece:
        scanner.feed(decoder.decode(piece).encode("utf-8"))
        deadline.check()
        piece = f.read(_READ)
    scanner.feed(decoder.decode(b"", final=True).encode("utf-8"))


# -- PDF ----------------------------------------------------------------------------------------


def _feed_pdf(f: BinaryIO, scanner: Scanner, limits: Limits, deadline: _Deadline) -> None:
    import pypdf
    from pypdf.errors import LimitReachedError

    f.seek(0, 2)
    size = f.tell()
    f.seek(max(0, size - 2048))
    if b"%%EOF" not in f.read():
        raise Unscannable("malformed PDF (truncated: no end-of-file marker)")
    f.seek(0)
    cap = limits.pdf_stream_bytes
    config = dict(
        maximum_declared_stream_length=cap, array_based_stream_maximum_output_length=cap,
        zlib_maximum_output_length=cap, lzw_maximum_output_length=cap, run_length_maximum_output_length=cap,
        brotli_maximum_output_length=cap, jbig2_maximum_output_length=cap, image_maximum_buffer_size=cap,
        page_tree_maximum_entries=limits.pdf_pages + 1, jbig2dec_binary=None)
    extracted = 0
    try:
        with pypdf.apply_configuration(**config):
            reader = pypdf.PdfReader(f, strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                raise Unscannable("encrypted PDF")
            pages = reader.pages
            if len(pages) > limits.pdf_pages:
                raise Unscannable(f"PDF has more than {limits.pdf_pages} pages")
            for page in pages:
                text = page.extract_text().encode("utf-8", "replace")
                extracted += len(text)
                if extracted > limits.pdf_text_bytes:
                    raise Unscannable("PDF holds more text than the limit")
                scanner.feed(text + b"\n")
                deadline.check()
    except Unscannable:
        raise
    except LimitReachedError:
        raise Unscannable("PDF stream over the decompression limit") from None
    except Exception:  # noqa: BLE001 - pypdf raises many kinds on a malformed file; all mean "cannot read"
        raise Unscannable("malformed PDF") from None


# -- Office Open XML ----------------------------------------------------------------------------

_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_CENTRAL_ENTRY_BUDGET = 256  # bytes of central directory allowed per permitted member


def _check_directory(f: BinaryIO, limits: Limits) -> None:
    """Refuse an archive whose central directory is too large before zipfile reads it into memory."""
    f.seek(0, 2)
    size = f.tell()
    f.seek(max(0, size - 65_557))
    tail = f.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise Unscannable("malformed ZIP")
    _, _, _, _, entries, directory_bytes, _, _ = struct.unpack("<4s4H2LH", tail[at:at + 22])
    locator = tail[at - 20:at] if at >= 20 else b""
    if locator.startswith(_ZIP64_LOCATOR):
        _, _, offset, _ = struct.unpack("<4sLQL", locator)
        f.seek(offset)
        record = f.read(56)
        if len(record) < 56 or not record.startswith(_ZIP64_EOCD):
            raise Unscannable("malformed ZIP")
        _, _, _, _, _, _, _, entries, directory_bytes, _ = struct.unpack("<4sQ2H2L4Q", record)
    if entries > limits.zip_members or directory_bytes > limits.zip_members * _CENTRAL_ENTRY_BUDGET:
        raise Unscannable("zip bomb")
    f.seek(0)


class _ZipBudget:
    """Uncompressed bytes actually produced, for the whole archive and for the entry being read."""

    def __init__(self, limits: Limits, deadline: _Deadline) -> None:
        self.limits = limits
        self.deadline = deadline
        self.total = 0

    def open(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> "_BoundedEntry":
        limits = self.limits
        if info.flag_bits & 0x1:
            raise Unscannable("encrypted document")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise Unscannable("unsupported ZIP compression")
        declared = info.file_size
        if declared > limits.zip_member_bytes or self.total + declared > limits.zip_total_bytes or (
                declared > limits.zip_ratio_floor and declared > limits.zip_ratio * max(1, info.compress_size)):
            raise Unscannable("zip bomb")
        return _BoundedEntry(archive.open(info), info, self)


class _BoundedEntry:
    """A read-only view of one ZIP entry that stops at the limits while decompressing."""

    def __init__(self, raw: BinaryIO, info: zipfile.ZipInfo, budget: _ZipBudget) -> None:
        self._raw, self._budget = raw, budget
        self._compressed = max(1, info.compress_size)
        self._produced = 0

    def read(self, n: int = 64 * 1024) -> bytes:
        n = 64 * 1024 if n is None or n < 0 else min(n, 64 * 1024)
        data = self._raw.read(n)
        budget, limits = self._budget, self._budget.limits
        self._produced += len(data)
        budget.total += len(data)
        if (self._produced > limits.zip_member_bytes or budget.total > limits.zip_total_bytes or (
                self._produced > limits.zip_ratio_floor and self._produced > limits.zip_ratio * self._compressed)):
            raise Unscannable("zip bomb")
        budget.deadline.check()
        return data

    def close(self) -> None:
        self._raw.close()


# Which package it is, by its main part.
_MAIN_PART = {"word/document.xml": "docx", "xl/workbook.xml": "xlsx", "ppt/presentation.xml": "pptx"}
_EMBEDDED_DEPTH = 2  # an Office file inside an Office file inside an Office file, no deeper


def _feed_ooxml(f: BinaryIO, scanner: Scanner, limits: Limits, deadline: _Deadline,
                budget: _ZipBudget | None = None, depth: int = 0) -> str:
    """Scan every XML part (not only the usual ones: a package can name its main part anything) and
    every embedded Office file; their text elements are the words."""
    _check_directory(f, limits)
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError):
        raise Unscannable("malformed ZIP") from None
    budget = budget or _ZipBudget(limits, deadline)
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.zip_members:
            raise Unscannable("zip bomb")
        names = {info.filename for info in infos}
        if "[Content_Types].xml" not in names:
            raise Unscannable("unsupported file type (ZIP archive)")
        kind = next((kind for part, kind in _MAIN_PART.items() if part in names), None)
        if kind is None:
            raise Unscannable("unsupported file type (Office package without a document)")
        try:
            for info in infos:
                name = info.filename
                if name.endswith(".xml"):
                    _read_part(budget.open(archive, info), lambda entry: _feed_xml(entry, scanner))
                elif "/embeddings/" in name and depth < _EMBEDDED_DEPTH:
                    _read_part(budget.open(archive, info),
                               lambda entry: _feed_embedded(entry, scanner, limits, deadline, budget, depth))
        except Unscannable as refused:
            refused.file_type = refused.file_type or kind
            raise
    return kind


def _read_part(entry: _BoundedEntry, read) -> None:
    try:
        read(entry)
    except DefusedXmlException:
        raise Unscannable("XML with a DTD or entities (refused)") from None
    except (SAXException, zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error):
        raise Unscannable("malformed Office document") from None
    finally:
        entry.close()


def _feed_embedded(entry: _BoundedEntry, scanner: Scanner, limits: Limits, deadline: _Deadline,
                   budget: _ZipBudget, depth: int) -> None:
    """An Office file embedded in this one (a workbook in a Word file): scanned the same way, same budget."""
    if entry.read(4) != b"PK\x03\x04":
        return  # OLE objects and images: no text we can read
    with tempfile.SpooledTemporaryFile(max_size=4 * MiB) as copy:
        copy.write(b"PK\x03\x04")
        while piece := entry.read(_READ):
            copy.write(piece)
        copy.seek(0)
        try:
            _feed_ooxml(copy, scanner, limits, deadline, budget, depth + 1)
        except Unscannable as exc:
            if exc.reason.startswith("unsupported file type"):
                return
            raise


# Elements whose text is the document's words, and where a line or a cell ends.
_TEXT = frozenset({"t", "delText", "instrText", "f", "text"})
_LINE_ENDS = frozenset({"p", "row", "si", "br", "cr", "comment"})
_CELL_ENDS = frozenset({"c", "tab", "tc"})
_FLUSH = 64 * 1024


class _OfficeText(ContentHandler):
    """Collects the text of w:t / a:t / x:t elements, numeric cell values and alt text, with line and
    cell breaks, into the scanner."""

    def __init__(self, scanner: Scanner) -> None:
        super().__init__()
        self._scanner = scanner
        self._parts: list[str] = []
        self._size = 0
        self._in_text = 0
        self._cell_type = "n"
        self._value: list[str] | None = None

    def startElementNS(self, name, qname, attrs) -> None:
        local = name[1]
        if local in _TEXT:
            self._in_text += 1
        elif local == "v":
            self._value = []
        elif local == "c":
            self._cell_type = attrs.get((None, "t"), "n")
        for (_, attr), value in attrs.items():
            if attr in ("descr", "title") and value:
                self._emit(value + "\n")

    def endElementNS(self, name, qname) -> None:
        local = name[1]
        if local in _TEXT:
            self._in_text -= 1
        elif local == "v" and self._value is not None:
            value, self._value = "".join(self._value), None
            if self._cell_type == "n":
                self._emit(_plain_number(value) + "\t")
            elif self._cell_type in ("str", "inlineStr"):
                self._emit(value + "\t")
        elif local in _LINE_ENDS:
            self._emit("\n")
        elif local in _CELL_ENDS:
            self._emit("\t")

    def characters(self, content: str) -> None:
        if self._value is not None:
            self._value.append(content)
        elif self._in_text > 0:
            self._emit(content)

    def endDocument(self) -> None:
        self._emit("\n")
        self._flush()

    def _emit(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size > _FLUSH:
            self._flush()

    def _flush(self) -> None:
        text = "".join(self._parts)
        self._parts, self._size = [], 0
        self._scanner.feed(text.encode("utf-8", "replace"))


def _plain_number(value: str) -> str:
    """Excel keeps a 16-digit number typed into a cell as 4.1111111111111111E+15: write integers out in digits."""
    if "E" not in value and "e" not in value:
        return value
    try:
        number = Decimal(value)
    except ArithmeticError:
        return value
    if not number.is_finite() or number != number.to_integral_value() or abs(number) >= 10 ** 20:
        return value
    return str(int(number))


def _feed_xml(entry: _BoundedEntry, scanner: Scanner) -> None:
    parser = make_parser()
    parser.forbid_dtd = True
    parser.forbid_entities = True
    parser.forbid_external = True
    parser.setFeature(feature_namespaces, True)
    parser.setContentHandler(_OfficeText(scanner))
    parser.parse(entry)
