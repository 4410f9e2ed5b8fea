"""`exceptao dlp scan FILE...`: check files before uploading them; needs no database.

One JSON object per line on stdout: {"file", "kind", "count", "sample"} for each
kind found in a file (the sample masked), {"file", "unscannable": reason} for a
file that could not be read completely (the upload policy treats it the same way
as a finding, so this says so before the upload does).

Exit 0: every file read completely, nothing found. 1: something found, or a file
unscannable. 2: a usage error, or a path that is not a readable file (said on
stderr; the other files are still scanned).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.dlp import scan_path


def add_parser(commands: argparse._SubParsersAction) -> None:
    dlp = commands.add_parser("dlp", help="data loss prevention checks").add_subparsers(
        dest="dlp_command", required=True)
    scan = dlp.add_parser(
        "scan", help="scan files for card numbers, PESELs, IBANs and passport numbers; exit 1 when any is found",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scan.add_argument("files", nargs="+", type=Path, metavar="FILE")


def run(args: argparse.Namespace) -> int:
    flagged = unreadable = False
    for path in args.files:
        if not path.is_file():
            print(f"dlp scan: {path}: not a file", file=sys.stderr)
            unreadable = True
            continue
        try:
            result = scan_path(path)
        except OSError as exc:
            print(f"dlp scan: {path}: {exc.strerror or 'cannot be read'}", file=sys.stderr)
            unreadable = True
            continue
        for finding in result.findings:
            _line({"file": str(path), "kind": finding.kind, "count": finding.count, "sample": finding.sample})
        if result.unscannable:
            _line({"file": str(path), "unscannable": result.unscannable})
        flagged = flagged or not result.clean
    return 2 if unreadable else 1 if flagged else 0


def _line(obj: dict) -> None:
    print(json.dumps(obj), flush=True)
