"""Fixtures of the evidence tests: the app on a chosen object store and key-encryption key, its people, uploads.

Stores: the local folder (the embedded default) and two S3 providers (moto
servers, tests/storage/conftest.py); keys: the local key file, or a real
OpenBao dev server's transit engine (the `vault` fixture).
"""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from app import create_app
from tests.exceptions.test_screens import Person, person
from tests.browser.conftest import live_url
from tests.crypto.conftest import own, own_database
from tests.storage.conftest import s3_providers
from tests.web import Browser

__all__ = ["live_url", "own", "own_database", "s3_providers"]   # fixtures, found by pytest under these names


@asynccontextmanager
async def serving(settings):
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app


@pytest.fixture
async def site(settings):
    """The app on the embedded defaults: the local folder and the local key file."""
    async with serving(settings) as test_app:
        yield test_app


async def on_s3(settings, provider) -> object:
    """`settings` with evidence in a new bucket of `provider`."""
    return replace(settings, s3_bucket=await provider.new_bucket(), s3_endpoint=provider.endpoint,
                   s3_region=provider.region, s3_access_key_id=provider.access_key_id,
                   s3_secret_access_key=provider.secret_access_key, s3_addressing_style="path", s3_part_mb=5)


@pytest.fixture
async def team(site, admin, tenant):
    """Rhea requests, Olga owns risks, Aud audits; `reviewers` adds Abel (approver) and Ada (admin), with TOTP."""
    return await make_team(site, admin, tenant)


async def make_team(site, admin, tenant, *, reviewers: bool = False) -> dict[str, Person]:
    # Each person costs a password hash and a sign-in: tests make only the people they need.
    people = [await person(site, admin, tenant, "Rhea", "requester"),
              await person(site, admin, tenant, "Olga", "risk_owner"),
              await person(site, admin, tenant, "Aud", "auditor")]
    if reviewers:
        people += [await person(site, admin, tenant, "Abel", "approver", totp=True),
                   await person(site, admin, tenant, "Ada", "admin", totp=True)]
    return {p.name: p for p in people}


@pytest.fixture
async def full_team(site, admin, tenant):
    return await make_team(site, admin, tenant, reviewers=True)


def multipart(fields: list[tuple[str, str]], filename: str | None, data: bytes, *,
              content_type: str = "application/octet-stream") -> tuple[bytes, str]:
    """A multipart/form-data body as a browser sends it: the fields, then the file."""
    boundary = "----exceptao" + secrets.token_hex(8)
    parts = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    if filename is not None:
        # A quoted-string: backslashes escaped (werkzeug unescapes them), quotes and line ends as browsers send them.
        quoted = filename.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
                     f"Content-Type: {content_type}\r\n\r\n".encode("utf-8") + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def upload(browser: Browser, parent_path: str, filename: str | None, data: bytes, *, csrf: bool = True,
                 headers: dict | None = None):
    if browser.csrf is None:
        await browser.get("/")
    body, content_type = multipart([("csrf_token", browser.csrf)] if csrf else [], filename, data)
    sent = browser._headers({"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})})
    response = await browser.client.post(f"{parent_path}/evidence", data=body, headers=sent,
                                         scope_base=browser._scope())
    browser._keep(response)
    browser.last_body = (await response.get_data()).decode()
    return response


async def download(browser: Browser, evidence_id) -> tuple[object, bytes]:
    """GET /evidence/<id> as the browser, without decoding the body as a page."""
    response = await browser.client.get(f"/evidence/{evidence_id}", headers=browser._headers(),
                                        scope_base=browser._scope())
    browser._keep(response)
    body = await response.get_data()
    browser.last_body = body.decode("utf-8", "replace")
    return response, body
