"""A browser stand-in over Quart's test client: a cookie jar, the CSRF token read off
each page as a browser's form would carry it, and users made for the test."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

import asyncpg
import pyotp

from app.accounts.passwords import hash_password
from app.tenants import Tenant

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery staple 42"


@dataclass
class Browser:
    client: object
    host: str
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str | None = None
    user_agent: str = "Mozilla/5.0 (TestBrowser)"
    address: str = "203.0.113.7"
    last_body: str = ""

    def _headers(self, extra: dict | None = None) -> dict:
        headers = {"Host": self.host, "User-Agent": self.user_agent}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers.update(extra or {})
        return headers

    def __post_init__(self) -> None:
        self.client.cookie_jar = None  # this class is the jar: one per browser, not one per client

    def _scope(self) -> dict:
        return {"client": (self.address, 50000)}

    def _keep(self, response) -> None:
        for header in response.headers.getlist("Set-Cookie"):
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    async def get(self, path: str, headers: dict | None = None):
        response = await self.client.get(path, headers=self._headers(headers), scope_base=self._scope())
        self._keep(response)
        self.last_body = (await response.get_data()).decode()
        if match := _CSRF.search(self.last_body):
            self.csrf = match.group(1)
        return response

    async def post(self, path: str, form: dict | None = None, *, csrf: bool = True, headers: dict | None = None):
        form = dict(form or {})
        if csrf and "csrf_token" not in form:
            if self.csrf is None:
                await self.get("/signin")
            form["csrf_token"] = self.csrf
        response = await self.client.post(path, form=form, headers=self._headers(headers), scope_base=self._scope())
        self._keep(response)
        self.last_body = (await response.get_data()).decode()
        if match := _CSRF.search(self.last_body):
            self.csrf = match.group(1)
        return response

    @property
    def session_token(self) -> str | None:
        return self.cookies.get("exceptao_session")


async def make_user(admin: asyncpg.Connection, tenant: Tenant, *, password: str = PASSWORD, name: str = "Uma User",
                    signins: int = 0) -> str:
    email = f"user-{uuid.uuid4().hex[:8]}@example.com"
    async with admin.transaction():
        await admin.execute("SELECT set_config('app.current_tenant_id', $1, true)", str(tenant.id))
        await admin.execute(
            "INSERT INTO app_user (tenant_id, email, display_name, password_hash, signins) VALUES ($1, $2, $3, $4, $5)",
            tenant.id, email, name, hash_password(password), signins)
    return email


def totp_secret_from(page: str) -> str:
    return re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)


def code_at(secret: str, offset_steps: int = 0) -> str:
    import time

    totp = pyotp.TOTP(secret)
    return totp.at(time.time() + 30 * offset_steps)
