"""The offline verifier as an auditor runs it: no database code loaded, the documented commands and example."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import rfc8785

from app.audit.offline import _decode
from app.cli import main
from tests.audit import bundle_chain

anchoring, bundled = bundle_chain.anchoring, bundle_chain.bundled

DOC = Path(__file__).parents[2] / "docs" / "audit-bundle.md"
DATABASE_CODE = ("asyncpg", "app.db", "app.audit.verify", "app.audit.events", "app.audit.canonical", "app.audit.bundle")


def offline_env() -> dict:
    """No database anywhere: an auditor's machine."""
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "APP_DATABASE_URL", "PGHOST")}


async def test_verify_bundle_loads_no_database_code(bundled):
    script = (
        "import json, sys\n"
        "from app.cli import main\n"
        f"code = main(['audit', 'verify-bundle', {str(bundled.path)!r}, '--json'])\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'asyncpg' or m in {DATABASE_CODE!r})\n"
        "print(json.dumps({'code': code, 'loaded': loaded}), file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=offline_env(),
                         cwd=Path(__file__).parents[2], timeout=120)
    result = json.loads(run.stderr.strip().splitlines()[-1])
    assert result == {"code": 0, "loaded": []}, run.stderr
    assert json.loads(run.stdout)["ok"] is True

    # And the installed command, broken bundle included: exit codes as documented.
    command = shutil.which("exceptao", path=str(Path(sys.executable).parent))
    assert subprocess.run([command, "audit", "verify-bundle", str(bundled.path)], env=offline_env(),
                          capture_output=True, timeout=120).returncode == 0
    broken = bundled.path.with_name("broken.jsonl")
    lines = bundled.lines()
    del lines[bundled.row_index(lines, 3)]
    broken.write_bytes(b"".join(lines))
    run = subprocess.run([command, "audit", "verify-bundle", str(broken)], env=offline_env(), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 1 and "BROKEN at seq 3: seq_gap" in run.stdout


async def test_the_documented_openssl_check_verifies_a_token_from_the_bundle(bundled):
    doc = DOC.read_text()
    jq = re.findall(r"^jq .*$", doc, re.M)
    verify = re.search(r"^openssl ts -verify .*$", doc, re.M).group(0)
    assert bundled.path.name == "bundle.jsonl"
    tmp_path = bundled.path.parent
    for line in (jq[0], jq[2]):
        subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=tmp_path, check=True, timeout=60)
    digest = subprocess.run(["bash", "-c", jq[1]], cwd=tmp_path, check=True, capture_output=True, text=True,
                            timeout=60).stdout.strip()
    first = next(json.loads(line) for line in bundled.lines() if line.startswith(b'{"anchor"'))
    assert digest == first["anchor"]["row_hash"] and first["anchor"]["seq"] == bundled.anchored[0]
    checked = subprocess.run(["bash", "-c", verify.replace("<row_hash hex>", digest)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert "Verification: OK" in checked.stdout, checked.stdout + checked.stderr
    # The same token for another hash does not verify.
    wrong = subprocess.run(["bash", "-c", verify.replace("<row_hash hex>", "00" * 32)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert "Verification: OK" not in wrong.stdout


def _example() -> tuple[list[str], str, str]:
    doc = DOC.read_text().split("## Worked example", 1)[1]
    blocks = re.findall(r"```\n(.*?)```", doc, re.S)
    bundle, jcs, hashed = blocks[0].splitlines(), blocks[1].strip(), blocks[2].strip()
    return bundle, jcs, hashed.removeprefix("row_hash = ")


def test_the_worked_example_is_what_rfc8785_and_the_verifier_say(tmp_path, capsys):
    bundle, jcs, row_hash = _example()
    row = _decode(bundle[1])
    assert rfc8785.dumps(row["record"]) == jcs.encode()
    assert hashlib.sha256(bytes(32) + jcs.encode()).hexdigest() == row_hash == row["row_hash"]
    path = tmp_path / "example.jsonl"
    path.write_text("\n".join(bundle) + "\n", encoding="utf-8")
    assert main(["audit", "verify-bundle", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 1


async def test_the_worked_example_hash_is_the_chain_triggers(admin):
    bundle, jcs, row_hash = _example()
    record = json.loads(bundle[1])["record"]
    data_text = bundle[1].split('"data":', 1)[1].rsplit(',"pii":', 1)[0]  # as the database printed it
    text, hashed = await admin.fetchrow(
        "SELECT t, sha256(decode(repeat('00', 32), 'hex') || convert_to(t, 'UTF8')) FROM"
        " audit_record_text($1::uuid, $2, $3::text::timestamptz, $4, $5, $6, $7, jcs($8::jsonb), NULL) AS t",
        record["tenant"], record["seq"], record["at"], record["actor"], record["action"], record["target"]["type"],
        record["target"]["id"], data_text)
    assert text == jcs
    assert hashed.hex() == row_hash


async def test_audit_export_writes_a_bundle_that_verifies_and_is_on_the_record(bundled, pool, admin_url, monkeypatch,
                                                                               tmp_path, capsys, tsa):
    monkeypatch.setenv("DATABASE_URL", admin_url)
    monkeypatch.setenv("EXCEPTAO_TSA_CA_FILE", str(tsa.ca))
    monkeypatch.chdir(tmp_path)
    tenant = bundled.tenant
    # main runs its own event loop: in a thread, beside the test's.
    assert await asyncio.to_thread(main, ["audit", "export", "--tenant", tenant.slug]) == 0
    said = capsys.readouterr().out
    head = bundled.summary.head_seq
    written = tmp_path / f"audit-bundle-{tenant.slug}-seq{head}.jsonl"
    assert f"Wrote {written.name}: {head} rows up to seq {head}" in said and "2 anchors" in said
    assert not list(tmp_path.glob("*.partial"))
    assert main(["audit", "verify-bundle", str(written), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == head

    from app.db import tenant_transaction

    async with tenant_transaction(pool, tenant.id) as conn:
        event = await conn.fetchrow("SELECT seq, actor, data FROM audit_log WHERE tenant_id = $1 AND action = $2",
                                    tenant.id, "audit:bundle:export")
    assert event["seq"] == head + 1 and event["actor"] == "system:cli"
    assert json.loads(event["data"])["head_seq"] == head

    # --out names the file; a tenant that does not exist is said so.
    assert await asyncio.to_thread(main, ["audit", "export", "--tenant", tenant.slug, "--out",
                                          str(tmp_path / "mine.jsonl")]) == 0
    assert (tmp_path / "mine.jsonl").read_bytes().startswith(b'{"format":"exceptao-audit-bundle"')
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["audit", "export", "--tenant", "no-such-tenant"]) == 2
    assert "no tenant" in capsys.readouterr().err


@pytest.mark.parametrize("pem", [b"", b"not a certificate"])
async def test_an_unreadable_tsa_ca_is_exit_2(bundled, capsys, tmp_path, pem):
    path = tmp_path / "root.pem"
    path.write_bytes(pem)
    assert main(["audit", "verify-bundle", str(bundled.path), "--tsa-ca", str(path)]) == 2
    assert "UNREADABLE" in capsys.readouterr().err
