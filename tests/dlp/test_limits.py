"""Files built to hurt the scanner: zip bombs, broken PDFs, huge text, numbers split across reads."""

from __future__ import annotations

import io
import json
import random
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from app.dlp import Limits, detect, scan_path
from app.dlp.detect import Scanner
from app.dlp.limits import Deadline, Unscannable
from app.dlp.office import BoundedEntry, ZipBudget
from tests.dlp import documents
from tests.dlp.conftest import counts, write

MiB = 1 << 20


def _bomb(member_bytes: int, name: str = "word/document.xml", members: int = 1) -> bytes:
    """A Word file whose document part is `member_bytes` of one repeated byte (deflate packs ~1000:1)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        for i in range(members):
            with z.open(name if members == 1 else f"word/part{i}.xml", "w") as part:
                part.write(f'<w:document xmlns:w="{documents.W}"><w:body><w:p><w:r><w:t>'.encode())
                block = b"A" * MiB
                for _ in range(member_bytes // MiB):
                    part.write(block)
                part.write(b"</w:t></w:r></w:p></w:body></w:document>")
        if members > 1:
            z.writestr("word/document.xml", f'<w:document xmlns:w="{documents.W}"/>')
    return buffer.getvalue()


@pytest.fixture(scope="module")
def big_bomb() -> bytes:
    return _bomb(512 * MiB)  # half a gigabyte from about half a megabyte


def _measured(path, **kwargs):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = scan_path(path, **kwargs)
        return result, time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_zip_bomb_is_refused_quickly_without_expanding_it(tmp_path, big_bomb):
    assert len(big_bomb) < 4 * MiB
    result, seconds, peak = _measured(write(tmp_path, "report.docx", big_bomb))
    assert (result.file_type, result.unscannable) == ("docx", "zip bomb")
    assert seconds < 2 and peak < 8 * MiB


def test_a_bomb_that_understates_its_size_is_refused_without_expanding_it(tmp_path, big_bomb):
    """The central directory says 1 kB; reading stops there and the checksum gives it away."""
    data = bytearray(big_bomb)
    at = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x05\x06"))
    while data[at + 46:at + 46 + struct.unpack("<H", data[at + 28:at + 30])[0]] != b"word/document.xml":
        at = data.rfind(b"PK\x01\x02", 0, at)
    data[at + 24:at + 28] = struct.pack("<L", 1000)
    result, seconds, peak = _measured(write(tmp_path, "report.docx", bytes(data)))
    assert result.unscannable in ("zip bomb", "malformed Office document")
    assert seconds < 2 and peak < 8 * MiB


def test_decompression_is_counted_while_reading_not_taken_from_the_header():
    """A member that produces more than it declared is stopped at the limit by its own count."""
    limits = Limits(zip_member_bytes=2 * MiB, zip_ratio=10**6)
    info = zipfile.ZipInfo("word/document.xml")
    info.compress_size, info.file_size = 1000, 1000
    entry = BoundedEntry(io.BytesIO(b"A" * (3 * MiB)), info, ZipBudget(limits, Deadline(10)))
    with pytest.raises(Unscannable, match="zip bomb"):
        while entry.read(64 * 1024):
            pass
    ratio = BoundedEntry(io.BytesIO(b"A" * (3 * MiB)), info, ZipBudget(Limits(), Deadline(10)))
    with pytest.raises(Unscannable, match="zip bomb"):
        while ratio.read(64 * 1024):
            pass


def test_a_high_ratio_part_under_the_size_limits_is_refused(scan):
    assert scan(_bomb(20 * MiB)).unscannable == "zip bomb"


def test_the_budget_covers_the_whole_archive(scan):
    limits = Limits(zip_member_bytes=4 * MiB, zip_total_bytes=10 * MiB, zip_ratio=10**6)
    assert scan(_bomb(3 * MiB, members=4), limits=limits).unscannable == "zip bomb"
    assert scan(_bomb(3 * MiB, members=3), limits=limits).unscannable is None


def test_too_many_members_is_refused_before_the_directory_is_read(scan):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", f'<w:document xmlns:w="{documents.W}"/>')
        for i in range(60):
            z.writestr(f"word/media/{i}.bin", b"")
    assert scan(buffer.getvalue(), limits=Limits(zip_members=50)).unscannable == "zip bomb"


def test_a_bomb_inside_an_embedded_workbook_is_refused(scan):
    outer = documents.docx(["see attachment"], extra={"word/embeddings/book.xlsx": _bomb(20 * MiB)})
    assert scan(outer).unscannable == "zip bomb"


# -- PDF --------------------------------------------------------------------------------------------


def test_a_truncated_pdf_is_unscannable(scan):
    data = documents.pdf([["Card 4111 1111 1111 1111"], ["PESEL 44051401359"]])
    result = scan(data[:len(data) // 2], name="statement.pdf")
    assert result.file_type == "pdf"
    assert result.unscannable.startswith("malformed PDF")


@pytest.mark.parametrize("body", [
    b"%PDF-1.7\n" + bytes(random.Random(1).randrange(256) for _ in range(4000)) + b"\n%%EOF\n",
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    b"%PDF-1.4\n%%EOF\n",
])
def test_a_malformed_pdf_is_unscannable_not_a_crash(scan, body):
    result = scan(body)
    assert result.file_type == "pdf" and result.unscannable.startswith("malformed PDF")


def test_pdf_limits_pages_and_stream_size(scan):
    two_pages = documents.pdf([["one"], ["two"]])
    assert scan(two_pages, limits=Limits(pdf_pages=1)).unscannable == "PDF has more than 1 pages"
    long_page = documents.pdf([["x" * 1000] * 2000])  # 2 MB of page content, a few kB compressed
    result = scan(long_page, limits=Limits(pdf_stream_bytes=MiB))
    assert result.unscannable is not None and result.findings == []


def test_an_encrypted_pdf_opens_with_an_empty_password_or_is_unscannable(scan):
    import pypdf

    def encrypted(user_password: str) -> bytes:
        writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(documents.pdf([["PESEL 44051401359"]]))))
        writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-256")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    assert counts(scan(encrypted(""))) == {"pesel": 1}
    assert scan(encrypted("secret")).unscannable == "encrypted PDF"


# -- streaming --------------------------------------------------------------------------------------


def _corpus(seed: int) -> bytes:
    rnd = random.Random(seed)
    pieces = ["4111 1111 1111 1111", "44051401359", "PL61 1090 1014 0000 0712 1981 2874", "DE89370400440532013000",
              "Passport no. AB1234567", "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n"
              "L898902C36UTO7408122F1204159ZE184226B<<<<<10", "4111111111111112", "440514013591",
              "1" * 40, "12 34 56 78 90 " * 5, "Passport office", "6011-1111-1111-1117 12/27", "x"]
    return "\n".join(rnd.choice(pieces) + rnd.choice([" ", ", ", "\n", " ; "]) + "word " * rnd.randrange(4)
                     for _ in range(400)).encode()


@pytest.mark.parametrize("seed", range(6))
def test_findings_do_not_depend_on_where_the_text_is_cut(monkeypatch, seed):
    data = _corpus(seed)
    whole = Scanner()
    whole.feed(data)
    expected = whole.finish()
    assert {f.kind for f in expected} == {"pan", "pesel", "iban", "passport"}
    monkeypatch.setattr(detect, "WINDOW", 700)  # many windows, each barely longer than the overlap
    rnd = random.Random(seed)
    pieces, at = Scanner(), 0
    while at < len(data):
        size = rnd.choice([1, 7, 64, 333, 1000])
        pieces.feed(data[at:at + size])
        at += size
    assert pieces.finish() == expected


def test_a_number_across_the_read_boundary_is_found_once(tmp_path):
    pad = b"x" * (detect.WINDOW - 9) + b" "
    path = write(tmp_path, "split.txt", pad + b"4111 1111 1111 1111 and 44051401359\n")
    assert counts(scan_path(path)) == {"pan": 1, "pesel": 1}
    # Twelve digits whose first eleven would be a PESEL if the read boundary cut them.
    path = write(tmp_path, "twelve.txt", b"y" * (detect.WINDOW - 11) + b"440514013591 z\n")
    assert counts(scan_path(path)) == {}


def _peak_rss_scanning(path) -> tuple[dict, int]:
    """Scan in a fresh interpreter; its findings and its peak resident memory in bytes."""
    code = ("import json, resource, sys; from pathlib import Path; from app.dlp import scan_path; "
            "r = scan_path(Path(sys.argv[1])); "
            "print(json.dumps([{f.kind: f.count for f in r.findings}, r.unscannable, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    found, unscannable, max_rss_kib = json.loads(out)
    assert unscannable is None
    return found, max_rss_kib * 1024


def test_memory_stays_flat_for_a_50_mb_text_file(tmp_path):
    block = (b"Review of access for 2026-11, 1200 accounts, ref 4111111111111112, id 99130112347.\n" * 12_000)
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        while f.tell() < 50 * MiB:
            f.write(block)
        f.write(b"last line: 4111 1111 1111 1111\n")
    small = write(tmp_path, "small.txt", b"last line: 4111 1111 1111 1111\n")
    found_small, baseline = _peak_rss_scanning(small)
    found_big, peak = _peak_rss_scanning(big)
    assert found_small == found_big == {"pan": 1}
    assert peak - baseline < 16 * MiB, (baseline, peak)
