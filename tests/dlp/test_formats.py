"""Every identifier kind is found in every file format, and the format is read from the content."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.dlp import documents
from tests.dlp.conftest import counts

PROSE = ["Exception EX-118: the legacy HR system keeps its export for 90 days.",
         "Approved by the CISO on 2026-11-02 with compensating controls in place.",
         "Order 12345, invoice 2026/11/0042, phone +48 601 234 567."]
LINES = {
    "pan": "Card on file: 4111 1111 1111 1111",
    "pesel": "PESEL: 44051401359",
    "iban": "Refund to IBAN PL61 1090 1014 0000 0712 1981 2874",
    "passport": "Passport no. AB1234567",
}
LOOK_ALIKES = ["ref 4111111111111112", "id 99130112347", "DE88370400440532013000", "Passport office, room 12",
               "order 1234567812345670"]


@pytest.mark.parametrize("fmt", documents.FORMATS)
@pytest.mark.parametrize("kind", LINES)
def test_each_kind_is_found_in_each_format(scan, fmt, kind):
    lines = PROSE[:2] + [LINES[kind]] + PROSE[2:] + LOOK_ALIKES
    result = scan(documents.FORMATS[fmt](lines), name=f"evidence.{fmt}")
    assert result.unscannable is None
    assert result.file_type == documents.FILE_TYPES[fmt]
    assert counts(result) == {kind: 1}


@pytest.mark.parametrize("fmt", documents.FORMATS)
def test_look_alikes_alone_are_clean_in_each_format(scan, fmt):
    result = scan(documents.FORMATS[fmt](PROSE + LOOK_ALIKES), name=f"evidence.{fmt}")
    assert result.clean and result.findings == []


def test_the_type_comes_from_the_content_not_the_name(scan):
    text_named_pdf = scan(documents.text([LINES["pan"]]), name="scan.pdf")
    assert (text_named_pdf.file_type, counts(text_named_pdf)) == ("text", {"pan": 1})
    pdf_named_txt = scan(documents.pdf([[LINES["pesel"]]]), name="notes.txt")
    assert (pdf_named_txt.file_type, counts(pdf_named_txt)) == ("pdf", {"pesel": 1})
    docx_named_csv = scan(documents.docx([LINES["iban"]]), name="export.csv")
    assert (docx_named_csv.file_type, counts(docx_named_csv)) == ("docx", {"iban": 1})


def test_text_in_utf16_and_windows_1252_is_read(scan):
    line = "Zażółć: " + LINES["pan"] + "\n"
    assert counts(scan(line.encode("utf-16"))) == {"pan": 1}                      # with a byte-order mark
    assert counts(scan(line.encode("utf-16-le"))) == {"pan": 1}                   # without one
    assert counts(scan(("Café " + LINES["pesel"]).encode("cp1252"))) == {"pesel": 1}


def test_non_breaking_spaces_between_groups_are_spaces(scan):
    assert counts(scan("Karta 4111\u00a01111\u00a01111\u00a01111".encode())) == {"pan": 1}
    assert counts(scan("IBAN PL61\u202f1090\u202f1014\u202f0000\u202f0712\u202f1981\u202f2874".encode())) == {"iban": 1}


def test_a_word_paragraph_split_into_runs_is_read_as_one_line(scan):
    data = documents.docx([["Card: 4111 11", "11 1111 ", "1111"], ["PES", "EL 4405140", "1359"]])
    assert counts(scan(data)) == {"pan": 1, "pesel": 1}


def test_headers_comments_and_properties_of_a_word_file_are_scanned(scan):
    w = documents.W
    header = f'<w:hdr xmlns:w="{w}"><w:p><w:r><w:t>{LINES["pesel"]}</w:t></w:r></w:p></w:hdr>'
    comments = f'<w:comments xmlns:w="{w}"><w:comment><w:p><w:r><w:t>{LINES["pan"]}</w:t></w:r></w:p></w:comment></w:comments>'
    deleted = f'<w:document xmlns:w="{w}"><w:body><w:p><w:del><w:r><w:delText>{LINES["iban"]}</w:delText></w:r></w:del></w:p></w:body></w:document>'
    data = documents.docx(["nothing here"], extra={
        "word/header1.xml": header, "word/comments.xml": comments, "word/renamed-main.xml": deleted})
    assert counts(scan(data)) == {"pesel": 1, "pan": 1, "iban": 1}


def test_numbers_in_excel_cells_are_read_as_digits(scan):
    data = documents.xlsx(["PESEL"], [[("s", "0"), ("n", "44051401359")],
                                      [("n", "4.111111111111111E+15"), ("n", "3.14")],
                                      [("n", "5555555555554444")]])
    assert counts(scan(data)) == {"pesel": 1, "pan": 2}


def test_an_office_file_embedded_in_another_is_scanned(scan):
    inner = documents.xlsx_of_lines([LINES["pan"], LINES["pesel"]])
    outer = documents.docx(["see the attached workbook"], extra={"word/embeddings/Microsoft_Excel_Worksheet.xlsx": inner})
    result = scan(outer)
    assert (result.file_type, counts(result)) == ("docx", {"pan": 1, "pesel": 1})


def test_a_plain_zip_and_binary_files_are_unscannable(scan):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("cards.txt", LINES["pan"])
    result = scan(buffer.getvalue(), name="evidence.docx")
    assert result.unscannable == "unsupported file type (ZIP archive)"
    assert scan(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))).unscannable.startswith("unsupported")


def test_an_empty_file_is_clean_text(scan):
    result = scan(b"")
    assert (result.file_type, result.findings, result.unscannable) == ("text", [], None)


def test_an_xml_part_with_entities_is_refused_not_expanded(scan):
    laughs = ('<?xml version="1.0"?><!DOCTYPE w [<!ENTITY a "4111111111111111">'
              '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
              f'<w:document xmlns:w="{documents.W}"><w:body><w:p><w:r><w:t>&b;</w:t></w:r></w:p></w:body></w:document>')
    data = documents.docx(["x"], extra={"word/footer1.xml": laughs})
    result = scan(data)
    assert result.unscannable == "XML with a DTD or entities (refused)"


def test_hyperlinks_and_in_place_chunks_of_a_word_file_are_scanned(scan):
    rels = ('<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId9" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'hyperlink" Target="https://pay.example/?pan=4111111111111111" TargetMode="External"/></Relationships>')
    data = documents.docx(["see link"], extra={"word/_rels/document.xml.rels": rels,
                                               "word/afchunk.htm": "<p>PESEL 44051401359</p>"})
    assert counts(scan(data)) == {"pan": 1, "pesel": 1}


def test_pdf_form_fields_and_document_information_are_scanned(scan):
    import pypdf
    from pypdf.generic import DictionaryObject, NameObject, TextStringObject, ArrayObject, NumberObject

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(documents.pdf([["application form"]]))))
    writer.add_metadata({"/Subject": "IBAN DE89370400440532013000"})
    field = DictionaryObject({
        NameObject("/FT"): NameObject("/Tx"), NameObject("/T"): TextStringObject("pesel"),
        NameObject("/V"): TextStringObject("44051401359"), NameObject("/Type"): NameObject("/Annot"),
        NameObject("/Subtype"): NameObject("/Widget"),
        NameObject("/Rect"): ArrayObject([NumberObject(0), NumberObject(0), NumberObject(10), NumberObject(10)])})
    ref = writer._add_object(field)
    writer.pages[0][NameObject("/Annots")] = ArrayObject([ref])
    writer._root_object[NameObject("/AcroForm")] = DictionaryObject({NameObject("/Fields"): ArrayObject([ref])})
    out = io.BytesIO()
    writer.write(out)
    assert counts(scan(out.getvalue())) == {"pesel": 1, "iban": 1}


def test_a_pivot_cache_copy_of_the_data_is_scanned(scan):
    records = (f'<pivotCacheRecords xmlns="{documents.S}"><r><s v="{LINES["iban"]}"/><n v="44051401359"/></r>'
               '</pivotCacheRecords>')
    data = documents.xlsx(["nothing"], [[("s", "0")]])
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buffer, "w") as out:
        for item in src.infolist():
            out.writestr(item, src.read(item))
        out.writestr("xl/pivotCache/pivotCacheRecords1.xml", records)
    assert counts(scan(buffer.getvalue())) == {"iban": 1, "pesel": 1}


def test_a_large_embedded_picture_or_ole_object_is_not_mistaken_for_a_bomb(scan):
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(80 * 1024 * 1024)  # 80 MB of zeros: over the size and ratio limits
    data = documents.docx([LINES["pesel"]], extra={"word/embeddings/oleObject1.bin": ole})
    result = scan(data)
    assert (result.unscannable, counts(result)) == (None, {"pesel": 1})
