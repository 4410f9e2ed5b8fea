"""The transitions a user may ask for now: the rows of `exception_transition`, judged as the engine judges them.

A page offers a button for each row from the exception's state that a person
may ask for and this user passes (capability, requester rule, separation of
duties, not approving twice), by the engine's own check, so there is no second
copy of the rules. Asking still goes through `engine.transition`, which checks
everything again in the transaction that makes the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import asyncpg

from app.access import Access
from app.exceptions.engine import Actor, TransitionRefused, check_actor


@dataclass(frozen=True)
class Offer:
    from_state: str
    to_state: str
    approval_level: int          # 0, or the approval this would give (1 or 2)
    comment_required: bool
    step_up_required: bool


def approvals_this_round(exception: asyncpg.Record, events: Sequence[asyncpg.Record]) -> list[asyncpg.Record]:
    """The approvals given in the exception's current review round, from its timeline (`query.events_of`)."""
    return [e for e in events if e["kind"] == "approval" and e["review_round"] == exception["review_round"]]


async def offers_for(conn: asyncpg.Connection, exception: asyncpg.Record, events: Sequence[asyncpg.Record],
                     access: Access) -> list[Offer]:
    """What `access`'s user may ask for now on `exception` (a `query.get_exception` record)."""
    rules = await conn.fetch(
        "SELECT * FROM exception_transition WHERE from_state = $1 AND actor = 'user'"
        " ORDER BY approval_level, to_state", exception["state"])
    approvals = approvals_this_round(exception, events)
    next_level = len(approvals) + 1
    actor = Actor(access=access)
    offers = []
    for rule in rules:
        if rule["approval_level"] not in (0, next_level):
            continue
        try:
            check_actor(rule, exception, actor, approvals)
        except TransitionRefused:
            continue
        offers.append(Offer(rule["from_state"], rule["to_state"], rule["approval_level"], rule["comment_required"],
                            rule["step_up_required"]))
    return offers
