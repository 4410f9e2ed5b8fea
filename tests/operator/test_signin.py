"""Operators sign in with email, password and a TOTP code, every time, on the bare base domain only."""

from __future__ import annotations

from app.operator.accounts import SIGNIN_FAILED
from tests.operator.conftest import operator_sign_in, wrong_code
from tests.views.test_signin import sign_in
from tests.web import Browser, code_at, make_user

OPERATOR_COOKIE = "exceptao_operator"


async def test_signin_needs_password_and_code(panel, operator):
    refusals = [
        await operator_sign_in(panel, operator, code=""),                                  # no code
        await operator_sign_in(panel, operator, password="not the password at all"),      # right code, wrong password
        await operator_sign_in(panel, operator, code=wrong_code(operator.totp_secret)),   # wrong code
    ]
    assert [r.status_code for r in refusals] == [401, 401, 401]
    assert SIGNIN_FAILED in panel.last_body
    assert f'value="{operator.operator.email}"' in panel.last_body  # what was typed is kept
    assert OPERATOR_COOKIE not in panel.cookies
    assert (await panel.get("/operator")).headers["Location"] == "/operator/signin"

    response = await operator_sign_in(panel, operator)
    assert response.status_code == 303 and response.headers["Location"] == "/operator"
    assert OPERATOR_COOKIE in panel.cookies
    assert (await panel.get("/operator")).status_code == 200
    assert "Operator panel" in panel.last_body and operator.operator.email in panel.last_body


async def test_unknown_email_and_wrong_password_answer_alike(panel, operator):
    wrong = await operator_sign_in(panel, operator, password="not the password at all")
    wrong_body = panel.last_body
    await panel.get("/operator/signin")
    unknown = await panel.post("/operator/signin", {"email": "nobody@example.com", "password": operator.password,
                                                     "code": code_at(operator.totp_secret)})
    assert wrong.status_code == unknown.status_code == 401
    assert SIGNIN_FAILED in wrong_body and SIGNIN_FAILED in panel.last_body


async def test_a_code_is_accepted_once(site, operator):
    first = Browser(site.test_client(), "localhost")
    used = code_at(operator.totp_secret)
    assert (await operator_sign_in(first, operator, code=used)).status_code == 303
    second = Browser(site.test_client(), "localhost")
    replay = await operator_sign_in(second, operator, code=used)
    assert replay.status_code == 401 and SIGNIN_FAILED in second.last_body
    assert OPERATOR_COOKIE not in second.cookies


async def test_repeated_failures_delay_even_the_right_credentials(panel, operator):
    for _ in range(4):
        assert (await operator_sign_in(panel, operator, password="not the password at all")).status_code == 401
    response = await operator_sign_in(panel, operator)
    assert response.status_code == 429 and "Too many attempts" in panel.last_body
    assert OPERATOR_COOKIE not in panel.cookies


async def test_signout_ends_the_session(signed_in, admin, operator):
    token = signed_in.cookies[OPERATOR_COOKIE]
    response = await signed_in.post("/operator/signout")
    assert response.status_code == 303 and response.headers["Location"] == "/operator/signin"
    assert OPERATOR_COOKIE not in signed_in.cookies
    signed_in.cookies[OPERATOR_COOKIE] = token  # kept by someone: it opens nothing now
    assert (await signed_in.get("/operator")).headers["Location"] == "/operator/signin"
    assert await admin.fetchval(
        "SELECT count(*) FROM operator_session WHERE operator_id = $1 AND revoked_at IS NULL", operator.operator.id) == 0


async def test_idle_and_absolute_timeouts(site, admin, operator):
    idle = Browser(site.test_client(), "localhost")
    await operator_sign_in(idle, operator)
    old = Browser(site.test_client(), "localhost")
    await operator_sign_in(old, operator, steps_ahead=1)
    assert (await idle.get("/operator")).status_code == (await old.get("/operator")).status_code == 200

    sessions = await admin.fetch("SELECT id FROM operator_session WHERE operator_id = $1 ORDER BY created_at",
                                 operator.operator.id)
    await admin.execute("UPDATE operator_session SET last_seen_at = now() - interval '31 minutes' WHERE id = $1",
                        sessions[0]["id"])
    await admin.execute("UPDATE operator_session SET created_at = now() - interval '9 hours',"
                        " expires_at = now() - interval '1 hour' WHERE id = $1", sessions[1]["id"])
    for browser in (idle, old):
        response = await browser.get("/operator")
        assert response.status_code == 303 and response.headers["Location"] == "/operator/signin"
        assert OPERATOR_COOKIE not in browser.cookies


async def test_panel_is_not_found_on_tenant_hosts(signed_in, site, tenant):
    on_tenant_host = Browser(site.test_client(), f"{tenant.slug}.localhost", cookies=dict(signed_in.cookies))
    for path in ("/operator", "/operator/signin"):
        assert (await on_tenant_host.get(path)).status_code == 404
    elsewhere = Browser(site.test_client(), "no-such-workspace.localhost")
    assert (await elsewhere.get("/operator/signin")).status_code == 404
    assert (await signed_in.get("/operator")).status_code == 200


async def test_tenant_and_operator_sessions_do_not_open_each_other(signed_in, browser, admin, tenant, site):
    await sign_in(browser, await make_user(admin, tenant))
    assert (await browser.get("/account")).status_code == 200
    user_token = browser.session_token
    operator_token = signed_in.cookies[OPERATOR_COOKIE]

    # A tenant user's session token, in either cookie, does not open the panel.
    for name in ("exceptao_session", OPERATOR_COOKIE):
        intruder = Browser(site.test_client(), "localhost", cookies={name: user_token})
        response = await intruder.get("/operator")
        assert response.status_code == 303 and response.headers["Location"] == "/operator/signin"

    # An operator's token, in either cookie, signs nobody in to a tenant.
    for name in ("exceptao_session", OPERATOR_COOKIE):
        intruder = Browser(site.test_client(), f"{tenant.slug}.localhost", cookies={name: operator_token})
        response = await intruder.get("/account")
        assert response.status_code == 303 and response.headers["Location"].startswith("/signin")
