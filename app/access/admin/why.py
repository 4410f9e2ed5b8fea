"""Why can this user do this? Every path from a user to a capability, through groups and roles."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from app.access import Grant, grants_of
from app.access.admin import Refused, people, units
from app.access.catalogue import CAPABILITIES


@dataclass(frozen=True)
class Explanation:
    holds: bool
    where: str | None               # the org unit asked about; None for the whole organisation
    paths: list[str]                # the ways it holds there
    elsewhere: list[str]            # the ways it holds only within other units
    disabled: bool                  # a disabled user holds nothing


def describe(user_name: str, grant: Grant) -> str:
    """`Uma → group Teachers → group Staff → role Approver → exception.approve (within School A)`."""
    steps = [user_name, *(f"{step['kind']} {step['name']}" for step in grant.via), grant.capability]
    return " → ".join(steps) + (f" (within {' / '.join(grant.unit_names)})" if grant.unit_names else "")


async def explain(conn: asyncpg.Connection, user_id: UUID | None, capability: str,
                  unit_id: UUID | None) -> Explanation:
    """Whether the user holds `capability` in the whole organisation (unit_id None) or in that unit, and every way.

    A grant within a unit holds in that unit and every unit below it. (Access.why
    answers for the scopes a user can work in; this answers for any unit.)
    """
    user = await people.find(conn, user_id)
    if capability not in CAPABILITIES:
        raise Refused("Choose a capability from the list.")
    unit = (await units.tree(conn)).get(unit_id)
    if unit_id is not None and unit is None:
        raise Refused("There is no such org unit.", 404)
    relevant = [g for g in await grants_of(conn, user_id) if g.capability == capability]
    here = [g for g in relevant if g.within_unit_id is None or (unit and g.within_unit_id in unit.path)]
    return Explanation(bool(here), unit.label if unit else None,
                       [describe(user["display_name"], g) for g in here],
                       [describe(user["display_name"], g) for g in relevant if g not in here], user["disabled"])
