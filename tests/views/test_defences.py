"""Throttling: the growing delay and lock after failures, and rate limits per address and account."""

from __future__ import annotations

import uuid

from app.accounts import throttle
from tests.web import PASSWORD, Browser, make_user
from tests.views.test_signin import sign_in


async def test_growing_delay_after_failures_then_a_lock(browser, admin, tenant, settings):
    email = await make_user(admin, tenant)
    for _ in range(throttle.FREE_FAILURES):
        assert (await sign_in(browser, email, "wrong password!!")).status_code == 401
    assert (await sign_in(browser, email, "wrong password!!")).status_code == 401  # the first that costs a wait
    # Even the right password must now wait, and the page says for how long.
    waiting = await sign_in(browser, email)
    assert waiting.status_code == 429 and "Wait 2 seconds" in browser.last_body
    assert browser.session_token is None

    # Past the LOCK_AFTER-th failure in a row, the account name is locked for minutes.
    bucket = throttle.bucket(settings.key(), "signin-failures", tenant.id, email.lower())
    await admin.execute("UPDATE signin_guard SET failures = $2, not_before = now() WHERE bucket = $1",
                        bucket, throttle.LOCK_AFTER - 1)
    assert (await sign_in(browser, email, "wrong password!!")).status_code == 401
    locked = await sign_in(browser, email)
    assert locked.status_code == 429 and "Wait 15 minutes" in browser.last_body
    actions = [r["action"] for r in await admin.fetch(
        "SELECT action FROM audit_log WHERE tenant_id = $1 ORDER BY seq", tenant.id)]
    assert "identity:account:lock" in actions

    # Once the lock has passed, the right password works and the count starts again.
    await admin.execute("UPDATE signin_guard SET not_before = now() WHERE bucket = $1", bucket)
    assert (await sign_in(browser, email)).status_code == 303
    assert await admin.fetchval("SELECT count(*) FROM signin_guard WHERE bucket = $1", bucket) == 0


async def test_unknown_account_names_are_delayed_alike(browser, tenant):
    email = f"nobody-{uuid.uuid4().hex[:6]}@example.com"
    for _ in range(throttle.FREE_FAILURES + 1):
        assert (await sign_in(browser, email, "wrong password!!")).status_code == 401
    assert (await sign_in(browser, email, "wrong password!!")).status_code == 429


async def test_rate_limit_per_client_address(site, tenant):
    browser = Browser(site.test_client(), f"{tenant.slug}.localhost", address="198.51.100.9")
    await browser.get("/signin")
    statuses = []
    for i in range(throttle.SIGNIN_PER_ADDRESS.hits + 1):
        # Each try names another account, so only the address limit can stop them.
        response = await browser.post("/signin", {"email": f"n{i}@example.com", "password": "whatever-it-is"})
        statuses.append(response.status_code)
    assert statuses[:-1] == [401] * throttle.SIGNIN_PER_ADDRESS.hits and statuses[-1] == 429
    # Another address is not held back by it.
    other = Browser(site.test_client(), f"{tenant.slug}.localhost", address="198.51.100.10")
    await other.get("/signin")
    assert (await other.post("/signin", {"email": "n0@example.com", "password": "whatever-it-is"})).status_code == 401


async def test_rate_limits_store_no_address_in_clear(browser, admin, tenant):
    await sign_in(browser, "someone@example.com", "whatever-it-is")
    rows = await admin.fetch("SELECT bucket FROM rate_limit")
    assert rows and all(b"203.0.113.7" not in r["bucket"] and len(r["bucket"]) == 32 for r in rows)


async def test_signin_answers_in_similar_time_for_unknown_and_wrong(browser, admin, tenant):
    import time

    email = await make_user(admin, tenant)
    timings = {"wrong": [], "unknown": []}
    for _ in range(3):
        for kind, name in (("wrong", email), ("unknown", f"x{uuid.uuid4().hex[:6]}@example.com")):
            started = time.perf_counter()
            await sign_in(browser, name, "wrong password!!")
            timings[kind].append(time.perf_counter() - started)
        await admin.execute("DELETE FROM signin_guard")
    # Both spend one Argon2 verification: within a factor of two of each other.
    wrong, unknown = min(timings["wrong"]), min(timings["unknown"])
    assert 0.5 < wrong / unknown < 2, timings
