"""The `exceptao` command: serve, migrate, tenant create, user add, token create, erase-actor, operator add, keys rotate, verify, dlp scan."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import sys
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from app.config import Settings


@contextmanager
def admin_database(settings: Settings) -> Iterator[Settings]:
    """Settings with an administrator URL: DATABASE_URL, or the embedded server (stopped on exit)."""
    if settings.database_url:
        yield settings
        return
    from app.embedded import EmbeddedDatabase

    embedded = EmbeddedDatabase(settings.data_dir)
    try:
        yield settings.with_database(embedded.start())
    finally:
        embedded.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exceptao", description=__doc__)
    parser.add_argument("--data-dir", type=Path, help="data directory for the embedded database and local files")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate, seed the demo tenant on first run, and serve")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-demo", action="store_true", help="do not create the demo tenant acme")

    commands.add_parser("migrate", help="apply pending SQL migrations")

    tenant = commands.add_parser("tenant", help="manage tenants").add_subparsers(dest="tenant_command", required=True)
    create = tenant.add_parser("create", help="create a tenant")
    create.add_argument("slug")
    create.add_argument("--name", required=True)
    create.add_argument("--public", action="store_true", help="list its chain status on /api/audit/public")
    tenant_export = tenant.add_parser("export", help="write all of a tenant's data into one archive (DPA 9.1)")
    tenant_export.add_argument("--tenant", required=True, metavar="SLUG")
    tenant_export.add_argument("--out", required=True, type=Path, metavar="FILE")
    tenant_import = tenant.add_parser("import", help="restore a tenant export into this (empty, migrated) database")
    tenant_import.add_argument("archive", type=Path)
    from app.tenant_deletion import command as tenant_deletion

    tenant_deletion.add_parsers(tenant)

    user = commands.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    user_add = user.add_parser("add", help="add a user with a role; prints a one-time link to choose a password")
    user_add.add_argument("--tenant", required=True, metavar="SLUG")
    user_add.add_argument("--email", required=True)
    user_add.add_argument("--name", help="display name (default: the email's local part)")
    user_add.add_argument("--role", required=True, help="a role's name, or a default role's key (e.g. admin)")

    token = commands.add_parser("token", help="manage personal API tokens").add_subparsers(
        dest="token_command", required=True)
    token_create = token.add_parser("create", help="make an API token for a user; prints it once")
    token_create.add_argument("--tenant", required=True, metavar="SLUG")
    token_create.add_argument("--email", required=True)
    token_create.add_argument("--capability", required=True, action="append", metavar="CODE",
                              help="repeat for each capability; each must be one the user holds")
    token_create.add_argument("--name", default="command line")
    token_create.add_argument("--expires", type=int, default=90, metavar="DAYS")

    erase = commands.add_parser("erase-actor", help="erase a person from a tenant (DPA 11): their audit identity "
                                "becomes a tombstone, their account is anonymised; prints the record as JSON")
    erase.add_argument("--tenant", required=True, metavar="SLUG")
    erase.add_argument("--email", required=True, metavar="ADDRESS")
    erase.add_argument("--basis", metavar="TEXT", help="the legal-basis note kept with the erasure "
                       "(default: DPA 11.4, GDPR Art. 6(1)(f) legitimate interest in audit integrity)")
    erase.add_argument("--reference", metavar="REF", help="the request's reference, e.g. a ticket number")

    operator = commands.add_parser("operator", help="manage platform operators").add_subparsers(
        dest="operator_command", required=True)
    operator_add = operator.add_parser("add", help="add an operator; prints a password and TOTP secret once")
    operator_add.add_argument("--email", required=True)
    operator_add.add_argument("--name", required=True, help="display name")

    keys = commands.add_parser("keys", help="manage encryption keys").add_subparsers(dest="keys_command", required=True)
    keys.add_parser("rotate", help="rotate the key-encryption key and rewrap every tenant's data keys under it")

    verify = commands.add_parser("verify", help="verify a tenant's audit chain; exit 0 intact, 1 broken")
    verify.add_argument("--tenant", required=True, metavar="SLUG")
    verify.add_argument("--full", action="store_true",
                        help="walk every row, not only those after the latest anchor (the default)")

    audit = commands.add_parser("audit", help="audit bundles for auditors").add_subparsers(
        dest="audit_command", required=True)
    audit_export = audit.add_parser("export", help="write a tenant's audit bundle (chain, anchors, tokens, "
                                    "the authority's certificates; no personal data)")
    audit_export.add_argument("--tenant", required=True, metavar="SLUG")
    audit_export.add_argument("--out", type=Path, metavar="FILE",
                              help="default: audit-bundle-<slug>-seq<head>.jsonl in the current directory")
    from app.audit import offline

    offline.add_arguments(audit.add_parser(
        "verify-bundle", help="check an audit bundle offline: no database; exit 0 intact, 1 broken, 2 unreadable"))

    from app.dlp import command as dlp_command

    dlp_command.add_parser(commands)

    # Options may follow the sub-command too: `exceptao serve --data-dir D`.
    for sub in (serve,):
        sub.add_argument("--data-dir", type=Path, dest="sub_data_dir", help=argparse.SUPPRESS)

    args = parser.parse_args(argv)
    if args.command == "dlp":
        return dlp_command.run(args)  # no database: a user checks files before uploading them
    if args.command == "audit" and args.audit_command == "verify-bundle":
        return offline.run(args)  # no database, nor its code: an auditor's check
    settings = Settings.from_env()
    data_dir = getattr(args, "sub_data_dir", None) or args.data_dir
    if data_dir:
        settings = replace(settings, data_dir=data_dir)

    try:
        if args.command == "serve":
            settings = replace(settings, host=args.host or settings.host, port=args.port or settings.port)
            with admin_database(settings) as settings:
                asyncio.run(_serve(settings, demo=not args.no_demo))
            print("Exceptao stopped; the database was shut down cleanly.", flush=True)
            return 0
        with admin_database(settings) as settings:
            if args.command == "migrate":
                return asyncio.run(_migrate(settings))
            if args.command == "tenant" and args.tenant_command in tenant_deletion.COMMANDS:
                return tenant_deletion.run(settings, args)
            if args.command == "tenant" and args.tenant_command in ("export", "import"):
                return asyncio.run(_tenant_export(settings, args) if args.tenant_command == "export"
                                   else _tenant_import(settings, args.archive))
            if args.command == "tenant":
                return asyncio.run(_tenant_create(settings, args.slug, args.name, args.public))
            if args.command == "user":
                return asyncio.run(_user_add(settings, args))
            if args.command == "token":
                return asyncio.run(_token_create(settings, args))
            if args.command == "verify":
                return asyncio.run(_verify(settings, args.tenant, full=args.full))
            if args.command == "audit":
                return asyncio.run(_audit_export(settings, args.tenant, args.out))
            if args.command == "erase-actor":
                return asyncio.run(_erase_actor(settings, args))
            if args.command == "keys":
                return asyncio.run(_keys_rotate(settings))
            if args.command == "operator":
                return asyncio.run(_operator_add(settings, args.email, args.name))
    except KeyboardInterrupt:
        return 130
    return 2


async def _migrate(settings: Settings) -> int:
    from app.migrations import MigrationError, migrate

    try:
        ran = await migrate(settings.database_url)
    except MigrationError as exc:
        print(f"migration refused: {exc}", file=sys.stderr)
        return 1
    print("\n".join(f"applied {name}" for name in ran) or "nothing to apply: the schema is current")
    return 0


class Refused(Exception):
    """What a command could not do, said as its one line on stderr (exit 1)."""


async def _on_admin_connection(settings: Settings, what: str, act, refusals: tuple[type[Exception], ...]):
    """Run `act(conn)` on an administrator connection; a refusal prints "<what>: <reason>" and raises Refused."""
    import asyncpg  # here, not at the top: `audit verify-bundle` must load no database code

    conn = await asyncpg.connect(settings.database_url)
    try:
        return await act(conn)
    except refusals as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        raise Refused from None
    finally:
        await conn.close()


def _exit_code(command):
    """Exit 0 when the command ran, 1 when it was refused (its reason already printed)."""
    @functools.wraps(command)
    async def run(*args, **kwargs) -> int:
        try:
            await command(*args, **kwargs)
        except Refused:
            return 1
        return 0
    return run


@_exit_code
async def _tenant_create(settings: Settings, slug: str, name: str, public: bool) -> None:
    from app.audit.events import system_actor
    from app.tenants import TenantError, create_tenant

    tenant = await _on_admin_connection(
        settings, "tenant not created",
        lambda conn: create_tenant(conn, slug, name, actor=system_actor("cli"), audit_public=public), (TenantError,))
    print(json.dumps({"id": str(tenant.id), "slug": tenant.slug, "name": tenant.name}))


@_exit_code
async def _user_add(settings: Settings, args) -> None:
    from app.access.bootstrap import BootstrapError, add_user

    link = await _on_admin_connection(
        settings, "user not added",
        lambda conn: add_user(conn, settings, args.tenant, args.email, args.name, args.role), (BootstrapError,))
    print(f"Added {args.email}. They choose their password here (once, within "
          f"{link.valid_hours} hours):\n{link.url}")


@_exit_code
async def _token_create(settings: Settings, args) -> None:
    from app.access.bootstrap import BootstrapError, create_token

    secret = await _on_admin_connection(
        settings, "token not created",
        lambda conn: create_token(conn, args.tenant, args.email, args.capability, args.name, args.expires),
        (BootstrapError,))
    print(secret)


@_exit_code
async def _operator_add(settings: Settings, email: str, name: str) -> None:
    from app.operator.accounts import OperatorError, create_operator

    added = await _on_admin_connection(
        settings, "operator not added", lambda conn: create_operator(conn, settings.key(), email, name),
        (OperatorError,))
    print(f"Added operator {added.operator.email} (id {added.operator.id}). Shown this once, never stored in clear:\n"
          f"  password:    {added.password}\n"
          f"  TOTP secret: {added.totp_secret}\n"
          f"  {added.otpauth_uri}\n"
          f"Sign in with all three at /operator/signin on the bare base domain ({settings.base_domain}).")


@_exit_code
async def _keys_rotate(settings: Settings) -> None:
    from app.crypto.kek import KekError
    from app.crypto.rotation import rotate_kek

    rotation = await _on_admin_connection(
        settings, "key-encryption key not rotated", lambda conn: rotate_kek(conn, settings), (KekError,))
    print(f"Rotated the {rotation.provider} key-encryption key to version {rotation.version}; rewrapped "
          f"{rotation.rewrapped} data keys of {rotation.tenants} tenants (files are unchanged).")
    if rotation.old_versions_dropped:
        print("Older key-file versions were dropped: no data key refers to them any more.")
    for tenant_id, why in rotation.failed.items():
        print(f"tenant {tenant_id}: data keys not rewrapped, still under their old version: {why}", file=sys.stderr)
    if rotation.failed:
        raise Refused


async def _erase_actor(settings: Settings, args) -> int:
    from app.access.admin import Refused as NotErased
    from app.audit.erasure import DEFAULT_BASIS, NOTHING, erase_actor
    from app.db import open_pool, tenant_transaction
    from app.tenants import tenant_by_slug

    pool = await open_pool(settings)
    try:
        tenant = await tenant_by_slug(pool, args.tenant.lower())
        if tenant is None:
            print(f"not erased: there is no tenant {args.tenant!r}", file=sys.stderr)
            return 2
        try:
            async with tenant_transaction(pool, tenant.id) as conn:
                erasure = await erase_actor(conn, tenant.id, args.email, basis=args.basis or DEFAULT_BASIS,
                                            reference=args.reference, requested_by="system:cli")
        except NotErased as refusal:
            if refusal.status == 404:  # asked again, or never here: nothing to do is not a failure
                print(json.dumps({"erased": False, "message": NOTHING}))
                return 0
            print(f"not erased: {refusal}", file=sys.stderr)
            return 1
    finally:
        await pool.close()
    print(json.dumps({"erased": True, **erasure.as_json()}))
    return 0


@asynccontextmanager
async def _tenant_pool(settings: Settings, slug: str):
    """The app's pool and the tenant named by slug (None, said on stderr, when there is none); the pool closes after."""
    from app.db import open_pool
    from app.tenants import tenant_by_slug

    pool = await open_pool(settings)
    try:
        tenant = await tenant_by_slug(pool, slug.lower())
        if tenant is None:
            print(f"no tenant {slug!r}", file=sys.stderr)
        yield pool, tenant
    finally:
        await pool.close()


