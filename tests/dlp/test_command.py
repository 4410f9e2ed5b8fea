"""`exceptao dlp scan FILE...` as a user runs it: JSON lines on stdout, the exit code says what was found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.dlp import documents
from tests.dlp.conftest import write

ROOT = Path(__file__).resolve().parents[2]


def dlp_scan(*paths, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    if home:
        env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"))
    return subprocess.run([sys.executable, "-m", "app.cli", "dlp", "scan", *map(str, paths)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_a_clean_file_prints_nothing_and_exits_0(tmp_path):
    clean = write(tmp_path, "notes.md", documents.markdown(["nothing to see", "order 4111111111111112"]))
    run = dlp_scan(clean)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_findings_are_one_json_line_per_kind_and_exit_1(tmp_path):
    report = write(tmp_path, "report.docx", documents.docx(
        ["Card 4111 1111 1111 1111 and 5555-5555-5555-4444", "PESEL 44051401359", "IBAN DE89370400440532013000",
         "Passport no. AB1234567"]))
    clean = write(tmp_path, "clean.txt", b"nothing here\n")
    run = dlp_scan(report, clean)
    assert run.returncode == 1 and run.stderr == ""
    assert lines(run.stdout) == [
        {"file": str(report), "kind": "pan", "count": 2, "sample": "4111 •••• •••• 1111"},
        {"file": str(report), "kind": "pesel", "count": 1, "sample": "44•••••••••"},
        {"file": str(report), "kind": "iban", "count": 1, "sample": "DE89 •••• •••• •••• ••30 00"},
        {"file": str(report), "kind": "passport", "count": 1, "sample": "A••••••••"},
    ]
    for value in ("4111111111111111", "5555555555554444", "44051401359", "370400440532013000", "AB1234567"):
        assert value not in run.stdout.replace(" ", "")


def test_an_unscannable_file_is_reported_and_exits_1(tmp_path):
    broken = documents.pdf([["PESEL 44051401359"]])
    path = write(tmp_path, "statement.pdf", broken[:len(broken) // 2])
    run = dlp_scan(path)
    assert run.returncode == 1
    assert lines(run.stdout) == [
        {"file": str(path), "unscannable": "malformed PDF (truncated: no end-of-file marker)"}]


def test_a_missing_path_or_a_directory_exits_2_and_the_rest_is_still_scanned(tmp_path):
    found = write(tmp_path, "cards.csv", documents.csv(["4111 1111 1111 1111"]))
    run = dlp_scan(tmp_path / "missing.txt", tmp_path, found)
    assert run.returncode == 2
    assert [line["kind"] for line in lines(run.stdout)] == ["pan"]
    assert "missing.txt: not a file" in run.stderr and f"{tmp_path}: not a file" in run.stderr


def test_no_file_is_a_usage_error(tmp_path):
    run = dlp_scan()
    assert run.returncode == 2 and "FILE" in run.stderr


def test_it_needs_no_database(tmp_path):
    """No DATABASE_URL, and no embedded server started in the data directory: the command only reads files."""
    path = write(tmp_path, "a.txt", b"PESEL 44051401359\n")
    home = tmp_path / "home"
    home.mkdir()
    run = dlp_scan(path, home=home)
    assert run.returncode == 1
    assert list(home.iterdir()) == []
