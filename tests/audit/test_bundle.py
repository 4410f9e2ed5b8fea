"""The audit bundle (app/audit/bundle.py) checked offline (app/audit/offline.py) against a real chain and authority.

Every tampering an auditor must catch is made to the file as someone with it in
hand would make it, and the verdict must name the seq where it is.
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from app.audit.anchor import read_timestamp_reply, timestamp_request
from app.audit.bundle import write_bundle
from app.cli import main
from tests.audit import bundle_chain
from tests.audit.bundle_chain import EMAIL, IP, KEPT_EMAIL
from tests.conftest import TimestampAuthority, tampering

anchoring, bundled = bundle_chain.anchoring, bundle_chain.bundled


def verify(capsys, path, *options) -> tuple[int, dict]:
    code = main(["audit", "verify-bundle", str(path), "--json", *options])
    out = capsys.readouterr().out
    return code, json.loads(out) if out else {}


def rewrite(bundled, tmp_path, lines: list[bytes], name: str = "tampered.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"".join(lines))
    return path


def flip(line: bytes, at: int) -> bytes:
    return line[:at] + bytes([line[at] ^ 0x01]) + line[at + 1:]


@pytest.fixture(scope="module")
def other_authority(tmp_path_factory):
    """A second, genuine RFC 3161 authority the tenant never used."""
    return TimestampAuthority(tmp_path_factory.mktemp("other-tsa"))


async def test_an_exported_bundle_verifies_offline(bundled, capsys, tsa):
    code, verdict = verify(capsys, bundled.path)
    assert code == 0, verdict
    head = bundled.summary.head_seq
    assert verdict["ok"] is True and verdict["broken_at"] is None
    assert (verdict["rows"], verdict["anchors"], verdict["erased_rows"]) == (head, 2, 1)
    assert verdict["head"] == {"seq": head, "row_hash": bundled.summary.head_hash}
    assert bundled.summary.rows == head and bundled.summary.anchors == 2

    # Without --tsa-ca it says so and shows the root's fingerprint, as openssl prints it, to compare.
    assert main(["audit", "verify-bundle", str(bundled.path)]) == 0
    text = capsys.readouterr().out
    fingerprint = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(tsa.ca)],
                                 capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
    assert "not pinned with --tsa-ca" in text and fingerprint in text
    assert "INTACT" in text and f"{head} rows checked" in text and "2 anchors" in text

    # Pinned to the authority's root, the same verdict.
    code, pinned = verify(capsys, bundled.path, "--tsa-ca", str(tsa.ca))
    assert code == 0 and pinned["roots"]["pinned"] is True


async def test_the_bundle_holds_no_personal_data(bundled):
    content = bundled.path.read_bytes()
    for secret in (EMAIL, KEPT_EMAIL, IP, "Firefox", "actor_tombstone_"):
        assert secret.encode() not in content
    # The commitment is there, so the controller can check it against their records.
    lines = bundled.lines()
    row = json.loads(lines[bundled.row_index(lines, bundled.erased_seq)])
    assert len(row["record"]["pii"]) == 64 and row["erased"] is True


@pytest.mark.parametrize("field", ["data", "actor", "action", "at", "target", "pii", "prev_hash", "row_hash",
                                   "tenant", "seq"])
async def test_a_flipped_byte_in_a_field_of_a_row_names_that_row(bundled, capsys, tmp_path, field):
    seq = bundled.erased_seq if field == "pii" else bundled.erased_seq - 1
    lines = bundled.lines()
    i = bundled.row_index(lines, seq)
    # A byte a few characters into the field's value, which keeps the line readable JSON.
    start = lines[i].index(b'"%b":' % field.encode()) + len(field) + 3
    at = next(k for k in range(start + 2, len(lines[i])) if chr(lines[i][k]).isalnum() and chr(lines[i][k] ^ 1).isalnum())
    lines[i] = flip(lines[i], at)
    code, verdict = verify(capsys, rewrite(bundled, tmp_path, lines))
    assert code == 1 and verdict["ok"] is False
    assert verdict["broken_at"] == seq, verdict


async def test_any_flipped_byte_of_a_row_record_and_hashes_names_that_row(bundled, capsys, tmp_path):
    lines = bundled.lines()
    seq = bundled.plain_seq
    i = bundled.row_index(lines, seq)
    covered = lines[i].index(b',"erased"')  # whether an actor was erased is outside the hash, and said so
    for at in range(covered):
        tampered = lines[:i] + [flip(lines[i], at)] + lines[i + 1:]
        code, verdict = verify(capsys, rewrite(bundled, tmp_path, tampered))
        assert (code, verdict["broken_at"]) == (1, seq), (at, lines[i][at:at + 20], verdict)


async def test_every_row_flipped_in_turn_is_named(bundled, capsys, tmp_path):
    lines = bundled.lines()
    for seq in range(1, bundled.summary.head_seq + 1):
        i = bundled.row_index(lines, seq)
        at = lines[i].index(b'"at":"') + 20  # a digit of the time
        tampered = lines[:i] + [flip(lines[i], at)] + lines[i + 1:]
        code, verdict = verify(capsys, rewrite(bundled, tmp_path, tampered))
        assert (code, verdict["broken_at"], verdict["reason"]) == (1, seq, "hash_mismatch")


async def test_a_removed_row_is_named(bundled, capsys, tmp_path):
    lines = bundled.lines()
    del lines[bundled.row_index(lines, 4)]
    code, verdict = verify(capsys, rewrite(bundled, tmp_path, lines))
    assert (code, verdict["broken_at"], verdict["reason"]) == (1, 4, "seq_gap")


async def test_the_last_row_removed_is_named_by_the_head(bundled, capsys, tmp_path):
    lines = bundled.lines()
    head = bundled.summary.head_seq
    del lines[bundled.row_index(lines, head)]
    code, verdict = verify(capsys, rewrite(bundled, tmp_path, lines))
    assert (code, verdict["broken_at"], verdict["reason"]) == (1, head, "row_missing")


async def test_reordered_rows_are_named(bundled, capsys, tmp_path):
    lines = bundled.lines()
    i = bundled.row_index(lines, 5)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    code, verdict = verify(capsys, rewrite(bundled, tmp_path, lines))
    assert (code, verdict["broken_at"]) == (1, 5)
    assert "seq 5 was due next, the line holds seq 6" in " ".join(p["detail"] for p in verdict["problems"])


def _anchor_lines(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.startswith(b'{"anchor"')]


def _with_token(line: bytes, token: bytes) -> bytes:
    anchor = json.loads(line)
    anchor["anchor"]["tsa_token"] = base64.b64encode(token).decode()
    return json.dumps(anchor).encode() + b"\n"


async def test_a_token_replaced_by_another_anchors_token_is_named(bundled, capsys, tmp_path):
    lines = bundled.lines()
    first, second = _anchor_lines(lines)
    other = base64.b64decode(json.loads(lines[second])["anchor"]["tsa_token"])
    lines[first] = _with_token(lines[first], other)
    code, verdict = verify(capsys, rewrite(bundled, tmp_path, lines))
    assert (code, verdict["broken_at"], verdict["reason"]) == (1, bundled.anchored[0], "token_invalid")


async def test_a_token_from_another_authority_is_named_and_pinning_catches_a_swapped_root(
        bundled, capsys, tmp_path, tsa, other_authority):
    lines = bundled.lines()
    first = _anchor_lines(lines)[0]
    digest = bytes.fromhex(json.loads(lines[first])["anchor"]["row_hash"])
    forged = read_timestamp_reply(other_authority.reply(timestamp_request(digest, 7)), digest, 7).token
    lines[first] = _with_token(lines[first], forged)
    code, verdict = verify(capsys, rewrite(bundled, tmp_path, lines))
    assert (code, verdict["broken_at"], verdict["reason"]) == (1, bundled.anchored[0], "token_invalid")

    # Swap the bundle's root for the other authority's too: only pinning the real root catches it.
    root = next(i for i, line in enumerate(lines) if b'"source":"configured_root"' in line)
    certificate = json.loads(lines[root])
    certificate["certificate"] = other_authority.ca.read_text()
    lines[root] = json.dumps(certificate).encode() + b"\n"
    swapped = rewrite(bundled, tmp_path, lines, "swapped-root.jsonl")
    code, verdict = verify(capsys, swapped)
    assert verdict["broken_at"] == bundled.anchored[1]  # the genuine token no longer verifies under the swapped root
    code, verdict = verify(capsys, swapped, "--tsa-ca", str(tsa.ca))
    assert (code, verdict["broken_at"], verdict["reason"]) == (1, bundled.anchored[0], "token_invalid")


async def test_a_wrong_tsa_ca_fails_every_anchor(bundled, capsys, other_authority):
    code, verdict = verify(capsys, bundled.path, "--tsa-ca", str(other_authority.ca))
    assert (code, verdict["broken_at"], verdict["reason"]) == (1, bundled.anchored[0], "token_invalid")
    assert [p["seq"] for p in verdict["problems"]] == bundled.anchored


async def test_an_anchored_hash_changed_with_its_row_is_named(bundled, capsys, tmp_path):
    """Rewriting an anchored row and its anchor's hash alike: the token still timestamps the old hash."""
    lines = bundled.lines()
    first = _anchor_lines(lines)[0]
    anchor = json.loads(lines[first])
    anchor["anchor"]["row_hash"] = "00" * 32
    lines[first] = json.dumps(anchor).encode() + b"\n"
    code, verdict = verify(capsys, rewrite(bundled, tmp_path, lines))
    assert (code, verdict["broken_at"]) == (1, bundled.anchored[0])
    assert {p["reason"] for p in verdict["problems"]} == {"token_invalid", "anchor_mismatch"}


