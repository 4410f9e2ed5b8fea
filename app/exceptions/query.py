"""Reading exceptions: the filtered list (screen, CSV and API alike), one exception with its history, my work.

Every query runs in the caller's tenant transaction, so row-level security
decides what exists: another tenant's exceptions, and for a site-bound user
another unit's, are simply not there.

Filters come from a query string (`parse_filters`), the same names on the
screen and in the API:

    state=ACTIVE&state=EXPIRING_SOON   any of these states
    owner=<user id>                    owned by this user
    expiring_within=30                 approved or active, ending within 30 days
    rating_min=10&rating_max=25        residual-risk rating (likelihood × impact)
    q=ftp                              words in the title, policy, assets or deviation
    sort=-rating                       updated, ends_on, rating, title, state; "-" descends
    page=2                             50 to a page (per_page up to 200 in the API)
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Iterable, Mapping
from uuid import UUID

import asyncpg

from app.access import Access

STATES = ("DRAFT", "UNDER_REVIEW", "APPROVED", "REJECTED", "RETURNED", "ACTIVE", "EXPIRING_SOON", "EXPIRED",
          "REVOKED", "WITHDRAWN")
OPEN_STATES = ("APPROVED", "ACTIVE", "EXPIRING_SOON")   # in force, or about to be
# Sort keys and the columns they order by; every order ends on id, so pages never overlap.
SORTS = {"updated": "e.updated_at", "ends_on": "e.ends_on", "rating": "e.rating", "title": "lower(e.title)",
         "state": "e.state"}
DEFAULT_SORT = "-updated"
PER_PAGE = 50
MAX_PER_PAGE = 200
SEARCH_LIMIT = 200
EXPORT_LIMIT = 50_000


@dataclass(frozen=True)
class Filters:
    states: tuple[str, ...] = ()
    owner: UUID | None = None
    expiring_within: int | None = None
    rating_min: int | None = None
    rating_max: int | None = None
    q: str = ""
    sort: str = DEFAULT_SORT
    page: int = 1
    per_page: int = PER_PAGE

    def as_json(self) -> dict:
        """The filters as plain JSON values (for the audit record of an export)."""
        return {"states": list(self.states), "owner": str(self.owner) if self.owner else None,
                "expiring_within": self.expiring_within, "rating_min": self.rating_min,
                "rating_max": self.rating_max, "q": self.q, "sort": self.sort}

    def query_args(self, **changes) -> list[tuple[str, str]]:
        """The filters as query-string pairs (for links to other pages and sorts); defaults left out."""
        f = replace(self, **changes)
        pairs = [("state", s) for s in f.states]
        for name in ("owner", "expiring_within", "rating_min", "rating_max"):
            if getattr(f, name) is not None:
                pairs.append((name, str(getattr(f, name))))
        if f.q:
            pairs.append(("q", f.q))
        if f.sort != DEFAULT_SORT:
            pairs.append(("sort", f.sort))
        if f.page != 1:
            pairs.append(("page", str(f.page)))
        if f.per_page != PER_PAGE:
            pairs.append(("per_page", str(f.per_page)))
        return pairs


def _values(args: Mapping, name: str) -> list[str]:
    if hasattr(args, "getlist"):
        return [v for v in args.getlist(name) if v != ""]
    value = args.get(name)
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _number(args, name, low, high, problems) -> int | None:
    values = _values(args, name)
    if not values:
        return None
    try:
        number = int(values[0])
        if low <= number <= high:
            return number
    except ValueError:
        pass
    problems[name] = f"a whole number from {low} to {high}"
    return None


def parse_filters(args: Mapping, *, max_per_page: int = PER_PAGE) -> tuple[Filters, dict[str, str]]:
    """Filters from a query string, and the problems found (a bad value is named and left out, never guessed)."""
    problems: dict[str, str] = {}
    states = tuple(dict.fromkeys(s.upper() for s in _values(args, "state")))
    if unknown := [s for s in states if s not in STATES]:
        problems["state"] = f"unknown state {unknown[0]!r}; one of {', '.join(STATES)}"
        states = tuple(s for s in states if s in STATES)
    owner = None
    if owner_values := _values(args, "owner"):
        try:
            owner = UUID(owner_values[0])
        except ValueError:
            problems["owner"] = "a user id"
    q = " ".join((_values(args, "q") or [""])[0].split())
    if len(q) > SEARCH_LIMIT:
        problems["q"] = f"at most {SEARCH_LIMIT} characters"
        q = q[:SEARCH_LIMIT]
    sort = (_values(args, "sort") or [DEFAULT_SORT])[0]
    if sort.removeprefix("-") not in SORTS:
        problems["sort"] = f"one of {', '.join(SORTS)}, with '-' in front to descend"
        sort = DEFAULT_SORT
    filters = Filters(
        states=states, owner=owner, q=q, sort=sort,
        expiring_within=_number(args, "expiring_within", 0, 3660, problems),
        rating_min=_number(args, "rating_min", 1, 25, problems),
        rating_max=_number(args, "rating_max", 1, 25, problems),
        page=_number(args, "page", 1, 1_000_000, problems) or 1,
        per_page=_number(args, "per_page", 1, max_per_page, problems) or PER_PAGE,
    )
    return filters, problems


def _like(text: str) -> str:
    """An ILIKE pattern matching `text` literally anywhere."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(filters: Filters, today: date) -> tuple[str, list]:
    """The WHERE clause (fixed SQL, values as parameters) for `filters`."""
    clauses, params = ["true"], []

    def param(value) -> str:
        params.append(value)
        return f"${len(params)}"

    if filters.states:
        clauses.append(f"e.state = ANY({param(list(filters.states))}::text[])")
    if filters.owner:
        clauses.append(f"e.owner_id = {param(filters.owner)}")
    if filters.expiring_within is not None:
        clauses.append(f"e.state = ANY({param(list(OPEN_STATES))}::text[])"
                       f" AND e.ends_on <= {param(today + timedelta(days=filters.expiring_within))}")
    if filters.rating_min is not None:
        clauses.append(f"e.rating >= {param(filters.rating_min)}")
    if filters.rating_max is not None:
        clauses.append(f"e.rating <= {param(filters.rating_max)}")
    for word in filters.q.split():
        clauses.append(f"e.search_text LIKE lower({param(_like(word))})")  # sql/0012_exception_search.sql
    return " AND ".join(clauses), params


