"""`exceptao operator add`: the credentials are printed once, and they sign in."""

from __future__ import annotations

import asyncio
import re
import uuid

from app.cli import main
from tests.web import Browser, code_at


def exceptao(*argv: str):
    """Run the command as from a shell (its own event loop, so in a thread of its own)."""
    return asyncio.to_thread(main, list(argv))


async def test_operator_add_prints_credentials_that_sign_in(site, admin, admin_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", admin_url)
    monkeypatch.setenv("EXCEPTAO_DATA_DIR", str(tmp_path))  # the site's key (the settings fixture's data dir)
    monkeypatch.delenv("EXCEPTAO_SECRET_KEY", raising=False)
    email = f"cli-op-{uuid.uuid4().hex[:8]}@example.com"
    assert await exceptao("operator", "add", "--email", email, "--name", "Cleo CLI") == 0
    out = capsys.readouterr().out
    password = re.search(r"password:\s+(\S+)", out).group(1)
    secret = re.search(r"TOTP secret:\s+([A-Z2-7]+)", out).group(1)
    assert re.search(rf"otpauth://totp/\S+secret={secret}", out)

    row = await admin.fetchrow("SELECT password_hash, totp_secret FROM operator_account WHERE email = $1", email)
    assert password not in row["password_hash"] and secret.encode() not in row["totp_secret"]

    panel = Browser(site.test_client(), "localhost")
    await panel.get("/operator/signin")
    response = await panel.post("/operator/signin", {"email": email, "password": password, "code": code_at(secret)})
    assert response.status_code == 303 and response.headers["Location"] == "/operator"

    assert await exceptao("operator", "add", "--email", email.upper(), "--name", "Again") == 1
    assert "already exists" in capsys.readouterr().err
    assert await exceptao("operator", "add", "--email", "not-an-address", "--name", "X") == 1
    assert "not an email address" in capsys.readouterr().err
