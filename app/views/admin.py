"""The admin area: users, groups, roles, assignments, org units, and why a user can do something.

Every view needs tenant.admin, held in the whole organisation (a unit-limited
admin could otherwise make themselves admin of everything); every change also
needs a second factor from the last 15 minutes. A refused change shows the page
it came from again, with what was typed and why, and changes nothing.
"""

from __future__ import annotations

import logging
from functools import partial
from uuid import UUID

from quart import Blueprint, current_app, g, request
from werkzeug.datastructures import MultiDict

from app import mail
from app.access.admin import ADMIN, Admin, Refused, assignments, groups, parse_id, people, roles, units, why
from app.access.catalogue import CAPABILITIES
from app.accounts import resets
from app.db import tenant_transaction
from app.jobs import JOBS
from app.jobs.health import for_tenant_admins, job_health
from app.views import pool, settings
from app.web import render, see_other
from app.web.guards import requires, step_up
from app.web.tenancy import tenant_url

blueprint = Blueprint("admin", __name__, url_prefix="/admin")
log = logging.getLogger(__name__)

STEP_UP_SECONDS = 900
NOTICES = {"invited": "The invitation is on its way.", "deleted": "Deleted."}


# tenant.admin, working in the whole organisation: a unit-limited admin could
# otherwise make themselves admin of everything.
admin_only = requires(ADMIN, whole_tenant=True)


def changes(view):
    """Marks a POST of the admin area: admin_only, and a second factor from the last 15 minutes."""
    return admin_only(step_up(STEP_UP_SECONDS)(view))


async def _submit(change, page, then, *, keep_form: bool = True):
    """Make `change(conn, by, form)` in one tenant transaction, then go to `then` (a path, or one made from the result).

    When it is refused, nothing changed: `page` is shown again with the refusal
    and, for forms that edit something, what was typed.
    """
    form = await request.form
    try:
        if any("\x00" in value for value in form.values()):  # PostgreSQL text cannot hold NUL
            raise Refused("Text cannot contain a NUL character.")
        async with tenant_transaction(pool(), g.tenant.id) as conn:
            result = await change(conn, Admin(g.tenant.id, g.user.id), form)
    except Refused as refusal:
        return await page(form=form if keep_form else None, refusal=refusal)
    return see_other(then(result) if callable(then) else then)


def _read():
    return tenant_transaction(pool(), g.tenant.id, readonly=True)


async def _show(template: str, refusal: Refused | None, **context):
    return await render(template, problem=str(refusal) if refusal else None, status=refusal.status if refusal else 200,
                        notice=NOTICES.get(request.args.get("notice", "")), **context)


@blueprint.get("")
@admin_only
async def index():
    return await render("admin/index.html")


@blueprint.get("/jobs")
@admin_only
async def jobs():
    # Job-level status only: job_run is platform data, and its error text can name other tenants.
    return await render("admin/jobs.html", jobs=[for_tenant_admins(j) for j in await job_health(pool(), JOBS)])


# Users --------------------------------------------------------------------

async def _users(form=None, refusal=None):
    async with _read() as conn:
        everyone = await people.every(conn)
    return await _show("admin/users.html", refusal, people=everyone, form=form or MultiDict())


@blueprint.get("/users")
@admin_only
async def users_page():
    return await _users()


@blueprint.post("/users")
@changes
async def invite():
    form = await request.form

    def mail_the_link(made: tuple[UUID, str]) -> str:
        # Only once the new user is committed: no invitation to an account that was rolled back.
        current_app.add_background_task(_mail_invitation, settings(), form["email"].strip(), g.tenant.name,
                                        g.user.display_name, tenant_url(g.tenant.slug, f"/reset/{made[1]}"))
        return "/admin/users?notice=invited"
    return await _submit(lambda conn, by, form: people.invite(conn, by, form.get("email"), form.get("name")),
                         _users, mail_the_link)


async def _mail_invitation(settings, to: str, tenant_name: str, inviter: str, link: str) -> None:
    body = (f"{inviter} invited you to the {tenant_name} workspace on Exceptao.\n\n"
            f"Choose your password here to accept (the link works once, for {resets.INVITE_MINUTES // 60} hours):\n"
            f"{link}\n\nIf you did not expect this invitation, ignore this message.\n")
    try:
        await mail.send(settings, to, f"You are invited to {tenant_name} on Exceptao", body)
    except OSError:
        log.exception("invitation mail could not be sent")


