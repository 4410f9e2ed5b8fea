"""`exceptao user add` and `exceptao token create`: bootstrapping a tenant from the command line."""

from __future__ import annotations

import asyncio
import re

from app.cli import main
from tests.web import PASSWORD, Browser


async def run(monkeypatch, admin_url, *argv: str) -> int:
    monkeypatch.setenv("DATABASE_URL", admin_url)
    return await asyncio.to_thread(main, list(argv))


async def test_user_add_prints_a_link_that_lets_the_user_in_with_their_role(
        site, admin, admin_url, tenant, monkeypatch, capsys):
    assert await run(monkeypatch, admin_url, "user", "add", "--tenant", tenant.slug,
                     "--email", "first@example.com", "--role", "admin") == 0
    out = capsys.readouterr().out
    link = re.search(rf"http://{tenant.slug}\.localhost:\d+(/reset/\S+)", out)
    assert link, out

    browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
    assert (await browser.get(link.group(1))).status_code == 200
    assert f"Welcome to {tenant.name}" in browser.last_body and "Choose your password" in browser.last_body
    chosen = await browser.post(link.group(1), {"password": PASSWORD, "password_again": PASSWORD})
    assert chosen.status_code == 303 and chosen.headers["Location"] == "/signin?notice=welcome"
    await browser.get("/signin")
    await browser.post("/signin", {"email": "first@example.com", "password": PASSWORD})
    assert (await browser.get("/")).status_code == 200 and 'href="/admin"' in browser.last_body

    chain = [r["action"] for r in await admin.fetch(
        "SELECT action FROM audit_log WHERE tenant_id = $1 AND actor = 'system:cli' ORDER BY seq", tenant.id)]
    assert chain == ["access:user:invite", "access:assignment:create"]

    assert await run(monkeypatch, admin_url, "user", "add", "--tenant", tenant.slug,
                     "--email", "first@example.com", "--role", "admin") == 1
    assert "already a user" in capsys.readouterr().err
    assert await run(monkeypatch, admin_url, "user", "add", "--tenant", tenant.slug,
                     "--email", "second@example.com", "--role", "wizard") == 1
    err = capsys.readouterr().err
    assert "no role 'wizard'" in err and "Approver" in err
    assert await admin.fetchval("SELECT count(*) FROM app_user WHERE tenant_id = $1", tenant.id) == 1


async def test_token_create_prints_a_token_within_the_users_capabilities(
        site, admin, admin_url, tenant, monkeypatch, capsys):
    assert await run(monkeypatch, admin_url, "user", "add", "--tenant", tenant.slug,
                     "--email", "robot@example.com", "--role", "auditor") == 0
    capsys.readouterr()
    assert await run(monkeypatch, admin_url, "token", "create", "--tenant", tenant.slug, "--email",
                     "robot@example.com", "--capability", "audit.read", "--expires", "7") == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("exo_pat_")
    client = site.test_client()
    me = await client.get("/api/me", headers={"Host": f"{tenant.slug}.localhost", "Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and (await me.get_json())["capabilities"] == ["audit.read"]

    assert await run(monkeypatch, admin_url, "token", "create", "--tenant", tenant.slug, "--email",
                     "robot@example.com", "--capability", "tenant.admin") == 1
    assert "tenant.admin" in capsys.readouterr().err
    assert await admin.fetchval("SELECT count(*) FROM api_token WHERE tenant_id = $1", tenant.id) == 1
