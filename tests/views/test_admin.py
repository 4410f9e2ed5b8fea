"""The admin area: users, groups, roles, assignments, org units and "why can they", as an administrator sees it."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from uuid import UUID

from app.access.admin import Admin, Refused, people
from app.db import set_tenant, tenant_transaction
from tests.views.test_reset import NEW_PASSWORD, mail_site, smtp, wait_for_mail  # noqa: F401  (fixtures)
from tests.views.test_sessions import enrolled
from tests.views.test_signin import sign_in
from tests.views.test_tokens import api, give_role, make_token
from tests.web import Browser, make_user

ADMIN_PAGES = ("/admin", "/admin/users", "/admin/groups", "/admin/roles", "/admin/assignments", "/admin/units",
               "/admin/why", "/admin/jobs")


async def administrator(site, admin, tenant) -> tuple[Browser, UUID]:
    """A signed-in browser of a user with TOTP (a fresh second factor) and the Administrator role."""
    browser, email, _ = await enrolled(site, admin, tenant)
    await give_role(admin, tenant, email, "admin")
    return browser, await user_id(admin, email)


async def member(site, admin, tenant, name: str = "Uma User") -> tuple[Browser, str, UUID]:
    """Another user, signed in (a first sign-in needs no second factor)."""
    email = await make_user(admin, tenant, name=name)
    browser = Browser(site.test_client(), f"{tenant.slug}.localhost")
    await sign_in(browser, email)
    return browser, email, await user_id(admin, email)


async def user_id(admin, email: str) -> UUID:
    return await admin.fetchval("SELECT id FROM app_user WHERE email = $1", email)


async def role_id(admin, tenant, seeded_as: str) -> UUID:
    return await admin.fetchval("SELECT id FROM role WHERE tenant_id = $1 AND seeded_as = $2", tenant.id, seeded_as)


def created(response) -> str:
    """The id at the end of a 303's Location."""
    assert response.status_code == 303, response.status_code
    return response.headers["Location"].rsplit("/", 1)[1]


async def events(admin, tenant, action: str) -> list[dict]:
    rows = await admin.fetch("SELECT data::text AS data FROM audit_log WHERE tenant_id = $1 AND action = $2"
                             " ORDER BY seq", tenant.id, action)
    return [json.loads(r["data"]) for r in rows]


