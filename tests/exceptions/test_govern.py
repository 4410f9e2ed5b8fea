"""Governing approved exceptions over time, on a clock the test moves: activation, expiry, reminders, re-attestation.

Mail goes through the outbox to a real SMTP server (aiosmtpd) on loopback.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone

import pytest

from app import create_app, notifications
from app.audit.verify import verify_tenant
from app.db import tenant_transaction
from app.exceptions.engine import TransitionRefused
from app.exceptions.govern import attest
from app.jobs import JOBS, exception_govern, outbox, run_job
from tests.exceptions.test_engine import as_user, draft, move, state

DAY = timedelta(days=1)
TODAY = date.today()
JOB = {job.name: job for job in JOBS}


def at(day: date) -> datetime:
    """The job clock on that day (UTC, mid-morning)."""
    return datetime.combine(day, time(9), tzinfo=timezone.utc)


async def approved(pool, org, starts_on: date, ends_on: date):
    e = await draft(pool, org, starts_on=starts_on.isoformat(), ends_on=ends_on.isoformat())
    await move(pool, org, e, "UNDER_REVIEW", "Rhea")
    await move(pool, org, e, "APPROVED", "Abel", "Accepted until the vendor moves to SFTP")
    return e


async def govern(pool, org, day: date, settings, *, mail: bool = True):
    """One round of the scheduled work for the test's tenant, as the jobs do it, on `day`."""
    await exception_govern.lifecycle(pool, org.tenant.id, at(day), settings)
    await exception_govern.reminders(pool, org.tenant.id, at(day), settings)
    if mail:
        await outbox.deliver(pool, org.tenant.id, at(day), settings)


async def events(admin, exception_id, kind="transition"):
    return [(r["actor"], r["to_state"], r["comment"]) for r in await admin.fetch(
        "SELECT actor, to_state, comment FROM exception_event WHERE exception_id = $1 AND kind = $2 ORDER BY at",
        exception_id, kind)]


def address(org, name):
    return f"{name.lower()}@{org.tenant.slug}.example"


def mail_to(inbox, org):
    """The messages of this test's tenant (the outbox job also delivers mail other tests left queued)."""
    return [m for m in inbox.messages if m["To"].endswith(f"@{org.tenant.slug}.example")]


@pytest.fixture
def mail_settings(settings, smtp):
    return replace(settings, smtp_host="127.0.0.1", smtp_port=smtp[1])


async def test_an_approved_exception_becomes_active_on_its_start_date_and_not_before(admin, pool, people, settings):
    start = TODAY + 10 * DAY
    e = await approved(pool, people, start, start + 200 * DAY)
    await govern(pool, people, start - DAY, settings, mail=False)
    assert await state(admin, e) == "APPROVED"
    await govern(pool, people, start, settings, mail=False)
    assert await state(admin, e) == "ACTIVE"
    assert (await events(admin, e))[-1] == ("system:activation", "ACTIVE", None)


async def test_expiring_soon_in_the_last_30_days_and_expired_on_the_end_date(admin, pool, people, settings):
    end = TODAY + 100 * DAY
    e = await approved(pool, people, TODAY, end)
    for day, expected in ((TODAY, "ACTIVE"), (end - 31 * DAY, "ACTIVE"), (end - 30 * DAY, "EXPIRING_SOON"),
                          (end - DAY, "EXPIRING_SOON"), (end, "EXPIRED"), (end + 5 * DAY, "EXPIRED")):
        await govern(pool, people, day, settings, mail=False)
        assert await state(admin, e) == expected, day

    assert (await events(admin, e))[-3:] == [("system:activation", "ACTIVE", None),
                                             ("system:expiry", "EXPIRING_SOON", None),
                                             ("system:expiry", "EXPIRED", None)]
    chain = await admin.fetch("SELECT actor, data->'after'->>'state' AS after FROM audit_log"
                              " WHERE tenant_id = $1 AND target_id = $2 AND action = 'exception:exception:transition'"
                              " ORDER BY seq", people.tenant.id, str(e))
    assert [(r["actor"], r["after"]) for r in chain][-3:] == [
        ("system:activation", "ACTIVE"), ("system:expiry", "EXPIRING_SOON"), ("system:expiry", "EXPIRED")]
    assert (await verify_tenant(pool, people.tenant.id, settings)).ok


