"""Every view says who may open it: a capability, or a place in OPEN_VIEWS. Nothing is open by omission."""

from __future__ import annotations

from app import create_app
from app.web.guards import OPEN_VIEWS, access_rule


def undeclared_views(app) -> list[str]:
    """Endpoints in the URL map that neither require a capability nor are listed as open."""
    return sorted({rule.endpoint for rule in app.url_map.iter_rules()
                   if not access_rule(rule.endpoint, app.view_functions[rule.endpoint])})


def test_every_view_declares_its_capability_or_is_listed_as_open(settings):
    app = create_app(settings)
    assert undeclared_views(app) == []
    # And the list names no view that is gone (a stale entry would hide a rename).
    assert sorted(set(OPEN_VIEWS) - {rule.endpoint for rule in app.url_map.iter_rules()}) == []


async def test_a_new_view_that_declares_nothing_is_caught_and_refused(site, browser, admin, tenant):
    @site.app.get("/forgotten")
    async def forgotten():
        return "secret"

    assert undeclared_views(site.app) == ["forgotten"]

    from tests.views.test_signin import sign_in
    from tests.web import make_user

    await sign_in(browser, await make_user(admin, tenant))
    response = await browser.get("/forgotten")
    assert response.status_code == 403 and "secret" not in browser.last_body
    assert "does not say who may open it" in browser.last_body


async def test_access_is_loaded_once_per_request(browser, admin, tenant, monkeypatch):
    from app import access
    from tests.views.test_signin import sign_in
    from tests.web import make_user

    await sign_in(browser, await make_user(admin, tenant))
    loads = []
    real = access.load

    async def counted(*args, **kwargs):
        loads.append(args[1])
        return await real(*args, **kwargs)

    monkeypatch.setattr(access, "load", counted)
    await browser.get("/")  # the home page lists capabilities and the header asks for them again
    assert (await browser.get("/account/tokens")).status_code == 200
    assert len(loads) == 2
