"""Operators for the tests, and a browser on the bare base domain where the panel lives."""

from __future__ import annotations

import uuid

import pytest

from app.operator.accounts import NewOperator, create_operator
from tests.views.conftest import browser, site  # noqa: F401  (the same app and tenant browser as the view tests)
from tests.web import Browser, code_at


@pytest.fixture
def make_operator(admin, settings):
    async def make(name: str = "Olga Operator") -> NewOperator:
        return await create_operator(admin, settings.key(), f"op-{uuid.uuid4().hex[:8]}@example.com", name)

    return make


@pytest.fixture
async def operator(make_operator) -> NewOperator:
    return await make_operator()


@pytest.fixture
def panel(site) -> Browser:  # noqa: F811
    """A browser on the bare base domain."""
    return Browser(site.test_client(), "localhost")


async def operator_sign_in(panel: Browser, operator: NewOperator, *, password: str | None = None,
                           code: str | None = None, steps_ahead: int = 0):
    await panel.get("/operator/signin")
    return await panel.post("/operator/signin", {
        "email": operator.operator.email,
        "password": operator.password if password is None else password,
        "code": code_at(operator.totp_secret, steps_ahead) if code is None else code,
    })


@pytest.fixture
async def signed_in(panel, operator) -> Browser:
    """The panel browser, signed in as `operator`."""
    response = await operator_sign_in(panel, operator)
    assert response.status_code == 303, panel.last_body
    await panel.get(response.headers["Location"])  # as a browser follows it: the page with the new CSRF token
    return panel


def wrong_code(secret: str) -> str:
    """A six-digit code that none of the accepted steps has."""
    accepted = {code_at(secret, k) for k in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in accepted)
