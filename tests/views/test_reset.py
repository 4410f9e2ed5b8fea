"""Password reset by email, through a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import replace
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller

from app import create_app
from tests.web import PASSWORD, Browser, make_user
from tests.views.test_signin import sign_in

NEW_PASSWORD = "a brand new passphrase 7"


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    with socket.socket() as probe:  # a free port: aiosmtpd cannot be given port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, controller.port
    controller.stop()


@pytest.fixture
async def mail_site(settings, smtp):
    app = create_app(replace(settings, smtp_host="127.0.0.1", smtp_port=smtp[1]))
    async with app.test_app() as test_app:
        yield test_app


async def wait_for_mail(inbox, count: int = 1):
    for _ in range(100):
        if len(inbox.messages) >= count:
            return inbox.messages[count - 1]
        await asyncio.sleep(0.05)
    raise AssertionError("no mail arrived")


async def test_reset_link_by_mail_sets_a_new_password_and_ends_every_session(mail_site, smtp, admin, tenant):
    inbox, _ = smtp
    email = await make_user(admin, tenant)
    signed_in = Browser(mail_site.test_client(), f"{tenant.slug}.localhost")
    await sign_in(signed_in, email)

    browser = Browser(mail_site.test_client(), f"{tenant.slug}.localhost")
    await browser.get("/reset")
    response = await browser.post("/reset", {"email": email})
    assert response.status_code == 200 and "on its way" in browser.last_body
    message = await wait_for_mail(inbox)
    assert message["To"] == email
    link = re.search(r"http://\S+/reset/(\S+)", message.get_payload(decode=True).decode()).group(0)
    path = "/reset/" + link.rsplit("/reset/", 1)[1]
    token = path.rsplit("/", 1)[1]
    stored = await admin.fetchval("SELECT token_hash FROM password_reset WHERE tenant_id = $1", tenant.id)
    assert token.encode() not in stored

    assert (await browser.get(path)).status_code == 200
    weak = await browser.post(path, {"password": "password1234", "password_again": "password1234"})
    assert weak.status_code == 422 and "too common" in browser.last_body
    differ = await browser.post(path, {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD + "x"})
    assert differ.status_code == 422 and "differ" in browser.last_body
    done = await browser.post(path, {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert done.status_code == 303 and done.headers["Location"] == "/signin?notice=reset"

    assert (await signed_in.get("/account")).headers["Location"].startswith("/signin")  # signed out
    assert (await browser.get(path)).status_code == 404  # single use
    assert (await sign_in(browser, email, PASSWORD)).status_code == 401
    assert (await sign_in(browser, email, NEW_PASSWORD)).status_code == 303
    actions = [r["action"] for r in await admin.fetch("SELECT action FROM audit_log WHERE tenant_id = $1", tenant.id)]
    assert "identity:password_reset:request" in actions and "identity:password:reset" in actions


async def test_unknown_address_gets_the_same_answer_and_no_mail(mail_site, smtp, tenant):
    inbox, _ = smtp
    browser = Browser(mail_site.test_client(), f"{tenant.slug}.localhost")
    await browser.get("/reset")
    response = await browser.post("/reset", {"email": "nobody@example.com"})
    assert response.status_code == 200 and "on its way" in browser.last_body
    await asyncio.sleep(0.3)
    assert inbox.messages == []


async def test_reset_link_expires_after_30_minutes(mail_site, smtp, admin, tenant):
    inbox, _ = smtp
    email = await make_user(admin, tenant)
    browser = Browser(mail_site.test_client(), f"{tenant.slug}.localhost")
    await browser.get("/reset")
    await browser.post("/reset", {"email": email})
    message = await wait_for_mail(inbox)
    path = "/reset/" + re.search(r"/reset/(\S+)", message.get_payload(decode=True).decode()).group(1)
    await admin.execute("UPDATE password_reset SET created_at = created_at - interval '31 minutes',"
                        " expires_at = expires_at - interval '31 minutes' WHERE tenant_id = $1", tenant.id)
    assert (await browser.get(path)).status_code == 404
    assert (await browser.post(path, {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD})).status_code == 404


async def test_a_nul_in_the_address_is_refused_not_a_500(browser, tenant):
    await browser.get("/reset")
    response = await browser.post("/reset", {"email": "uma\x00@example.com"})  # was a 500
    assert response.status_code == 400 and "cannot contain a NUL" in browser.last_body
