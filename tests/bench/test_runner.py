"""`python -m bench --quick` runs end to end against real parts and writes every figure and plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PLOTS = ("http_latency.png", "http_throughput.png", "audit_appends.png", "audit_verify.png", "app_memory.png")
TARGETS = ("one_tenant_appends_per_s", "verify_full_rows_per_s", "list_p95_ms_at_16", "app_memory_mb")


@pytest.mark.slow
def test_a_quick_run_writes_every_figure_and_valid_plots(server_url, tmp_path):
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                         env={**os.environ, "DATABASE_URL": server_url}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())

    assert results["valid"] and results["http_errors"] == 0 and results["chains_verified"]
    assert results["machine"]["cpus"] == os.cpu_count() and results["machine"]["postgresql"]["server_version"]
    assert len(results["machine"]["git_commit"]) == 40
    figures = results["figures"]
    for key in ("one_tenant_chained", "many_tenants_chained", "one_tenant_plain", "many_tenants_plain"):
        assert figures["audit_appends"][key]["per_s"] > 0, key
    assert figures["audit_appends"]["many_tenants_chained"]["tenants"] == 64
    full, fast = figures["verify"]["full"], figures["verify"]["from_anchor"]
    assert (full["mode"], full["checked_from"]) == ("full", 1) and full["rows_per_s"] > 0
    assert fast["mode"] == "from_anchor" and fast["checked_from"] == figures["verify"]["anchored_seq"] + 1
    for page in ("list", "detail", "dashboard"):
        runs = figures["http"][page]
        assert [r["concurrency"] for r in runs] == [1, 4, 16, 64], page
        for r in runs:
            assert r["ok"] > 0 and r["errors"] == 0 and r["requests_per_s"] > 0, (page, r)
            assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p95"] <= r["latency_ms"]["p99"], (page, r)
            cpu = r["cpu_per_answer"]  # every answer costs the app, PostgreSQL and the client some CPU
            assert cpu["app_ms"] > 0 and cpu["postgresql_ms"] > 0 and cpu["client_ms"] > 0, (page, r)
            assert 0 < cpu["machine_busy"] <= 1, (page, r)
    memory = figures["memory"]
    assert 0 < memory["before_load_mb"] <= memory["peak_mb"] and len(memory["samples"]) > 1
    for key in TARGETS:
        target = results["targets"][key]
        assert isinstance(target["met"], bool) and target["value"] is not None, key

    for name in PLOTS:
        path = tmp_path / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as image:
            image.verify()
    assert "| exception list p95 at concurrency 16, ms | <= 50 |" in (tmp_path / "summary.md").read_text()