async def test_an_invited_user_gets_a_mail_whose_link_lets_them_choose_a_password(mail_site, smtp, admin, tenant):
    inbox, _ = smtp
    browser, _ = await administrator(mail_site, admin, tenant)
    await browser.get("/admin/users")
    response = await browser.post("/admin/users", {"email": "nia@example.com", "name": "Nia New"})
    assert response.status_code == 303
    await browser.get(response.headers["Location"])
    assert "The invitation is on its way" in browser.last_body and "nia@example.com" in browser.last_body

    message = await wait_for_mail(inbox)
    body = message.get_payload(decode=True).decode()
    assert message["To"] == "nia@example.com" and "invited" in message["Subject"].lower()
    assert "invited you" in body and "72 hours" in body
    path = "/reset/" + re.search(r"http://\S+/reset/(\S+)", body).group(1)
    assert await admin.fetchval("SELECT expires_at - created_at FROM password_reset WHERE tenant_id = $1",
                                tenant.id) == timedelta(hours=72)

    invitee = Browser(mail_site.test_client(), f"{tenant.slug}.localhost")
    assert (await invitee.get(path)).status_code == 200
    done = await invitee.post(path, {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert done.status_code == 303
    assert (await sign_in(invitee, "nia@example.com", NEW_PASSWORD)).status_code == 303
    assert (await invitee.get("/")).status_code == 200 and "Welcome, Nia New" in invitee.last_body

    # The same address again, in other case: refused, and the form keeps what was typed.
    again = await browser.post("/admin/users", {"email": "NIA@example.com", "name": "Nia Twice"})
    assert again.status_code == 409 and "already a user" in browser.last_body
    assert 'value="NIA@example.com"' in browser.last_body and 'value="Nia Twice"' in browser.last_body
    assert await admin.fetchval("SELECT count(*) FROM app_user WHERE tenant_id = $1 AND lower(email) = $2",
                                tenant.id, "nia@example.com") == 1

    mangled = await browser.post("/admin/users", {"email": "nia@example.com, eve@example.com", "name": "Eve"})
    assert mangled.status_code == 422 and "is not an email address" in browser.last_body
    (invited,) = await events(admin, tenant, "access:user:invite")
    assert invited == {"before": None, "after": {"invited": True}}
    stored = await admin.fetchval("SELECT p.email FROM audit_log l JOIN audit_pii p USING (tenant_id, seq)"
                                  " WHERE l.tenant_id = $1 AND l.action = 'access:user:invite'", tenant.id)
    assert stored == "nia@example.com"


async def test_a_non_admin_is_refused_every_admin_page_and_change(site, admin, tenant):
    browser, _, own_id = await member(site, admin, tenant)
    for path in ADMIN_PAGES:
        assert (await browser.get(path)).status_code == 403, path
        assert "tenant.admin" in browser.last_body
    await browser.get("/account")
    for path, form in (("/admin/users", {"email": "x@example.com", "name": "X"}),
                       ("/admin/groups", {"name": "Sneaky"}),
                       ("/admin/roles", {"name": "Sneaky", "capability": "tenant.admin"}),
                       ("/admin/assignments", {"role": str(await role_id(admin, tenant, "admin")),
                                               "holder": f"user:{own_id}"}),
                       ("/admin/units", {"name": "Sneaky"})):
        assert (await browser.post(path, form)).status_code == 403, path
    assert await admin.fetchval("SELECT count(*) FROM role_assignment WHERE tenant_id = $1", tenant.id) == 0
    assert await admin.fetchval("SELECT count(*) FROM user_group WHERE tenant_id = $1", tenant.id) == 0

    # Administrator only within an org unit is not enough: it could make itself admin of everything.
    async with admin.transaction():
        await set_tenant(admin, tenant.id)
        unit = await admin.fetchval("INSERT INTO org_unit (tenant_id, name) VALUES ($1, 'School A') RETURNING id",
                                    tenant.id)
        await admin.execute("INSERT INTO role_assignment (tenant_id, role_id, user_id, within_unit_id)"
                            " VALUES ($1, $2, $3, $4)", tenant.id, await role_id(admin, tenant, "admin"), own_id, unit)
    response = await browser.get("/admin/users")
    assert response.status_code == 403 and "in the whole organisation" in browser.last_body


async def test_a_group_cycle_is_refused_and_nothing_changes(site, admin, tenant):
    browser, _ = await administrator(site, admin, tenant)
    await browser.get("/admin/groups")
    staff = created(await browser.post("/admin/groups", {"name": "Staff", "description": "everyone"}))
    teachers = created(await browser.post("/admin/groups", {"name": "Teachers", "parent": staff}))
    maths = created(await browser.post("/admin/groups", {"name": "Maths", "parent": teachers}))
    await browser.get("/admin/groups")
    assert re.search(r"Staff</a>.*<ul>.*Teachers</a>.*<ul>.*Maths</a>", browser.last_body, re.S)

    response = await browser.post(f"/admin/groups/{staff}",
                                  {"name": "Staff renamed", "description": "everyone", "parent": maths})
    assert response.status_code == 422
    assert "cannot go under" in browser.last_body and "Staff / Teachers / Maths" in browser.last_body
    assert 'value="Staff renamed"' in browser.last_body
    row = await admin.fetchrow("SELECT name, parent_id FROM user_group WHERE id = $1", UUID(staff))
    assert row["name"] == "Staff" and row["parent_id"] is None
    assert len(await events(admin, tenant, "access:group:update")) == 0

    refused = await browser.post(f"/admin/groups/{staff}/delete")
    assert refused.status_code == 409 and "has groups under it (Teachers)" in browser.last_body
    moved = await browser.post(f"/admin/groups/{maths}", {"name": "Maths", "description": "", "parent": ""})
    assert moved.status_code == 303
    assert (await browser.post(f"/admin/groups/{teachers}/delete")).status_code == 303
    assert await admin.fetchval("SELECT count(*) FROM user_group WHERE tenant_id = $1", tenant.id) == 2


async def test_a_role_edit_changes_what_its_holders_can_do_at_once(site, admin, tenant):
    browser, _ = await administrator(site, admin, tenant)
    other, _, other_id = await member(site, admin, tenant)
    await browser.get("/admin/roles")
    assert "Manage users, groups, roles and org units of the workspace" in browser.last_body  # meanings shown
    helper = created(await browser.post("/admin/roles", {"name": "Helpdesk", "capability": "exception.read"}))
    await browser.get("/admin/assignments")
    assert (await browser.post("/admin/assignments",
                               {"role": helper, "holder": f"user:{other_id}", "within": ""})).status_code == 303
    assert (await other.get("/admin/users")).status_code == 403

    edit = [("csrf_token", browser.csrf), ("name", "Helpdesk"), ("description", "runs the desk"),
            ("capability", "exception.read"), ("capability", "tenant.admin")]
    response = await browser.client.post(f"/admin/roles/{helper}", form=edit, headers=browser._headers(),
                                         scope_base=browser._scope())
    assert response.status_code == 303
    assert (await other.get("/admin/users")).status_code == 200

    (update,) = await events(admin, tenant, "access:role:update")
    assert update == {"before": {"name": "Helpdesk", "description": "", "capabilities": ["exception.read"]},
                      "after": {"name": "Helpdesk", "description": "runs the desk",
                                "capabilities": ["exception.read", "tenant.admin"]}}
    refused = await browser.post(f"/admin/roles/{helper}/delete")
    assert refused.status_code == 409 and "still assigned 1 time" in browser.last_body


async def test_disabling_a_user_ends_their_session_and_their_api_token(site, admin, tenant):
    browser, own_id = await administrator(site, admin, tenant)
    target, email, _ = await enrolled(site, admin, tenant)
    target_id = await user_id(admin, email)
    await give_role(admin, tenant, email, "requester")
    _, token = await make_token(target, "script", ["exception.read"])
    assert (await api(target, token, "/api/me")).status_code == 200

    await browser.get("/admin/users")
    assert (await browser.post(f"/admin/users/{target_id}/disable")).status_code == 303
    assert (await target.get("/account")).headers["Location"].startswith("/signin")
    assert (await api(target, token, "/api/me")).status_code == 401
    await browser.get("/admin/users")
    assert "disabled" in browser.last_body

    # Enabled again, the old session and token stay dead: they were revoked, not hidden.
    assert (await browser.post(f"/admin/users/{target_id}/enable")).status_code == 303
    assert (await target.get("/account")).headers["Location"].startswith("/signin")
    assert (await api(target, token, "/api/me")).status_code == 401
    (disabled,) = await events(admin, tenant, "access:user:disable")
    assert disabled == {"before": {"disabled": False, "live_sessions": 1, "live_api_tokens": 1},
                        "after": {"disabled": True, "live_sessions": 0, "live_api_tokens": 0}}
    assert await events(admin, tenant, "access:user:enable") == [{"before": {"disabled": True},
                                                                  "after": {"disabled": False}}]

    refused = await browser.post(f"/admin/users/{own_id}/disable")
    assert refused.status_code == 409 and "cannot disable your own account" in browser.last_body


async def test_the_last_administrator_cannot_be_taken_away(site, admin, tenant):
    browser, own_id = await administrator(site, admin, tenant)
    admin_role = await role_id(admin, tenant, "admin")
    direct = await admin.fetchval("SELECT id FROM role_assignment WHERE user_id = $1", own_id)
    await browser.get("/admin/assignments")
    refused = await browser.post(f"/admin/assignments/{direct}/delete")
    assert refused.status_code == 409 and "nobody could administer this workspace" in browser.last_body
    assert await admin.fetchval("SELECT count(*) FROM role_assignment WHERE id = $1", direct) == 1

    keep_all = await admin.fetch("SELECT capability FROM role_capability WHERE role_id = $1", admin_role)
    response = await browser.post(f"/admin/roles/{admin_role}", {"name": "Administrator", "capability": "audit.read"})
    assert response.status_code == 409 and 'value="Administrator"' in browser.last_body
    assert await admin.fetch("SELECT capability FROM role_capability WHERE role_id = $1", admin_role) == keep_all

    # Held through a group instead, the direct assignment may go; then the group is what must stay.
    admins = created(await browser.post("/admin/groups", {"name": "Admins"}))
    assert (await browser.post(f"/admin/groups/{admins}/members", {"user": str(own_id)})).status_code == 303
    await browser.post("/admin/assignments", {"role": str(admin_role), "holder": f"group:{admins}"})
    assert (await browser.post(f"/admin/assignments/{direct}/delete")).status_code == 303
    assert (await browser.post(f"/admin/groups/{admins}/members/{own_id}/remove")).status_code == 409
    assert (await browser.post(f"/admin/groups/{admins}/delete")).status_code == 409
    assert "nobody could administer" in browser.last_body
    assert await admin.fetchval("SELECT count(*) FROM group_member WHERE group_id = $1", UUID(admins)) == 1

    # With a second administrator, the first may leave.
    _, _, second = await member(site, admin, tenant, "Second Admin")
    await browser.post("/admin/assignments", {"role": str(admin_role), "holder": f"user:{second}"})
    assert (await browser.post(f"/admin/groups/{admins}/members/{own_id}/remove")).status_code == 303
    assert (await browser.get("/admin")).status_code == 403
    assert len(await events(admin, tenant, "access:assignment:delete")) == 1
    assert len(await events(admin, tenant, "access:group_member:remove")) == 1


async def test_two_administrators_disabling_each_other_at_once_leave_one(pool, admin, tenant):
    first, second = (await make_user(admin, tenant), await make_user(admin, tenant))
    for email in (first, second):
        await give_role(admin, tenant, email, "admin")
    first, second = await user_id(admin, first), await user_id(admin, second)
    first_done = asyncio.Event()

    async def disable(by: UUID, target: UUID, *, hold: bool = False) -> None:
        async with tenant_transaction(pool, tenant.id) as conn:
            await people.disable(conn, Admin(tenant.id, by), target)
            if hold:  # not committed yet while the other one starts
                first_done.set()
                await asyncio.sleep(0.3)

    async def then_the_other() -> None:
        await first_done.wait()
        await disable(second, first)

    outcome = await asyncio.gather(disable(first, second, hold=True), then_the_other(), return_exceptions=True)
    assert outcome[0] is None and isinstance(outcome[1], Refused)
    assert await admin.fetchval("SELECT count(*) FROM app_user WHERE tenant_id = $1 AND disabled_at IS NULL",
                                tenant.id) == 1


async def test_org_units_make_a_tree_and_refuse_loops_and_deletes_still_in_use(site, admin, tenant):
    browser, own_id = await administrator(site, admin, tenant)
    await browser.get("/admin/units")
    city = await _add_unit(browser, admin, tenant, "City")
    school = await _add_unit(browser, admin, tenant, "School A", city)
    await browser.get("/admin/units")
    assert re.search(r"City</a>\s*<ul>.*School A</a>", browser.last_body, re.S)

    response = await browser.post(f"/admin/units/{city}", {"name": "Town", "parent": school})
    assert response.status_code == 422 and "cannot go under" in browser.last_body
    assert 'value="Town"' in browser.last_body
    assert await admin.fetchval("SELECT name FROM org_unit WHERE id = $1", UUID(city)) == "City"

    duplicate = await browser.post("/admin/units", {"name": "school a", "parent": city})
    assert duplicate.status_code == 409 and "already a unit" in browser.last_body
    assert (await browser.post(f"/admin/units/{city}/delete")).status_code == 409
    assert "has units under it (School A)" in browser.last_body
    await browser.post("/admin/assignments", {"role": str(await role_id(admin, tenant, "approver")),
                                              "holder": f"user:{own_id}", "within": school})
    assert (await browser.post(f"/admin/units/{school}/delete")).status_code == 409
    assert "limits 1 role assignment" in browser.last_body

    renamed = await browser.post(f"/admin/units/{school}", {"name": "School Alpha", "parent": ""})
    assert renamed.status_code == 303
    assert (await browser.post(f"/admin/units/{city}/delete")).status_code == 303
    assert await admin.fetchval("SELECT name FROM org_unit WHERE tenant_id = $1", tenant.id) == "School Alpha"
    (update,) = await events(admin, tenant, "access:org_unit:update")
    assert update == {"before": {"name": "School A", "parent_id": city, "parent": "City"},
                      "after": {"name": "School Alpha", "parent_id": None, "parent": None}}


async def _add_unit(browser, admin, tenant, name: str, parent: str = "") -> str:
    response = await browser.post("/admin/units", {"name": name, "parent": parent})
    assert response.status_code == 303
    return str(await admin.fetchval("SELECT id FROM org_unit WHERE tenant_id = $1 AND name = $2", tenant.id, name))


async def test_every_kind_of_change_is_audited_with_before_and_after(site, admin, tenant):
    browser, _ = await administrator(site, admin, tenant)
    _, email, someone = await member(site, admin, tenant)
    await browser.get("/admin")
    unit = await _add_unit(browser, admin, tenant, "Depot")
    await browser.post(f"/admin/units/{unit}", {"name": "Depot North"})
    group = created(await browser.post("/admin/groups", {"name": "Drivers"}))
    await browser.post(f"/admin/groups/{group}", {"name": "Drivers", "description": "on the road"})
    await browser.post(f"/admin/groups/{group}/members", {"user": str(someone)})
    role = created(await browser.post("/admin/roles", {"name": "Dispatcher", "capability": "asset.manage"}))
    await browser.post(f"/admin/roles/{role}", {"name": "Dispatch", "capability": "asset.manage"})
    await browser.post("/admin/assignments", {"role": role, "holder": f"group:{group}", "within": unit})
    assignment = await admin.fetchval("SELECT id FROM role_assignment WHERE group_id = $1", UUID(group))
    await browser.post(f"/admin/assignments/{assignment}/delete")
    await browser.post(f"/admin/groups/{group}/members/{someone}/remove")
    await browser.post(f"/admin/users/{someone}/disable")
    await browser.post(f"/admin/users/{someone}/enable")
    assert (await browser.post(f"/admin/roles/{role}/delete")).status_code == 303
    assert (await browser.post(f"/admin/groups/{group}/delete")).status_code == 303
    assert (await browser.post(f"/admin/units/{unit}/delete")).status_code == 303

    rows = await admin.fetch("SELECT action, data::text AS data FROM audit_log WHERE tenant_id = $1"
                             " AND action LIKE 'access:%' AND action NOT LIKE 'access:token:%' ORDER BY seq",
                             tenant.id)
    seen = [(r["action"], json.loads(r["data"])) for r in rows]
    assert [a for a, _ in seen] == [
        "access:org_unit:create", "access:org_unit:update", "access:group:create", "access:group:update",
        "access:group_member:add", "access:role:create", "access:role:update", "access:assignment:create",
        "access:assignment:delete", "access:group_member:remove", "access:user:disable", "access:user:enable",
        "access:role:delete", "access:group:delete", "access:org_unit:delete"]
    for action, data in seen:
        assert set(data) == {"before", "after"}, action
        assert (data["before"] is None) == action.endswith((":create", ":add"))
        assert (data["after"] is None) == action.endswith((":delete", ":remove"))
        assert email not in json.dumps(data)
    by_action = dict(seen)
    assert by_action["access:group:update"]["before"]["description"] == ""
    assert by_action["access:group:update"]["after"]["description"] == "on the road"
    assert by_action["access:assignment:create"]["after"] == {"role": "Dispatch", "group": "Drivers",
                                                              "within_unit": "Depot North"}
    assert by_action["access:role:delete"]["before"] == {"name": "Dispatch", "description": "",
                                                         "capabilities": ["asset.manage"]}


async def test_why_shows_every_path_through_nested_groups(site, admin, tenant):
    browser, _ = await administrator(site, admin, tenant)
    _, _, uma = await member(site, admin, tenant, "Uma")
    await browser.get("/admin")
    school = await _add_unit(browser, admin, tenant, "School A")
    class_a1 = await _add_unit(browser, admin, tenant, "Class A1", school)
    staff = created(await browser.post("/admin/groups", {"name": "Staff"}))
    teachers = created(await browser.post("/admin/groups", {"name": "Teachers", "parent": staff}))
    await browser.post(f"/admin/groups/{teachers}/members", {"user": str(uma)})
    approver = str(await role_id(admin, tenant, "approver"))
    await browser.post("/admin/assignments", {"role": approver, "holder": f"group:{staff}", "within": school})
    await browser.post("/admin/assignments", {"role": approver, "holder": f"user:{uma}", "within": class_a1})

    path = "Uma → group Teachers → group Staff → role Approver → exception.approve (within School A)"
    response = await browser.get(f"/admin/why?user={uma}&capability=exception.approve&unit={class_a1}")
    assert response.status_code == 200
    assert "Yes: exception.approve in School A / Class A1" in browser.last_body
    assert path in browser.last_body
    assert "Uma → role Approver → exception.approve (within School A / Class A1)" in browser.last_body

    await browser.get(f"/admin/why?user={uma}&capability=exception.approve&unit={school}")
    answer = browser.last_body.split('id="why-answer"')[1]
    assert "Yes" in answer and path in answer.split("Only within other org units")[0]

    await browser.get(f"/admin/why?user={uma}&capability=exception.approve")
    answer = browser.last_body.split('id="why-answer"')[1]
    assert "No: exception.approve in the whole organisation" in answer
    assert path in answer.split("Only within other org units")[1]

    await browser.get(f"/admin/why?user={uma}&capability=tenant.admin")
    assert "No: tenant.admin" in browser.last_body and "No role of theirs" in browser.last_body


async def test_a_nul_in_a_name_is_refused_not_a_500(site, admin, tenant):
    browser, _ = await administrator(site, admin, tenant)
    for page in ("/admin/groups", "/admin/units"):  # any form of the admin screens goes through the same check
        await browser.get(page)
        refused = await browser.post(page, {"name": "Sta\x00ff", "description": "everyone"})  # was a 500
        assert refused.status_code == 422 and "cannot contain a NUL" in browser.last_body, page
