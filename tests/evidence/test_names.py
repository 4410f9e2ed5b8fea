"""File names as browsers and attackers send them, and how a download names the file."""

from __future__ import annotations

import pytest

from app.evidence.names import NAME_LIMIT, content_disposition, content_type_for, sanitised


@pytest.mark.parametrize("sent, kept", [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\boot.ini", "boot.ini"),
    ("C:\\fakepath\\scan.png", "scan.png"),
    (".env", "env"),
    ("...", "evidence"),
    ("", "evidence"),
    (None, "evidence"),
    ("a\x00b\x1fc.txt", "abc.txt"),
    ("invoice\u202efdp.exe", "invoicefdp.exe"),          # right-to-left override
    ("zero\u200bwidth.txt", "zerowidth.txt"),            # a format character
    ("\uff0e\uff0e\uff0fetc\uff0fpasswd", "passwd"),      # full-width dots and solidi normalise to ../
    ("Cafe\u0301.txt", "Café.txt"),                       # decomposed accents compose (NFC within NFKC)
    ("a%22b%0Ac.txt", "a_b c.txt"),                       # the browser's escapes for '"' and LF
    ('say "hi" <now>?.txt', "say _hi_ _now__.txt"),
    ("trailing dots... ", "trailing dots"),
    ("NUL", "_NUL"),
    ("lpt1.log", "_lpt1.log"),
])
def test_sanitised(sent, kept):
    assert sanitised(sent) == kept


def test_long_names_keep_their_extension():
    name = sanitised("a" * 1000 + ".xlsx")
    assert len(name) == NAME_LIMIT and name.endswith("a.xlsx")
    assert len(sanitised("b" * 1000)) == NAME_LIMIT
    assert len(sanitised("é" * 1000)) == NAME_LIMIT


def test_the_download_name_in_both_forms():
    assert content_disposition("Zażółć raport 2026.pdf") == (
        "attachment; filename=\"Zazoc raport 2026.pdf\"; filename*=UTF-8''Za%C5%BC%C3%B3%C5%82%C4%87%20raport%202026.pdf")
    assert content_disposition('a"b;c%d.txt') == (
        "attachment; filename=\"a_b_c_d.txt\"; filename*=UTF-8''a%22b%3Bc%25d.txt")
    assert content_disposition("東京.txt").startswith('attachment; filename="txt";')


def test_only_harmless_types_are_named():
    assert content_type_for("pdf") == "application/pdf"
    assert content_type_for("text") == "text/plain"
    for unknown in ("binary", "zip", "html", "svg", "", None):
        assert content_type_for(unknown) == "application/octet-stream"
