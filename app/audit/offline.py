"""`exceptao audit verify-bundle FILE`: check an audit bundle with no database.

An auditor's check, independent of the code that wrote the chain: each record
is canonicalised with the stock `rfc8785` library (not the app's fast path) and
hashed; seq must run from 1 without a gap, each prev_hash must be the previous
row_hash, the last row must be the head the bundle names, and every anchor's
row must be on the chain with the anchored hash and its RFC 3161 token must
verify for that hash under the authority's root (app.audit.tokens, itself free
of database code). Nothing here imports app.db, asyncpg or app.audit.verify;
tests/audit/test_offline.py checks that in a fresh interpreter.

The file is read line by line (docs/audit-bundle.md), so memory stays flat
however long the chain. Exit 0 intact, 1 broken (the first failing seq named),
2 unreadable (not a bundle, cut short, or an unreadable --tsa-ca file).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from uuid import UUID

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from app.audit.tokens import TokenInvalid, check_token, load_roots

FORMAT = "exceptao-audit-bundle"
GENESIS = bytes(32)
RECORD_KEYS = frozenset({"v", "tenant", "seq", "at", "actor", "action", "target", "data", "pii"})
MAX_SAFE_INTEGER = 2**53 - 1


class Unreadable(Exception):
    """The file is not a complete bundle; nothing can be said about the chain."""


@dataclass(frozen=True)
class Problem:
    seq: int
    reason: str
    detail: str


@dataclass
class Report:
    tenant: str = ""
    rows: int = 0
    anchors: int = 0
    discontinuities: list[str] = field(default_factory=list)
    erased_rows: int = 0
    head: dict | None = None
    roots_pinned: bool = False
    roots: list[x509.Certificate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def first(self) -> Problem | None:
        return min(self.problems, key=lambda p: p.seq) if self.problems else None

    def as_json(self) -> dict:
        first = self.first
        return {
            "ok": first is None, "tenant": self.tenant, "rows": self.rows, "anchors": self.anchors,
            "erased_rows": self.erased_rows, "chain_discontinuities": len(self.discontinuities), "head": self.head,
            "broken_at": first.seq if first else None, "reason": first.reason if first else None,
            "problems": [{"seq": p.seq, "reason": p.reason, "detail": p.detail}
                         for p in sorted(self.problems, key=lambda p: p.seq)],
            "roots": {"pinned": self.roots_pinned, "sha256": [fingerprint(r) for r in self.roots]},
        }


def fingerprint(certificate: x509.Certificate) -> str:
    """As `openssl x509 -noout -fingerprint -sha256` prints it."""
    return ":".join(f"{b:02X}" for b in certificate.fingerprint(hashes.SHA256()))


def _number(text: str) -> int | float:
    # Every JSON number means an IEEE-754 double (RFC 8785 3.2.2.3); integers
    # a double holds exactly stay integers so that rfc8785 prints them as such.
    value = int(text)
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else float(text)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


_decode = json.JSONDecoder(parse_int=_number, parse_constant=_refuse_constant).decode


def _parse(line: bytes) -> dict:
    value = _decode(line.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _hex32(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError("not 32 bytes of hex")
    return bytes.fromhex(value)


class _Lines:
    """The file's lines with their numbers; a last line without its newline means the file was cut short."""

    def __init__(self, lines: Iterator[bytes]):
        self._lines = lines
        self.number = 0

    def next(self) -> bytes | None:
        line = next(self._lines, None)
        if line is None:
            return None
        self.number += 1
        if not line.endswith(b"\n"):
            raise Unreadable(f"line {self.number} is cut short: the file is truncated")
        return line

    def expect(self, key: str) -> dict:
        line = self.next()
        if line is None:
            raise Unreadable(f"the file ends at line {self.number} where a {key} line was due: it is truncated")
        try:
            value = _parse(line)
        except ValueError as exc:
            raise Unreadable(f"line {self.number} is not JSON: {exc}") from None
        if key not in value:
            raise Unreadable(f"line {self.number} is not a {key} line")
        return value


