"""`exceptao tenant end SLUG [--at DATE | --undo]` and `exceptao tenant delete SLUG [--dry-run]`.

Both run on the administrator connection (DATABASE_URL), like `tenant create`,
and print JSON on stdout. A refusal is one line on stderr and exit 1: a tenant
that has not ended, or ended 30 days ago or less, is not deleted; the message
says from when it can be. A dry run exits 0 whatever it finds (its JSON says
whether a deletion is allowed now) and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime, timezone

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

    from app.config import Settings

COMMANDS = ("end", "delete")
ACTOR = "system:cli"


def moment(text: str) -> datetime:
    """An ISO 8601 date or date and time; UTC unless it says otherwise."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def add_parsers(tenant: argparse._SubParsersAction) -> None:
    end = tenant.add_parser("end", help="record the end of a tenant's subscription; deletion is possible 30 days later")
    end.add_argument("slug")
    when = end.add_mutually_exclusive_group()
    when.add_argument("--at", type=moment, metavar="DATE",
                      help="when it ended or ends (default: now), UTC unless given")
    when.add_argument("--undo", action="store_true", help="the subscription goes on: clear its end (before deletion)")
    delete = tenant.add_parser("delete", help="delete a tenant's data after its retention period, keeping the "
                                              "pseudonymised audit chain")
    delete.add_argument("slug")
    delete.add_argument("--dry-run", action="store_true", help="print what would be removed and kept; change nothing")


def run(settings: "Settings", args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: `exceptao` builds its parser for every command, the offline bundle check included,
    # which must not load any database code.
    import asyncpg

    from app.tenant_deletion.deletion import plan_deletion
    from app.tenant_deletion.subscription import DeletionRefused

    admin = await asyncpg.connect(settings.database_url)
    try:
        if args.tenant_command == "end":
            return await _end(admin, args)
        if args.dry_run:
            plan = await plan_deletion(admin, args.slug, actor=ACTOR, now=datetime.now(timezone.utc))
            print(json.dumps(plan, indent=2))
            return 0
        return await _delete(admin, settings, args.slug)
    except DeletionRefused as exc:
        print(f"tenant {'not deleted' if args.tenant_command == 'delete' else 'unchanged'}: {exc}", file=sys.stderr)
        return 1
    finally:
        await admin.close()


async def _end(admin: asyncpg.Connection, args: argparse.Namespace) -> int:
    from app.tenant_deletion.subscription import allowed_from, end_subscription, resume_subscription

    if args.undo:
        tenant = await resume_subscription(admin, args.slug, actor=ACTOR)
        print(json.dumps({"tenant": tenant.slug, "ended_at": None}))
        return 0
    tenant = await end_subscription(admin, args.slug, at=args.at or datetime.now(timezone.utc), actor=ACTOR)
    print(json.dumps({"tenant": tenant.slug, "ended_at": tenant.ended_at.isoformat(),
                      "deletion_allowed_from": allowed_from(tenant.ended_at).isoformat()}))
    return 0


async def _delete(admin: asyncpg.Connection, settings: Settings, slug: str) -> int:
    from app.storage import open_store
    from app.tenant_deletion.deletion import StoreFailed, delete_tenant

    store = open_store(settings)
    try:
        deletion = await delete_tenant(admin, store, slug, actor=ACTOR, now=datetime.now(timezone.utc))
    except StoreFailed as exc:
        # The database part rolled back; the tenant stays marked deleted (unreachable) until a run completes.
        print(f"tenant not deleted: {exc}. Nothing else was changed; run the command again.", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(json.dumps(deletion.as_json(), indent=2))
    return 0
