"""While PostgreSQL cannot be reached (restarting, recovering from a crash, failing over), answer 503.

A request that loses its database connection is the server's trouble, not
the user's and not a bug: it is answered 503 with Retry-After, as the error
page or, under /api/, the API's JSON error, instead of a 500 saying the
application failed. The transaction it was in is rolled back by the server,
or was committed just before the connection went: so the message asks to
check before sending a change again. The pool drops the dead connections, so
requests succeed again as soon as the server is back.
"""

from __future__ import annotations

import asyncpg
from quart import Quart, current_app, jsonify, request

from app.crypto.kek import KekUnavailable

RETRY_AFTER_SECONDS = 5
MESSAGE = ("Exceptao cannot reach a service it depends on (its database, file storage or key service) "
           "just now. Try again in a few seconds; if you were saving a change, look whether it was saved before "
           "sending it again.")

# Any connection refused or reset (ConnectionError: PostgreSQL in practice, but
# the object store or Vault too, hence the message's wording); the database
# server gone or refusing (terminated by a shutdown or a crash, "the database
# system is starting up"); and asyncpg's InternalClientError, raised when a
# connection is cut in the middle of an operation (the pool then discards it);
# and Vault unreachable or sealed when a data key must be wrapped or unwrapped.
CONNECTION_LOST = (ConnectionError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                   asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.InternalClientError,
                   KekUnavailable)


def init_app(app: Quart) -> None:
    for error in CONNECTION_LOST:
        app.register_error_handler(error, database_unreachable)
    # asyncpg also raises InterfaceError when a transaction ends on a connection
    # already lost; any other InterfaceError is a bug and stays a 500.
    app.register_error_handler(asyncpg.InterfaceError, database_unreachable)


def _lost_connection(error: BaseException | None) -> bool:
    """The error, or one it was raised while handling, is a lost connection."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CONNECTION_LOST):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


async def database_unreachable(error: Exception):
    from app.web import render

    if not _lost_connection(error):
        raise error
    current_app.logger.warning("a service (database, storage, Vault) unreachable during %s %s: %s: %s",
                               request.method, request.path, type(error).__name__, error)
    if request.path.startswith("/api/"):
        response = jsonify({"error": "Service Unavailable", "message": MESSAGE})
        response.status_code = 503
    else:
        response = await render("error.html", title="Temporarily unavailable", message=MESSAGE, status=503)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
