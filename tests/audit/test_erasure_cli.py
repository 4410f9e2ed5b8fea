"""`exceptao erase-actor`: what an operator running it on a written request sees."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from app.audit.erasure import DEFAULT_BASIS, NOTHING
from app.cli import main
from tests.audit.test_erasure import places_holding


@pytest.fixture
def cli_env(admin_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", admin_url)


def holding(admin_url: str, text: str) -> list[str]:
    async def search():
        conn = await asyncpg.connect(admin_url)
        try:
            return await places_holding(conn, text)
        finally:
            await conn.close()
    return asyncio.run(search())


def test_erase_actor_prints_the_tombstone_and_counts_and_the_chain_still_verifies(cli_env, admin_url, capsys):
    slug = f"erase-{uuid.uuid4().hex[:8]}"
    name = f"Jan Kowalski {uuid.uuid4().hex[:6]}"  # only his: the search spans the other tests' tenants too
    email = f"Jan.Kowalski-{uuid.uuid4().hex[:6]}@example.com"
    assert main(["tenant", "create", slug, "--name", "Erasure Ltd"]) == 0
    assert main(["user", "add", "--tenant", slug, "--email", email, "--name", name, "--role", "requester"]) == 0
    capsys.readouterr()
    assert holding(admin_url, email)

    assert main(["erase-actor", "--tenant", slug, "--email", email.lower(), "--reference", "DSR-17"]) == 0
    erased = json.loads(capsys.readouterr().out)
    assert erased["erased"] is True and erased["tombstone"].startswith("actor_tombstone_")
    assert erased["audit_rows"] == 1 and erased["account_anonymised"] is True
    assert erased["basis"] == DEFAULT_BASIS and erased["reference"] == "DSR-17"
    assert erased["requested_by"] == "system:cli"
    assert email.lower() not in json.dumps(erased).lower()
    assert holding(admin_url, email) == [] and holding(admin_url, name) == []

    assert main(["verify", "--tenant", slug]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True

    # Asked again: said plainly, nothing changed, not an error.
    assert main(["erase-actor", "--tenant", slug, "--email", email]) == 0
    assert json.loads(capsys.readouterr().out) == {"erased": False, "message": NOTHING}


def test_erase_actor_refuses_clearly(cli_env, capsys):
    assert main(["erase-actor", "--tenant", "no-such-tenant", "--email", "a@example.com"]) == 2
    assert "there is no tenant 'no-such-tenant'" in capsys.readouterr().err

    slug = f"erase-{uuid.uuid4().hex[:8]}"
    assert main(["tenant", "create", slug, "--name", "Erasure Ltd"]) == 0
    assert main(["user", "add", "--tenant", slug, "--email", "ola@example.com", "--role", "admin"]) == 0
    capsys.readouterr()
    assert main(["erase-actor", "--tenant", slug, "--email", "ola@example.com", "--basis", "  "]) == 1
    assert capsys.readouterr().err.strip() == "not erased: Give the legal basis."
    assert main(["erase-actor", "--tenant", slug, "--email", "ola@example.com"]) == 1
    assert "nobody enabled would hold tenant.admin" in capsys.readouterr().err