async def test_a_late_approval_catches_up_with_the_calendar_in_one_run(admin, pool, people, settings):
    over = await approved(pool, people, TODAY - 200 * DAY, TODAY - 10 * DAY)   # its whole term has passed
    short = await approved(pool, people, TODAY, TODAY + 20 * DAY)             # starts inside its last 30 days
    await govern(pool, people, TODAY, settings, mail=False)

    assert [(a, s) for a, s, _ in await events(admin, over)][-2:] == [("system:activation", "ACTIVE"),
                                                                     ("system:expiry", "EXPIRED")]
    assert [(a, s) for a, s, _ in await events(admin, short)][-2:] == [("system:activation", "ACTIVE"),
                                                                      ("system:expiry", "EXPIRING_SOON")]


async def test_reminders_90_60_and_30_days_before_the_end_by_mail_and_in_app(admin, pool, people, mail_settings,
                                                                                smtp):
    inbox, _ = smtp
    end = TODAY + 200 * DAY
    e = await approved(pool, people, TODAY, end)
    await govern(pool, people, TODAY, mail_settings)
    for threshold in (90, 60, 30):
        before = len(mail_to(inbox, people))
        await govern(pool, people, end - (threshold + 1) * DAY, mail_settings)
        assert len(mail_to(inbox, people)) == before, f"a mail before the {threshold}-day threshold"
        await govern(pool, people, end - threshold * DAY, mail_settings)
        await govern(pool, people, end - (threshold - 1) * DAY, mail_settings)  # the day after: nothing again
        new = mail_to(inbox, people)[before:]
        assert sorted(m["To"] for m in new) == [address(people, "Abel"), address(people, "Olga")]
        for message in new:
            assert message["Subject"] == f"Exception ending in {threshold} days: Legacy FTP server"
            body = message.get_payload(decode=True).decode()
            assert f"ends on {end.isoformat()}" in body
            assert f"Open it: {mail_settings.site_url(people.tenant.slug, f'/exceptions/{e}')}" in body
            assert ("re-attest that the deviation" in body) == (message["To"] == address(people, "Olga"))

    reminders = await events(admin, e, "reminder")
    assert [actor for actor, _, _ in reminders] == ["system:reminders"] * 3
    assert "90 days before the end" in reminders[0][2] and "the owner and 1 approver(s)" in reminders[0][2]

    async with tenant_transaction(pool, people.tenant.id) as conn:
        olga, abel, rhea = (people.users[n] for n in ("Olga", "Abel", "Rhea"))
        assert await notifications.unread_count(conn, olga) == 3
        assert await notifications.unread_count(conn, rhea) == 0   # the requester is neither owner nor approver
        mine = await notifications.recent(conn, olga)
        assert [n.exception_id for n in mine] == [e] * 3
        assert "in 30 days" in mine[0].text and "re-attest" in mine[0].text    # newest first
        assert "You approved it" in (await notifications.recent(conn, abel, limit=1))[0].text
        assert await notifications.mark_read(conn, abel, [mine[0].id]) == 0  # not Abel's to mark
        assert await notifications.mark_read(conn, olga, [mine[0].id]) == 1
        assert len(await notifications.recent(conn, olga, unread_only=True)) == 2
        assert await notifications.mark_read(conn, olga) == 2
        assert await notifications.unread_count(conn, olga) == 0

    chain = await admin.fetch("SELECT actor, data FROM audit_log WHERE tenant_id = $1 AND action = $2 ORDER BY seq",
                              people.tenant.id, "exception:exception:remind")
    assert [r["actor"] for r in chain] == ["system:reminders"] * 3
    assert '"threshold_days": 30' in chain[-1]["data"] and f"user:{people.users['Olga']}" in chain[-1]["data"]
    # Addresses are for delivery only: none in the chain.
    assert not [r for r in await admin.fetch("SELECT data FROM audit_log WHERE tenant_id = $1", people.tenant.id)
                if "@" in r["data"]]
    assert (await verify_tenant(pool, people.tenant.id, mail_settings)).ok