@blueprint.post("/users/<uuid:user_id>/disable")
@changes
async def disable(user_id: UUID):
    return await _submit(lambda conn, by, _: people.disable(conn, by, user_id), _users, "/admin/users",
                         keep_form=False)


@blueprint.post("/users/<uuid:user_id>/enable")
@changes
async def enable(user_id: UUID):
    return await _submit(lambda conn, by, _: people.enable(conn, by, user_id), _users, "/admin/users",
                         keep_form=False)


# Groups -------------------------------------------------------------------

async def _groups(form=None, refusal=None):
    async with _read() as conn:
        tree = await groups.tree(conn)
    return await _show("admin/groups.html", refusal, tree=tree, form=form or MultiDict())


async def _group(group_id: UUID, form=None, refusal=None):
    async with _read() as conn:
        tree = await groups.tree(conn)
        if (group := tree.get(group_id)) is None:
            return await _groups(refusal=refusal or Refused("There is no such group.", 404))
        members = await groups.members(conn, group_id)
        everyone = await people.every(conn)
        given = await assignments.every(conn, group_id=group_id)
    form = form or MultiDict({"name": group.name, "description": group.description, "parent": group.parent_id or ""})
    inside = {m["id"] for m in members}
    outside = [p for p in everyone if p.id not in inside]
    return await _show("admin/group.html", refusal, group=group, tree=tree, members=members, outside=outside,
                       given=given, form=form)


@blueprint.get("/groups")
@admin_only
async def groups_page():
    return await _groups()


@blueprint.get("/groups/<uuid:group_id>")
@admin_only
async def group_page(group_id: UUID):
    return await _group(group_id)


def _save_group(group_id: UUID | None):
    return lambda conn, by, form: groups.save(conn, by, group_id, form.get("name"), form.get("description"),
                                              parse_id(form.get("parent"), "parent group"))


@blueprint.post("/groups")
@changes
async def create_group():
    return await _submit(_save_group(None), _groups, lambda group_id: f"/admin/groups/{group_id}")


@blueprint.post("/groups/<uuid:group_id>")
@changes
async def update_group(group_id: UUID):
    return await _submit(_save_group(group_id), partial(_group, group_id), f"/admin/groups/{group_id}")


@blueprint.post("/groups/<uuid:group_id>/delete")
@changes
async def delete_group(group_id: UUID):
    return await _submit(lambda conn, by, _: groups.delete(conn, by, group_id), partial(_group, group_id),
                         "/admin/groups?notice=deleted", keep_form=False)


@blueprint.post("/groups/<uuid:group_id>/members")
@changes
async def add_member(group_id: UUID):
    return await _submit(
        lambda conn, by, form: groups.add_member(conn, by, group_id, parse_id(form.get("user"), "user")),
        partial(_group, group_id), f"/admin/groups/{group_id}", keep_form=False)


@blueprint.post("/groups/<uuid:group_id>/members/<uuid:user_id>/remove")
@changes
async def remove_member(group_id: UUID, user_id: UUID):
    return await _submit(lambda conn, by, _: groups.remove_member(conn, by, group_id, user_id),
                         partial(_group, group_id), f"/admin/groups/{group_id}", keep_form=False)


# Roles --------------------------------------------------------------------

async def _roles(form=None, refusal=None):
    async with _read() as conn:
        every = await roles.every(conn)
    return await _show("admin/roles.html", refusal, roles=every, catalogue=CAPABILITIES, form=form or MultiDict())


async def _role(role_id: UUID, form=None, refusal=None):
    async with _read() as conn:
        try:
            role = await roles.find(conn, role_id)
        except Refused as missing:
            return await _roles(refusal=refusal or missing)
    form = form or MultiDict([("name", role.name), ("description", role.description)]
                             + [("capability", c) for c in role.capabilities])
    return await _show("admin/role.html", refusal, role=role, catalogue=CAPABILITIES, form=form)


@blueprint.get("/roles")
@admin_only
async def roles_page():
    return await _roles()


@blueprint.get("/roles/<uuid:role_id>")
@admin_only
async def role_page(role_id: UUID):
    return await _role(role_id)