async def _verify(settings: Settings, slug: str, *, full: bool = False) -> int:
    from app.audit.verify import shutdown_workers, verify_tenant

    try:
        async with _tenant_pool(settings, slug) as (pool, tenant):
            if tenant is None:
                return 2
            verdict = await verify_tenant(pool, tenant.id, settings, full=full)
    finally:
        shutdown_workers()
    print(json.dumps(verdict.as_json()))
    return 0 if verdict.ok else 1


async def _audit_export(settings: Settings, slug: str, out: Path | None) -> int:
    from app.audit.bundle import record_export, write_bundle

    async with _tenant_pool(settings, slug) as (pool, tenant):
        if tenant is None:
            return 2
        # Written under a temporary name, renamed when whole: a half-written bundle never looks finished.
        partial = (out or Path(f"audit-bundle-{tenant.slug}.jsonl")).with_suffix(".partial")
        try:
            with partial.open("wb") as file:
                summary = await write_bundle(pool, tenant.id, file, settings)
            await record_export(pool, tenant.id, "system:cli", summary)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        path = out or Path(f"audit-bundle-{tenant.slug}-seq{summary.head_seq or 0}.jsonl")
        partial.replace(path)
    print(f"Wrote {path}: {summary.rows} rows up to seq {summary.head_seq} (head {summary.head_hash}), "
          f"{summary.anchors} anchors, {summary.certificates} certificates. "
          f"Check it anywhere with: exceptao audit verify-bundle {path}")
    return 0


