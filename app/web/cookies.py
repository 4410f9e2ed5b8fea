"""Cookie names and flags: Secure everywhere but plain-HTTP localhost, HttpOnly, SameSite=Lax."""

from __future__ import annotations

from quart import request
from werkzeug.wrappers import Response


def is_local_http() -> bool:
    host = (request.host or "").split(":")[0].lower()
    return request.scheme == "http" and (host == "localhost" or host.endswith(".localhost") or host == "127.0.0.1")


def name(base: str) -> str:
    # __Host-: the browser refuses it from a sibling subdomain or without Secure.
    return f"exceptao_{base}" if is_local_http() else f"__Host-exceptao_{base}"


def set_cookie(response: Response, base: str, value: str, *, max_age: int | None = None) -> None:
    response.set_cookie(
        name(base), value, max_age=max_age, path="/", secure=not is_local_http(), httponly=True, samesite="Lax",
    )


def delete_cookie(response: Response, base: str) -> None:
    response.set_cookie(name(base), "", max_age=0, path="/", secure=not is_local_http(), httponly=True, samesite="Lax")
