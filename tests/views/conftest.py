from __future__ import annotations

import pytest

from app import create_app
from tests.web import Browser


@pytest.fixture
async def site(settings):
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app


@pytest.fixture
def browser(site, tenant):
    """A browser on the tenant's host name."""
    return Browser(site.test_client(), f"{tenant.slug}.localhost")