def _order(sort: str) -> str:
    direction = "DESC" if sort.startswith("-") else "ASC"
    return f"{SORTS[sort.removeprefix('-')]} {direction}, e.id {direction}"


_LIST_COLUMNS = """
e.id, e.title, e.policy_ref, e.state, e.likelihood, e.impact, e.rating, e.starts_on, e.ends_on, e.updated_at,
e.owner_id, owner.display_name AS owner_name, e.requester_id, requester.display_name AS requester_name,
e.org_unit_id, e.predecessor_id
"""
_FROM = """
FROM exception e
JOIN app_user owner ON owner.id = e.owner_id
JOIN app_user requester ON requester.id = e.requester_id
"""


@dataclass(frozen=True)
class Page:
    rows: list[asyncpg.Record]
    total: int
    filters: Filters

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.filters.per_page))


async def list_exceptions(conn: asyncpg.Connection, filters: Filters, *, today: date) -> Page:
    """One page of the exceptions matching `filters`, and how many match in all."""
    where, params = _where(filters, today)
    total = await conn.fetchval(f"SELECT count(*) FROM exception e WHERE {where}", *params)
    offset = (filters.page - 1) * filters.per_page
    # The page first, then its people: names are looked up for 50 rows, not for every match.
    rows = await conn.fetch(
        f"SELECT {_LIST_COLUMNS} FROM (SELECT * FROM exception e WHERE {where} ORDER BY {_order(filters.sort)}"
        f" LIMIT {filters.per_page:d} OFFSET {offset:d}) e"
        f" JOIN app_user owner ON owner.id = e.owner_id JOIN app_user requester ON requester.id = e.requester_id"
        f" ORDER BY {_order(filters.sort)}",
        *params)
    return Page(rows, total, filters)


CSV_COLUMNS = ("id", "title", "policy_ref", "state", "likelihood", "impact", "rating", "starts_on", "ends_on",
               "owner_name", "requester_name", "updated_at")


async def export_csv(conn: asyncpg.Connection, filters: Filters, *, today: date) -> tuple[str, int]:
    """Every exception matching `filters` (all pages, up to EXPORT_LIMIT) as CSV, and how many rows it holds."""
    where, params = _where(filters, today)
    rows = await conn.fetch(
        f"SELECT {_LIST_COLUMNS} {_FROM} WHERE {where} ORDER BY {_order(filters.sort)} LIMIT {EXPORT_LIMIT:d}",
        *params)
    return to_csv(CSV_COLUMNS, ([row[c] for c in CSV_COLUMNS] for row in rows)), len(rows)


