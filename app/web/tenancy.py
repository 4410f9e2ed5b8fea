"""Which tenant a request is for: pages by host (<slug>.<base domain>), the API also by X-Tenant."""

from __future__ import annotations

from quart import abort, current_app, request

from app.tenants import Tenant, is_deleted, tenant_by_slug


def slug_from_host() -> str | None:
    host = (request.host or "").split(":")[0].lower()
    suffix = "." + current_app.config["EXCEPTAO"].base_domain.lower()
    return host[: -len(suffix)] if host.endswith(suffix) else None


async def tenant_from_host() -> Tenant | None:
    slug = slug_from_host()
    return await _live_tenant(slug) if slug else None


def slug_from_request() -> str | None:
    """The API's tenant: the X-Tenant header, else the host name."""
    header = request.headers.get("X-Tenant")
    return header.strip().lower() if header else slug_from_host()


async def tenant_from_request() -> Tenant | None:
    slug = slug_from_request()
    return await _live_tenant(slug) if slug else None


async def _live_tenant(slug: str) -> Tenant | None:
    """The tenant named `slug`; a deleted tenant's name is not found (404), on every page and API call."""
    pool = current_app.extensions["pool"]
    tenant = await tenant_by_slug(pool, slug)
    if tenant is None and await is_deleted(pool, slug):
        abort(404)
    return tenant


def tenant_url(slug: str, path: str = "/") -> str:
    """The same server under the tenant's host name."""
    base = current_app.config["EXCEPTAO"].base_domain
    port = (request.host or "").partition(":")[2]
    return f"{request.scheme}://{slug}.{base}{':' + port if port else ''}{path}"