async def _tenant_export(settings: Settings, args) -> int:
    from app.tenant_export.command import export_to_file

    return await export_to_file(settings, args.tenant, args.out)


async def _tenant_import(settings: Settings, archive: Path) -> int:
    from app.tenant_export.command import import_from_file

    return await import_from_file(settings, archive)


async def _serve(settings: Settings, *, demo: bool) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from app import create_app
    from app.demo import DEMO_SLUG, credentials_file, seed_demo
    from app.migrations import migrate

    await migrate(settings.database_url)
    logins = await seed_demo(settings.database_url, settings.data_dir) if demo else None

    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    url = f"http://{settings.host}:{settings.port}/"
    print(f"Exceptao is serving on {url}", flush=True)
    if demo:
        print(f"Sign in at http://{DEMO_SLUG}.{settings.base_domain}:{settings.port}/signin"
              f" (tenant {DEMO_SLUG}; *.localhost reaches this machine in Chromium and Firefox).")
        print(f"Verify its audit chain: curl -H 'X-Tenant: {DEMO_SLUG}' {url}api/audit/verify")
        if logins:
            print("Demo users (passwords are shown once and kept in "
                  f"{credentials_file(settings.data_dir)}):")
            for login in logins:
                print(f"  {login.email}  password: {login.password}")
        else:
            print(f"Sign in as a demo user; the passwords are in {credentials_file(settings.data_dir)}")
    print("Press Ctrl-C to stop.", flush=True)
    await serve(create_app(settings), config, shutdown_trigger=stop.wait)


if __name__ == "__main__":
    sys.exit(main())