def _save_role(role_id: UUID | None):
    return lambda conn, by, form: roles.save(conn, by, role_id, form.get("name"), form.get("description"),
                                             form.getlist("capability"))


@blueprint.post("/roles")
@changes
async def create_role():
    return await _submit(_save_role(None), _roles, lambda role_id: f"/admin/roles/{role_id}")


@blueprint.post("/roles/<uuid:role_id>")
@changes
async def update_role(role_id: UUID):
    return await _submit(_save_role(role_id), partial(_role, role_id), f"/admin/roles/{role_id}")


@blueprint.post("/roles/<uuid:role_id>/delete")
@changes
async def delete_role(role_id: UUID):
    return await _submit(lambda conn, by, _: roles.delete(conn, by, role_id), partial(_role, role_id),
                         "/admin/roles?notice=deleted", keep_form=False)


# Assignments --------------------------------------------------------------

async def _assignments(form=None, refusal=None):
    async with _read() as conn:
        given = await assignments.every(conn)
        context = {"roles": await roles.every(conn), "people": await people.every(conn),
                   "groups": await groups.tree(conn), "units": await units.tree(conn)}
    return await _show("admin/assignments.html", refusal, given=given, form=form or MultiDict(), **context)


@blueprint.get("/assignments")
@admin_only
async def assignments_page():
    return await _assignments()


@blueprint.post("/assignments")
@changes
async def assign():
    return await _submit(lambda conn, by, form: assignments.assign(
        conn, by, parse_id(form.get("role"), "role"), form.get("holder", ""),
        parse_id(form.get("within"), "org unit")), _assignments, "/admin/assignments")


@blueprint.post("/assignments/<uuid:assignment_id>/delete")
@changes
async def unassign(assignment_id: UUID):
    return await _submit(lambda conn, by, _: assignments.unassign(conn, by, assignment_id), _assignments,
                         "/admin/assignments", keep_form=False)


# Org units ----------------------------------------------------------------

async def _units(form=None, refusal=None):
    async with _read() as conn:
        tree = await units.tree(conn)
    return await _show("admin/units.html", refusal, tree=tree, form=form or MultiDict())


async def _unit(unit_id: UUID, form=None, refusal=None):
    async with _read() as conn:
        tree = await units.tree(conn)
    if (unit := tree.get(unit_id)) is None:
        return await _units(refusal=refusal or Refused("There is no such org unit.", 404))
    form = form or MultiDict({"name": unit.name, "parent": unit.parent_id or ""})
    return await _show("admin/unit.html", refusal, unit=unit, tree=tree, form=form)


@blueprint.get("/units")
@admin_only
async def units_page():
    return await _units()


@blueprint.get("/units/<uuid:unit_id>")
@admin_only
async def unit_page(unit_id: UUID):
    return await _unit(unit_id)


def _save_unit(unit_id: UUID | None):
    return lambda conn, by, form: units.save(conn, by, unit_id, form.get("name"),
                                             parse_id(form.get("parent"), "parent unit"))


@blueprint.post("/units")
@changes
async def create_unit():
    return await _submit(_save_unit(None), _units, "/admin/units")


@blueprint.post("/units/<uuid:unit_id>")
@changes
async def update_unit(unit_id: UUID):
    return await _submit(_save_unit(unit_id), partial(_unit, unit_id), "/admin/units")


@blueprint.post("/units/<uuid:unit_id>/delete")
@changes
async def delete_unit(unit_id: UUID):
    return await _submit(lambda conn, by, _: units.delete(conn, by, unit_id), partial(_unit, unit_id),
                         "/admin/units?notice=deleted", keep_form=False)


# Why can this user do this? -----------------------------------------------

@blueprint.get("/why")
@admin_only
async def why_page():
    asked = request.args
    answer, refusal = None, None
    async with _read() as conn:
        everyone = await people.every(conn)
        tree = await units.tree(conn)
        if asked.get("user") and asked.get("capability"):
            try:
                answer = await why.explain(conn, parse_id(asked.get("user"), "user"), asked.get("capability"),
                                           parse_id(asked.get("unit"), "org unit"))
            except Refused as refused:
                refusal = refused
    return await _show("admin/why.html", refusal, people=everyone, units=tree, catalogue=CAPABILITIES, asked=asked,
                       answer=answer)
