"""Files of each format the scanner reads, built here byte by byte (no office suite needed).

A PDF is written by hand (one Helvetica text object per page, Flate-compressed,
a correct cross-reference table); DOCX, XLSX and PPTX are the smallest ZIPs of
XML parts that Word, Excel and PowerPoint open.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from xml.sax.saxutils import escape

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
S = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
A = "http://schemas.openxmlformats.org/drawingml/2006/main"
P = "http://schemas.openxmlformats.org/presentationml/2006/main"
XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


def text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def csv(lines: list[str]) -> bytes:
    rows = ["id,name,note"] + [f'{i},Anna Nowak,"{line}"' for i, line in enumerate(lines, 1)]
    return ("\r\n".join(rows) + "\r\n").encode()


def json_doc(lines: list[str]) -> bytes:
    return json.dumps({"records": [{"id": i, "note": line} for i, line in enumerate(lines, 1)]}, indent=2).encode()


def markdown(lines: list[str]) -> bytes:
    rows = ["# Evidence", "", "| # | note |", "|---|------|"] + [f"| {i} | {line} |" for i, line in enumerate(lines, 1)]
    return ("\n".join(rows) + "\n").encode()


def _pdf_string(line: str) -> str:
    return "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def pdf(pages: list[list[str]], *, compress: bool = True) -> bytes:
    """A PDF with one page per list of lines."""
    n = len(pages)
    font = 3 + 2 * n
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{' '.join(f'{3 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode()]
    for i, lines in enumerate(pages):
        content = ("BT /F1 11 Tf 14 TL 72 760 Td " + " ".join(f"{_pdf_string(line)} Tj T*" for line in lines)
                   + " ET").encode("latin-1")
        stream, filter_ = (zlib.compress(content), b" /Filter /FlateDecode") if compress else (content, b"")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font} 0 R"
                       f" >> >> /Contents {4 + 2 * i} 0 R >>".encode())
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), filter_) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _package(parts: dict[str, str | bytes], main: str, content_type: str) -> bytes:
    types = (XML + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
             '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
             '<Default Extension="xml" ContentType="application/xml"/>'
             f'<Override PartName="/{main}" ContentType="{content_type}"/></Types>')
    rels = (XML + '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            f'officeDocument" Target="{main}"/></Relationships>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", types)
        z.writestr("_rels/.rels", rels)
        for name, data in parts.items():
            z.writestr(name, data)
    return buffer.getvalue()


def docx(paragraphs: list[str | list[str]], *, extra: dict[str, str | bytes] | None = None) -> bytes:
    """A Word file; a paragraph given as a list is written as one run per item (Word splits text so)."""
    body = "".join(
        "<w:p>" + "".join(f"<w:r><w:t xml:space=\"preserve\">{escape(run)}</w:t></w:r>"
                          for run in ([p] if isinstance(p, str) else p)) + "</w:p>"
        for p in paragraphs)
    document = XML + f'<w:document xmlns:w="{W}"><w:body>{body}</w:body></w:document>'
    return _package({"word/document.xml": document, **(extra or {})}, "word/document.xml",
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml")


def xlsx(shared: list[str], rows: list[list[tuple[str, str]]]) -> bytes:
    """An Excel file. Cells are (kind, value): "s" an index into `shared`, "inline" text, "n" a number as stored."""
    strings = "".join(f"<si><t>{escape(s)}</t></si>" for s in shared)
    cells = []
    for r, row in enumerate(rows, 1):
        out = []
        for c, (kind, value) in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if kind == "s":
                out.append(f'<c r="{ref}" t="s"><v>{value}</v></c>')
            elif kind == "inline":
                out.append(f'<c r="{ref}" t="inlineStr"><is><t>{escape(value)}</t></is></c>')
            else:
                out.append(f'<c r="{ref}"><v>{value}</v></c>')
        cells.append(f'<row r="{r}">{"".join(out)}</row>')
    sheet = XML + f'<worksheet xmlns="{S}"><sheetData>{"".join(cells)}</sheetData></worksheet>'
    workbook = XML + (f'<workbook xmlns="{S}" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
                      'relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
    return _package({"xl/workbook.xml": workbook, "xl/sharedStrings.xml":
                     XML + f'<sst xmlns="{S}" count="{len(shared)}">{strings}</sst>',
                     "xl/worksheets/sheet1.xml": sheet}, "xl/workbook.xml",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml")


def pptx(slides: list[list[str]]) -> bytes:
    parts = {"ppt/presentation.xml": XML + f'<p:presentation xmlns:p="{P}"/>'}
    for i, paragraphs in enumerate(slides, 1):
        body = "".join(f"<a:p><a:r><a:t>{escape(p)}</a:t></a:r></a:p>" for p in paragraphs)
        parts[f"ppt/slides/slide{i}.xml"] = (
            XML + f'<p:sld xmlns:a="{A}" xmlns:p="{P}"><p:cSld><p:spTree><p:sp><p:txBody>{body}'
            "</p:txBody></p:sp></p:spTree></p:cSld></p:sld>")
    return _package(parts, "ppt/presentation.xml",
                    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml")


def xlsx_of_lines(lines: list[str]) -> bytes:
    """Half the lines as shared strings, half as inline strings."""
    shared = lines[0::2]
    rows = [[("s", str(i))] for i in range(len(shared))] + [[("inline", line)] for line in lines[1::2]]
    return xlsx(shared, rows)


# Each format as a function of lines of text, for the "every kind in every format" tests.
FORMATS = {
    "txt": text,
    "csv": csv,
    "json": json_doc,
    "md": markdown,
    "pdf": lambda lines: pdf([lines]),
    "docx": lambda lines: docx(lines),
    "xlsx": xlsx_of_lines,
    "pptx": lambda lines: pptx([lines[:3], lines[3:]]),
}
FILE_TYPES = {"txt": "text", "csv": "text", "json": "text", "md": "text",
              "pdf": "pdf", "docx": "docx", "xlsx": "xlsx", "pptx": "pptx"}