async def test_an_exception_approved_with_20_days_left_gets_only_the_30_day_reminder(admin, pool, people,
                                                                                    mail_settings, smtp):
    inbox, _ = smtp
    e = await approved(pool, people, TODAY, TODAY + 20 * DAY)
    await govern(pool, people, TODAY, mail_settings)
    await govern(pool, people, TODAY + 10 * DAY, mail_settings)

    assert [m["Subject"] for m in mail_to(inbox, people)] == ["Exception ending in 20 days: Legacy FTP server"] * 2
    assert [r["threshold_days"] for r in await admin.fetch(
        "SELECT threshold_days FROM exception_reminder WHERE exception_id = $1", e)] == [30]


async def test_two_instances_and_a_restart_send_each_reminder_exactly_once(admin, pool, people, mail_settings,
                                                                           smtp):
    inbox, _ = smtp
    end = TODAY + 200 * DAY
    e = await approved(pool, people, TODAY, end)
    day = at(end - 60 * DAY)
    scheduled = [JOB[name] for name in ("exception-lifecycle", "exception-reminders", "mail-outbox")]

    instances = [create_app(mail_settings) for _ in range(2)]
    async with instances[0].test_app(), instances[1].test_app():
        pools = [app.extensions["pool"] for app in instances]
        await asyncio.gather(*(run_job(p, scheduled[0].name, scheduled[0].work, settings=mail_settings, now=day)
                               for p in pools))
        assert await state(admin, e) == "ACTIVE"
        # As if the advisory lock did not hold (a misconfigured pool, a lock
        # let go too early): the work itself, at once, must still be harmless.
        for job in scheduled[1:]:
            await asyncio.gather(*(job.work(p, day, mail_settings) for p in pools))
        for job in scheduled:  # and both instances' schedulers firing at once, three rounds
            for _ in range(3):
                await asyncio.gather(*(run_job(p, job.name, job.work, settings=mail_settings, now=day)
                                       for p in pools))
    restarted = create_app(mail_settings)
    async with restarted.test_app():
        for job in scheduled:
            await run_job(restarted.extensions["pool"], job.name, job.work, settings=mail_settings, now=day)

    assert Counter((m["To"], m["Subject"]) for m in mail_to(inbox, people)) == {
        (address(people, "Olga"), "Exception ending in 60 days: Legacy FTP server"): 1,
        (address(people, "Abel"), "Exception ending in 60 days: Legacy FTP server"): 1,
    }
    assert len(await events(admin, e, "reminder")) == 1
    async with tenant_transaction(pool, people.tenant.id) as conn:
        assert await notifications.unread_count(conn, people.users["Olga"]) == 1
    failed = await admin.fetch("SELECT job, error FROM job_run WHERE outcome = 'failed' AND job = ANY($1)",
                               [job.name for job in scheduled])
    assert failed == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_mail_waits_in_the_outbox_while_the_server_is_down_then_goes_once(admin, pool, people, mail_settings,
                                                                                 smtp):
    inbox, _ = smtp
    end = TODAY + 100 * DAY
    await approved(pool, people, TODAY, end)
    day = at(end - 90 * DAY)
    await govern(pool, people, day.date(), mail_settings, mail=False)

    down = replace(mail_settings, smtp_port=closed_port())
    run_id = await run_job(pool, "mail-outbox", JOB["mail-outbox"].work, settings=down, now=day)
    run = await admin.fetchrow("SELECT outcome, error FROM job_run WHERE id = $1", run_id)
    assert run["outcome"] == "failed" and "mail not delivered" in run["error"]   # on the health page, not silent
    queued = await admin.fetch("SELECT status, attempts, last_error FROM mail_outbox WHERE tenant_id = $1"
                               " ORDER BY attempts DESC", people.tenant.id)
    # The first attempt failed and waits for its retry; the run stopped there, the second was not tried.
    assert [(r["status"], r["attempts"]) for r in queued] == [("queued", 1), ("queued", 0)]
    assert queued[0]["last_error"].startswith("ConnectionRefusedError")

    await outbox.deliver(pool, people.tenant.id, day, mail_settings)
    assert len(mail_to(inbox, people)) == 1                                  # the one not tried yet; the retry waits
    for _ in range(2):
        await outbox.deliver(pool, people.tenant.id, day + timedelta(minutes=10), mail_settings)
    assert sorted(m["To"] for m in mail_to(inbox, people)) == [address(people, "Abel"), address(people, "Olga")]


