"""PDF text through pypdf, every decompressed stream capped; a PDF pypdf cannot read is unscannable."""

from __future__ import annotations

from typing import BinaryIO

import pypdf
from pypdf.errors import LimitReachedError

from app.dlp.detect import Scanner
from app.dlp.limits import Deadline, Limits, Unscannable


def feed_pdf(f: BinaryIO, scanner: Scanner, limits: Limits, deadline: Deadline) -> None:
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
            scanner.feed(_outside_pages(reader).encode("utf-8", "replace"))
    except Unscannable:
        raise
    except LimitReachedError:
        raise Unscannable("PDF stream over the decompression limit") from None
    except Exception:  # noqa: BLE001 - pypdf raises many kinds on a malformed file; all mean "cannot read"
        raise Unscannable("malformed PDF") from None


def _outside_pages(reader: pypdf.PdfReader) -> str:
    """Text a reader shows that is not in page content: form field values, the document information."""
    values = [str(v) for v in (reader.get_form_text_fields() or {}).values() if v]
    values += [str(v) for v in (reader.metadata or {}).values() if isinstance(v, str)]
    return "\n".join(values) + "\n"
