"""DOCX, XLSX and PPTX: ZIP packages of XML parts, read with every decompression bounded.

The central directory's size is checked before zipfile reads it; each entry's
declared sizes are checked before it is opened and its actual output counted
while it is read (per entry, for the whole archive, and as a compression ratio),
so a zip bomb is refused after at most the limit's bytes, never expanded. Only
stored and deflated entries are read (zipfile does not bound other decoders'
output). XML is parsed by defusedxml's SAX reader with DTDs and entities
forbidden, streaming: memory does not grow with the part.
"""

from __future__ import annotations

import struct
import tempfile
import zipfile
import zlib
from decimal import Decimal
from typing import BinaryIO
from xml.sax import SAXException
from xml.sax.handler import ContentHandler, feature_namespaces

from defusedxml import DefusedXmlException
from defusedxml.sax import make_parser

from app.dlp.detect import Scanner
from app.dlp.limits import Deadline, Limits, MiB, Unscannable

_READ = 64 * 1024

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


class ZipBudget:
    """Uncompressed bytes actually produced, for the whole archive and for the entry being read."""

    def __init__(self, limits: Limits, deadline: Deadline) -> None:
        self.limits = limits
        self.deadline = deadline
        self.total = 0

    def open(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> "BoundedEntry":
        limits = self.limits
        if info.flag_bits & 0x1:
            raise Unscannable("encrypted document")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise Unscannable("unsupported ZIP compression")
        declared = info.file_size
        if declared > limits.zip_member_bytes or self.total + declared > limits.zip_total_bytes or (
                declared > limits.zip_ratio_floor and declared > limits.zip_ratio * max(1, info.compress_size)):
            raise Unscannable("zip bomb")
        return BoundedEntry(archive.open(info), info, self)


class BoundedEntry:
    """A read-only view of one ZIP entry that stops at the limits while decompressing."""

    def __init__(self, raw: BinaryIO, info: zipfile.ZipInfo, budget: ZipBudget) -> None:
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


def feed_ooxml(f: BinaryIO, scanner: Scanner, limits: Limits, deadline: Deadline,
                budget: ZipBudget | None = None, depth: int = 0) -> str:
    """Scan every XML part (not only the usual ones: a package can name its main part anything) and
    every embedded Office file; their text elements are the words."""
    _check_directory(f, limits)
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError):
        raise Unscannable("malformed ZIP") from None
    budget = budget or ZipBudget(limits, deadline)
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
                elif "/embeddings/" in name and depth < _EMBEDDED_DEPTH and _is_zip(archive, info):
                    _read_part(budget.open(archive, info),
                               lambda entry: _feed_embedded(entry, scanner, limits, deadline, budget, depth))
                elif name.lower().endswith(_TEXT_MEMBERS):
                    _read_part(budget.open(archive, info), lambda entry: _feed_raw(entry, scanner))
        except Unscannable as refused:
            refused.file_type = refused.file_type or kind
            raise
    return kind


# Parts read as plain text: relationships (hyperlink targets), VML text boxes, and the HTML, text or
# RTF chunks Word shows in place ("altChunk").
_TEXT_MEMBERS = (".rels", ".vml", ".txt", ".csv", ".htm", ".html", ".mht", ".mhtml", ".rtf")


def _feed_raw(entry: BoundedEntry, scanner: Scanner) -> None:
    while piece := entry.read(_READ):
        scanner.feed(piece)
    scanner.feed(b"\n")


def _read_part(entry: BoundedEntry, read) -> None:
    try:
        read(entry)
    except DefusedXmlException:
        raise Unscannable("XML with a DTD or entities (refused)") from None
    except (SAXException, zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error):
        raise Unscannable("malformed Office document") from None
    finally:
        entry.close()


def _is_zip(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether an embedded object is an Office file (OLE objects and pictures hold no text we read)."""
    if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return True  # let ZipBudget.open refuse it with its reason
    try:
        with archive.open(info) as raw:
            return raw.read(4) == b"PK\x03\x04"
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error):
        raise Unscannable("malformed Office document") from None


def _feed_embedded(entry: BoundedEntry, scanner: Scanner, limits: Limits, deadline: Deadline,
                   budget: ZipBudget, depth: int) -> None:
    """An Office file embedded in this one (a workbook in a Word file): scanned the same way, same budget."""
    with tempfile.SpooledTemporaryFile(max_size=4 * MiB) as copy:
        while piece := entry.read(_READ):
            copy.write(piece)
        copy.seek(0)
        try:
            feed_ooxml(copy, scanner, limits, deadline, budget, depth + 1)
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
        elif local in ("s", "n"):  # a pivot cache's copy of the source data: <s v="text"/>, <n v="12"/>
            value = attrs.get((None, "v"))
            if value:
                self._emit((_plain_number(value) if local == "n" else value) + "\n")
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


def _feed_xml(entry: BoundedEntry, scanner: Scanner) -> None:
    parser = make_parser()
    parser.forbid_dtd = True
    parser.forbid_entities = True
    parser.forbid_external = True
    parser.setFeature(feature_namespaces, True)
    parser.setContentHandler(_OfficeText(scanner))
    parser.parse(entry)