def to_csv(header: Iterable[str], rows: Iterable[Iterable]) -> str:
    """CSV text; a cell a spreadsheet would run as a formula (=, +, -, @, tab, CR) is quoted with a leading '."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def get_exception(conn: asyncpg.Connection, exception_id: UUID) -> asyncpg.Record | None:
    """One exception with every field, its people's names and its unit's name; None if not visible here."""
    return await conn.fetchrow(
        f"SELECT e.*, owner.display_name AS owner_name, requester.display_name AS requester_name,"
        f" unit.name AS unit_name {_FROM} LEFT JOIN org_unit unit ON unit.id = e.org_unit_id WHERE e.id = $1",
        exception_id)


async def events_of(conn: asyncpg.Connection, exception_id: UUID) -> list[asyncpg.Record]:
    """The exception's timeline, oldest first, with the name of the person behind each user actor."""
    return await conn.fetch(
        """
        SELECT ev.at, ev.actor, ev.kind, ev.from_state, ev.to_state, ev.approval_level, ev.review_round,
               ev.comment, u.display_name AS actor_name
          FROM exception_event ev
          LEFT JOIN app_user u ON ev.actor = 'user:' || u.id::text
         WHERE ev.exception_id = $1
         ORDER BY ev.at, ev.id
        """,
        exception_id)


_CHAIN_COLUMNS = "e.id, e.title, e.state, e.starts_on, e.ends_on, e.justification, e.created_at"


async def renewal_chain(conn: asyncpg.Connection, exception_id: UUID) -> list[asyncpg.Record]:
    """The exception, the ones it renews back to the original, and its renewals; oldest first.

    Each link has its justification, so an auditor can follow it across cycles.
    """
    # Each step carries its row's columns, so no join back to exception at the end: with a few rows in the
    # chain, the planner would still hash-join them against a scan of the tenant's every exception.
    return await conn.fetch(
        f"""
        WITH RECURSIVE back AS (
            SELECT {_CHAIN_COLUMNS}, e.predecessor_id, 0 AS step FROM exception e WHERE e.id = $1
            UNION ALL
            SELECT {_CHAIN_COLUMNS}, e.predecessor_id, back.step - 1
              FROM exception e JOIN back ON e.id = back.predecessor_id
        ), forward AS (
            SELECT {_CHAIN_COLUMNS}, 0 AS step FROM exception e WHERE e.id = $1
            UNION ALL
            SELECT {_CHAIN_COLUMNS}, forward.step + 1 FROM exception e JOIN forward ON e.predecessor_id = forward.id
        )
        SELECT id, title, state, starts_on, ends_on, justification, created_at, step FROM back
        UNION ALL
        SELECT id, title, state, starts_on, ends_on, justification, created_at, step FROM forward WHERE step > 0
        ORDER BY step
        """,
        exception_id)


@dataclass(frozen=True)
class MyWork:
    awaiting_review: list[asyncpg.Record]   # under review, not mine, and I have not approved this round
    expiring: list[asyncpg.Record]          # I own or requested it, in force, ending within 30 days
    returned: list[asyncpg.Record]          # I requested it and a reviewer sent it back
    drafts: list[asyncpg.Record]            # my drafts, not yet submitted


EXPIRING_DAYS = 30
MY_WORK_LIMIT = 50


async def my_work(conn: asyncpg.Connection, access: Access, *, today: date) -> MyWork:
    """What waits for this user, each list soonest or oldest first."""
    me = access.user_id
    awaiting = []
    if access.has("exception.review") or access.has("exception.approve"):
        awaiting = await conn.fetch(
            f"""
            SELECT {_LIST_COLUMNS} {_FROM}
             WHERE e.state = 'UNDER_REVIEW' AND e.requester_id <> $1
               AND NOT EXISTS (SELECT FROM exception_event ev
                                WHERE ev.exception_id = e.id AND ev.kind = 'approval'
                                  AND ev.review_round = e.review_round AND ev.actor = 'user:' || $1::text)
             ORDER BY e.updated_at, e.id LIMIT {MY_WORK_LIMIT:d}
            """, me)
    expiring = await conn.fetch(
        f"SELECT {_LIST_COLUMNS} {_FROM} WHERE (e.owner_id = $1 OR e.requester_id = $1)"
        f" AND e.state = ANY($2::text[]) AND e.ends_on <= $3 ORDER BY e.ends_on, e.id LIMIT {MY_WORK_LIMIT:d}",
        me, list(OPEN_STATES), today + timedelta(days=EXPIRING_DAYS))
    returned = await conn.fetch(
        f"SELECT {_LIST_COLUMNS} {_FROM} WHERE e.requester_id = $1 AND e.state = 'RETURNED'"
        f" ORDER BY e.updated_at, e.id LIMIT {MY_WORK_LIMIT:d}", me)
    drafts = await conn.fetch(
        f"SELECT {_LIST_COLUMNS} {_FROM} WHERE e.requester_id = $1 AND e.state = 'DRAFT'"
        f" ORDER BY e.updated_at DESC, e.id LIMIT {MY_WORK_LIMIT:d}", me)
    return MyWork(awaiting, expiring, returned, drafts)


async def people(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Active users of the tenant (id, display_name), for choosing an owner or filtering by one."""
    return await conn.fetch(
        "SELECT id, display_name FROM app_user WHERE disabled_at IS NULL ORDER BY lower(display_name), id")