def _read_header(lines: _Lines) -> dict:
    header = lines.expect("format")
    if header.get("format") != FORMAT or header.get("version") != 1:
        raise Unreadable(f"not an {FORMAT} version 1 (format {header.get('format')!r}, "
                         f"version {header.get('version')!r})")
    try:
        UUID(header["tenant"])
        for key in ("rows", "anchors", "certificates"):
            if not isinstance(header[key], int) or header[key] < 0:
                raise ValueError(key)
        head = header["head"]
        if head is not None and (not isinstance(head["seq"], int) or head["seq"] < 1):
            raise ValueError("head seq")
        if head is not None:
            _hex32(head["row_hash"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Unreadable(f"the header line is malformed ({exc})") from None
    return header


def _read_certificates(lines: _Lines, count: int) -> list[tuple[x509.Certificate, str]]:
    found = []
    for _ in range(count):
        line = lines.expect("certificate")
        try:
            found.append((x509.load_pem_x509_certificate(line["certificate"].encode("ascii")), line.get("source")))
        except (ValueError, AttributeError, UnicodeEncodeError) as exc:
            raise Unreadable(f"line {lines.number}: not a PEM certificate ({exc})") from None
    return found


def _check_anchors(lines: _Lines, count: int, report: Report) -> dict[int, list[bytes]]:
    """Check each anchor's token for its hash; the anchored hashes by seq, to meet the rows."""
    anchored: dict[int, list[bytes]] = {}
    for _ in range(count):
        line = lines.expect("anchor")
        try:
            anchor = line["anchor"]
            kind, seq, row_hash = anchor["kind"], anchor["seq"], _hex32(anchor["row_hash"])
            if not isinstance(seq, int) or kind not in ("anchor", "chain_discontinuity"):
                raise ValueError("kind or seq")
            token = None if anchor["tsa_token"] is None else base64.b64decode(anchor["tsa_token"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise Unreadable(f"line {lines.number}: the anchor is malformed ({exc})") from None
        if kind == "chain_discontinuity":
            report.discontinuities.append(
                f"seq {seq}: the app found this anchored row rewritten or gone at {anchor.get('anchored_at')} "
                f"({json.dumps(anchor.get('detail'))})")
            continue
        report.anchors += 1
        anchored.setdefault(seq, []).append(row_hash)
        if token is None:
            report.problems.append(Problem(seq, "token_missing", "the anchor has no timestamp token"))
        elif not report.roots:
            report.problems.append(Problem(seq, "token_unchecked",
                                           "no root certificate to check the token against; give --tsa-ca"))
        else:
            try:
                check_token(token, row_hash, report.roots)
            except TokenInvalid as exc:
                report.problems.append(Problem(seq, "token_invalid", str(exc)))
            except Exception as exc:  # a token the parsers choke on vouches for nothing
                report.problems.append(Problem(seq, "token_invalid", f"the token cannot be read: {exc!r}"))
    return anchored


class _Break(Exception):
    def __init__(self, seq: int, reason: str, detail: str):
        super().__init__(seq, reason, detail)
        self.problem = Problem(seq, reason, detail)


def _check_row(line: bytes, expected: int, prev: bytes, tenant: str) -> tuple[bytes, bool]:
    """The row's row_hash and whether its actor was erased, or _Break naming `expected`."""
    try:
        row = _parse(line)
        record = row["record"]
        prev_hash, row_hash = _hex32(row["prev_hash"]), _hex32(row["row_hash"])
        if not isinstance(record, dict):
            raise ValueError("the record is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise _Break(expected, "row_unreadable", f"the line of seq {expected} cannot be read ({exc})") from None
    if set(record) != RECORD_KEYS:
        raise _Break(expected, "record_malformed", f"the record's keys are {sorted(record)}")
    if record["seq"] != expected:
        raise _Break(expected, "seq_gap", f"seq {expected} was due next, the line holds seq {record['seq']!r} "
                                          "(a row removed, moved or altered)")
    if record["v"] != 1:
        raise _Break(expected, "unknown_hash_version", f"record version {record['v']!r}")
    if record["tenant"] != tenant:
        raise _Break(expected, "tenant_mismatch", f"the record names tenant {record['tenant']!r}")
    if prev_hash != prev:
        raise _Break(expected, "link_mismatch", "prev_hash is not the previous row's row_hash")
    try:
        canonical = rfc8785.dumps(record)
    except rfc8785.CanonicalizationError as exc:
        raise _Break(expected, "hash_mismatch", f"the record cannot be canonicalised ({exc})") from None
    if hashlib.sha256(prev_hash + canonical).digest() != row_hash:
        raise _Break(expected, "hash_mismatch", "row_hash is not SHA-256(prev_hash || JCS(record))")
    return row_hash, row.get("erased") is True


def _check_rows(lines: _Lines, header: dict, anchored: dict[int, list[bytes]], report: Report) -> None:
    expected, prev, broken = 1, GENESIS, False
    while True:
        line = lines.next()
        if line is None:
            raise Unreadable(f"the file ends at line {lines.number} without its end line: it is truncated")
        if line.startswith(b'{"end"'):
            try:
                end = _parse(line)["end"]
                if not isinstance(end, dict):
                    raise ValueError("not an object")
            except (ValueError, KeyError) as exc:
                raise Unreadable(f"line {lines.number}: the end line is malformed ({exc})") from None
            if lines.next() is not None:
                raise Unreadable(f"line {lines.number} follows the end line")
            break
        if broken:
            continue  # the chain cannot be followed past its first break; read on to the end line
        try:
            prev, erased = _check_row(line, expected, prev, report.tenant)
        except _Break as stop:
            report.problems.append(stop.problem)
            broken = True
            continue
        for hashed in anchored.pop(expected, []):
            if hashed != prev:
                report.problems.append(Problem(expected, "anchor_mismatch",
                                               "the row's hash is not the hash its anchor's token timestamps"))
        report.rows += 1
        report.erased_rows += erased
        expected += 1
    if broken:
        return
    head = header["head"]
    last = expected - 1
    if head is None and last:
        report.problems.append(Problem(1, "head_mismatch", "the header names no head, yet the bundle has rows"))
    elif head is not None and head["seq"] > last:
        report.problems.append(Problem(last + 1, "row_missing", f"the chain ends at seq {last}, its head is "
                                                                f"seq {head['seq']}"))
    elif head is not None and (head["seq"] < last or bytes.fromhex(head["row_hash"]) != prev):
        report.problems.append(Problem(head["seq"], "head_mismatch", "the last row is not the head the bundle names"))
    if end.get("rows") != report.rows:
        report.problems.append(Problem(last + 1, "row_missing", f"the end line counts {end.get('rows')!r} rows, "
                                                                f"the bundle holds {report.rows}"))
    for seq in anchored:
        report.problems.append(Problem(seq, "anchor_not_on_chain", f"an anchor names seq {seq}, past the chain's end"))


def verify_bundle(lines: Iterator[bytes], trusted_roots: list[x509.Certificate] | None = None) -> Report:
    """Check a bundle's lines (bytes, each with its newline); Unreadable when it is not a whole bundle.

    `trusted_roots` pins the authority's root; without it the bundle's own
    configured root is trusted, and the report says so.
    """
    lines = _Lines(lines)
    header = _read_header(lines)
    report = Report(tenant=header["tenant"], head=header["head"])
    certificates = _read_certificates(lines, header["certificates"])
    if trusted_roots is not None:
        report.roots, report.roots_pinned = trusted_roots, True
    else:
        report.roots = [cert for cert, source in certificates if source == "configured_root"]
    anchored = _check_anchors(lines, header["anchors"], report)
    _check_rows(lines, header, anchored, report)
    return report


def describe(report: Report) -> str:
    """The verdict as an auditor reads it."""
    head = report.head
    out = [f"Audit bundle of tenant {report.tenant}: {report.rows} rows checked, head "
           + (f"seq {head['seq']} ({head['row_hash']})" if head else "none")
           + f", {report.anchors} anchors, {report.erased_rows} row(s) with an erased actor"
           + " (as the bundle says; erasure is outside the hash)."]
    if report.roots_pinned:
        out.append("Tokens were checked against the root you gave with --tsa-ca:")
    elif report.roots:
        out.append("Tokens were checked against the bundle's own root certificate (not pinned with --tsa-ca). "
                   "Compare its fingerprint with the one the authority publishes:")
    else:
        out.append("The bundle holds no root certificate; tokens could not be checked. Give --tsa-ca.")
    out += [f"  {root.subject.rfc4514_string()}  SHA-256 {fingerprint(root)}" for root in report.roots]
    out += [f"Note: a chain discontinuity was recorded for {note}" for note in report.discontinuities]
    out.append("Personal-data commitments (pii) are not checked: that needs the controller's records.")
    first = report.first
    if first is None:
        out.append("INTACT: every row hash and link, the head and every anchor token verify.")
    else:
        out.append(f"BROKEN at seq {first.seq}: {first.reason}: {first.detail}")
        out += [f"  also seq {p.seq}: {p.reason}: {p.detail}"
                for p in sorted(report.problems, key=lambda p: p.seq) if p is not first]
    return "\n".join(out)


def add_arguments(parser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument("--tsa-ca", type=Path, metavar="PEM",
                        help="the authority's root certificate(s) you trust; default: the root inside the bundle")
    parser.add_argument("--json", action="store_true", help="print the verdict as one JSON object")


def run(args) -> int:
    """The command: 0 intact, 1 broken, 2 unreadable."""
    try:
        roots = load_roots(args.tsa_ca.read_bytes()) if args.tsa_ca else None
        with args.file.open("rb") as bundle:
            report = verify_bundle(iter(bundle), roots)
    except (OSError, TokenInvalid, Unreadable) as exc:
        print(f"UNREADABLE: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never exit 1 ("broken") for a file this verifier could not follow
        print(f"UNREADABLE: the bundle could not be checked: {exc!r}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_json()) if args.json else describe(report))
    return 0 if report.first is None else 1