@pytest.mark.parametrize("cut", ["mid_row", "end_line", "header"])
async def test_a_truncated_bundle_is_unreadable(bundled, capsys, tmp_path, cut):
    content = bundled.path.read_bytes()
    lines = bundled.lines()
    if cut == "mid_row":
        i = bundled.row_index(lines, 6)
        content = b"".join(lines[:i]) + lines[i][:40]
    elif cut == "end_line":
        content = b"".join(lines[:-1])
    else:
        content = content[:30]
    path = tmp_path / "cut.jsonl"
    path.write_bytes(content)
    assert main(["audit", "verify-bundle", str(path)]) == 2
    assert "truncated" in capsys.readouterr().err


async def test_a_file_that_is_not_a_bundle_is_unreadable(capsys, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a bundle\n")
    assert main(["audit", "verify-bundle", str(path)]) == 2
    assert "UNREADABLE" in capsys.readouterr().err
    assert main(["audit", "verify-bundle", str(tmp_path / "missing.jsonl")]) == 2


async def test_a_chain_tampered_in_the_database_exports_and_is_named(bundled, pool, admin, anchoring, capsys, tmp_path):
    """Rewritten behind the app's back (a row's data, an anchor's token): the export still works and says where."""
    tenant = bundled.tenant
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET data = '{\"k\": 99}' WHERE tenant_id = $1 AND seq = $2",
                            tenant.id, bundled.summary.head_seq - 1)
        await admin.execute("UPDATE audit_anchor SET tsa_token = '\\x3003020100' WHERE tenant_id = $1 AND seq = $2",
                            tenant.id, bundled.anchored[1])
    path = tmp_path / "again.jsonl"
    with path.open("wb") as file:
        await write_bundle(pool, tenant.id, file, anchoring)
    code, verdict = verify(capsys, path)
    assert (code, verdict["broken_at"]) == (1, bundled.anchored[1])
    assert [(p["seq"], p["reason"]) for p in verdict["problems"]] == [
        (bundled.anchored[1], "token_invalid"), (bundled.summary.head_seq - 1, "hash_mismatch")]