async def test_mail_to_a_user_disabled_since_it_was_queued_is_not_sent(admin, pool, people, mail_settings,
                                                                       smtp):
    inbox, _ = smtp
    end = TODAY + 100 * DAY
    await approved(pool, people, TODAY, end)
    await govern(pool, people, end - 90 * DAY, mail_settings, mail=False)
    await admin.execute("UPDATE app_user SET disabled_at = now() WHERE id = $1", people.users["Abel"])
    await outbox.deliver(pool, people.tenant.id, at(end - 90 * DAY), mail_settings)

    assert [m["To"] for m in mail_to(inbox, people)] == [address(people, "Olga")]
    assert await admin.fetchval("SELECT status FROM mail_outbox WHERE user_id = $1", people.users["Abel"]) == "dropped"


async def test_the_owner_re_attests_an_active_exception_and_no_one_else_can(admin, pool, people, settings):
    end = TODAY + 100 * DAY
    e = await approved(pool, people, TODAY, end)
    later = await approved(pool, people, TODAY + 10 * DAY, end)

    async def attest_as(name, exception_id, comment="The vendor's SFTP rollout is on track; FTP is IP-restricted"):
        actor = await as_user(pool, people, name)
        async with tenant_transaction(pool, people.tenant.id) as conn:
            await attest(conn, exception_id, actor, comment)

    with pytest.raises(TransitionRefused, match="Only an active exception can be re-attested; this one is approved"):
        await attest_as("Olga", e)
    await govern(pool, people, TODAY, settings, mail=False)
    for who in ("Rhea", "Abel", "Aud"):
        with pytest.raises(TransitionRefused, match="Only the exception's owner") as refused:
            await attest_as(who, e)
        assert refused.value.status == 403
    with pytest.raises(TransitionRefused, match="comment is required") as refused:
        await attest_as("Olga", e, "  ")
    assert refused.value.status == 422
    assert await events(admin, e, "attestation") == []   # a refusal leaves nothing behind

    await attest_as("Olga", e)
    await govern(pool, people, end - 30 * DAY, settings, mail=False)
    await attest_as("Olga", e, "Still holds")             # expiring soon: still the owner's to confirm
    olga = f"user:{people.users['Olga']}"
    assert await events(admin, e, "attestation") == [
        (olga, "ACTIVE", "The vendor's SFTP rollout is on track; FTP is IP-restricted"),
        (olga, "EXPIRING_SOON", "Still holds")]
    chain = await admin.fetch("SELECT actor, data->>'comment' AS comment FROM audit_log"
                              " WHERE tenant_id = $1 AND target_id = $2 AND action = 'exception:exception:attest'"
                              " ORDER BY seq", people.tenant.id, str(e))
    assert [(r["actor"], r["comment"]) for r in chain][-1] == (olga, "Still holds")

    await govern(pool, people, end, settings, mail=False)
    with pytest.raises(TransitionRefused, match="this one is expired") as refused:
        await attest_as("Olga", e)
    assert refused.value.status == 409
    assert await state(admin, later) == "EXPIRED"
    assert (await verify_tenant(pool, people.tenant.id, settings)).ok
