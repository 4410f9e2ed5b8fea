"""The `exceptao` command, including the embedded default end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from app.cli import main
from tests.conftest import tampering


@pytest.fixture
def cli_env(admin_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", admin_url)


def test_tenant_create_and_verify(cli_env, capsys):
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    assert main(["tenant", "create", slug, "--name", "CLI Tenant"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["slug"] == slug
    assert main(["tenant", "create", slug, "--name", "Again"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["tenant", "create", "Bad Slug!", "--name", "X"]) == 1
    assert "slug" in capsys.readouterr().err

    assert main(["verify", "--tenant", slug]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["ok"] is True and verdict["total_rows"] == 1
    assert main(["verify", "--tenant", "no-such-tenant"]) == 2


async def test_verify_exits_1_on_a_broken_chain(admin, tenant, admin_url, monkeypatch, capsys):
    async with tampering(admin):
        await admin.execute("UPDATE audit_log SET actor = 'system:x' WHERE tenant_id = $1", tenant.id)
    monkeypatch.setenv("DATABASE_URL", admin_url)
    from app.cli import _verify
    from app.config import Settings

    assert await _verify(Settings.from_env(), tenant.slug) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["ok"] is False and verdict["broken_at"] == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_serving(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "APP_DATABASE_URL")}
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_healthy(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if get(base + "/healthz")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.3)
    raise AssertionError("exceptao serve did not become healthy")


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


@pytest.mark.slow
def test_serve_on_the_embedded_default_and_restart_with_the_same_data(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_serving(tmp_path, port)
    try:
        wait_healthy(base, process)
        status, first = get(base + "/api/audit/verify", {"X-Tenant": "acme"})
        assert status == 200
        assert set(first) == {"ok", "total_rows", "head", "last_anchor_at", "broken_at", "mode", "checked_from",
                              "erased_rows", "anchor"}
        assert first["ok"] is True and first["total_rows"] >= 1
    finally:
        output = stop(process) if process.poll() is None else process.stdout.read()
    assert f"Exceptao is serving on http://127.0.0.1:{port}/" in output
    assert "admin@acme.example  password: " in output
    assert "the database was shut down cleanly" in output
    pgdata = tmp_path / "pgdata"
    assert not (pgdata / "postmaster.pid").exists(), "the embedded PostgreSQL is still running"

    process = start_serving(tmp_path, port)
    try:
        wait_healthy(base, process)
        status, second = get(base + "/api/audit/verify", {"X-Tenant": "acme"})
    finally:
        output = stop(process)
    assert status == 200
    assert second == first  # the same data, no second demo tenant
    assert "password: " not in output and "demo-credentials.txt" in output
