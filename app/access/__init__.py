"""Who may do what: a user's effective capabilities, in the scope they work in.

A role gives its capabilities to a user directly or to a group (and through
parent groups to every member below), in the whole tenant or only within an
org unit. `load` reads all of a user's grants in one query (`access_grants`,
recursive over groups and org units) and decides the scope of the request:

- a user holding any grant in the whole tenant works tenant-wide, and may
  switch into one of the units where they hold unit-limited grants;
- a user whose grants are all unit-limited is site-bound: they always work in
  one of those units, and row-level security hides every other unit's rows.

In a unit's scope the capabilities are the tenant-wide grants plus those
limited to that unit or one of its ancestors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from app.access.catalogue import CAPABILITIES


@dataclass(frozen=True)
class Grant:
    capability: str
    within_unit_id: UUID | None
    unit_path: tuple[UUID, ...]       # the unit and its ancestors, root first; () tenant-wide
    unit_names: tuple[str, ...]
    via: tuple[dict, ...]             # groups nearest first, then the role: {"kind", "id", "name"}

    @property
    def role(self) -> dict:
        return self.via[-1]

    @property
    def groups(self) -> tuple[dict, ...]:
        return self.via[:-1]


@dataclass(frozen=True)
class Scope:
    unit_id: UUID | None
    label: str


WHOLE_TENANT = Scope(None, "Whole organisation")


@dataclass(frozen=True)
class Access:
    user_id: UUID
    scope: Scope
    scopes: tuple[Scope, ...]           # where this user may work
    grants: tuple[Grant, ...] = field(repr=False)
    capabilities: frozenset[str]        # what holds in `scope`

    @property
    def site_bound(self) -> bool:
        return WHOLE_TENANT not in self.scopes

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def why(self, capability: str) -> list[Grant]:
        """The grants through which `capability` holds in this scope (empty if it does not)."""
        return [g for g in self.grants if g.capability == capability and self._applies(g)]

    def _applies(self, grant: Grant) -> bool:
        return grant.within_unit_id is None or (
            self.scope.unit_id is not None and grant.within_unit_id in _path_of(self.grants, self.scope.unit_id))

    def limited_to(self, capabilities: frozenset[str]) -> "Access":
        """The same user and scope with only `capabilities` (what an API token carries)."""
        kept = self.capabilities & capabilities
        return Access(self.user_id, self.scope, self.scopes,
                      tuple(g for g in self.grants if g.capability in kept), kept)


def _path_of(grants: tuple[Grant, ...], unit_id: UUID) -> tuple[UUID, ...]:
    for grant in grants:
        if grant.within_unit_id == unit_id:
            return grant.unit_path
    return ()


async def grants_of(conn: asyncpg.Connection, user_id: UUID) -> tuple[Grant, ...]:
    rows = await conn.fetch(
        "SELECT capability, within_unit_id, unit_path, unit_names, via FROM access_grants($1)"
        " ORDER BY capability, cardinality(unit_path), via::text",
        user_id,
    )
    return tuple(
        Grant(r["capability"], r["within_unit_id"], tuple(r["unit_path"]), tuple(r["unit_names"]),
              tuple(json.loads(r["via"])))
        for r in rows
    )


def resolve(user_id: UUID, grants: tuple[Grant, ...], wanted: UUID | None) -> Access:
    """The access of a user with these grants, in `wanted` if they may work there, else their default scope."""
    units: dict[UUID, Scope] = {}
    for g in grants:
        if g.within_unit_id is not None:
            units.setdefault(g.within_unit_id, Scope(g.within_unit_id, " / ".join(g.unit_names)))
    tenant_wide = any(g.within_unit_id is None for g in grants) or not units
    scopes = ((WHOLE_TENANT,) if tenant_wide else ()) + tuple(sorted(units.values(), key=lambda s: s.label))
    scope = next((s for s in scopes if s.unit_id == wanted), scopes[0])
    path = _path_of(grants, scope.unit_id) if scope.unit_id else ()
    capabilities = frozenset(
        g.capability for g in grants if g.within_unit_id is None or g.within_unit_id in path)
    return Access(user_id, scope, scopes, grants, capabilities)


async def load(conn: asyncpg.Connection, user_id: UUID, wanted: UUID | None = None) -> Access:
    return resolve(user_id, await grants_of(conn, user_id), wanted)


__all__ = ["Access", "CAPABILITIES", "Grant", "Scope", "WHOLE_TENANT", "grants_of", "load", "resolve"]
