"""The auditor's API: chain verification and the public chain status."""

from __future__ import annotations

from quart import Blueprint, abort, jsonify, request

from app.audit import walk_limits
from app.audit.verify import verify_tenant
from app.db import tenant_transaction
from app.tenants import Tenant, public_tenants, tenant_by_slug
from app.views import pool, settings
from app.views.auth import client_address
from app.web.tenancy import slug_from_request

blueprint = Blueprint("audit_api", __name__, url_prefix="/api/audit")


async def requested_tenant() -> Tenant:
    slug = slug_from_request()
    if not slug:
        abort(404, "name the tenant in the X-Tenant header or the host name")
    tenant = await tenant_by_slug(pool(), slug)
    if tenant is None:
        abort(404, f"no tenant {slug!r}")
    return tenant


@blueprint.get("/verify")
async def verify():
    """The verdict: from the latest anchor by default, every row with ?full=1; 200 intact, 422 not."""
    tenant = await requested_tenant()
    full = wants_full_walk()
    if not await walk_limits.walk_allowed(pool(), settings(), tenant.id, full=full,
                                          asker=("address", client_address())):
        response = jsonify({"error": "Too Many Requests", "message": walk_limits.TOO_MANY})
        response.status_code = 429
        response.headers["Retry-After"] = str(walk_limits.RETRY_AFTER)
        return response
    verdict = await verify_tenant(pool(), tenant.id, settings(), full=full)
    return jsonify(verdict.as_json()), 200 if verdict.ok else 422


def wants_full_walk() -> bool:
    return request.args.get("full", "").lower() in ("1", "true", "yes")


@blueprint.get("/public")
async def public():
    """Chain status of tenants that opted in: no content, only the size and head."""
    tenants = []
    for tenant in await public_tenants(pool()):
        async with tenant_transaction(pool(), tenant.id, readonly=True) as conn:
            head = await conn.fetchrow(
                "SELECT seq, row_hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
                tenant.id,
            )
            anchored = await conn.fetchval(
                "SELECT max(anchored_at) FROM audit_anchor WHERE tenant_id = $1 AND kind = 'anchor'", tenant.id
            )
        tenants.append({
            "slug": tenant.slug,
            "total_rows": head["seq"] if head else 0,
            "head": head["row_hash"].hex() if head else None,
            "last_anchor_at": anchored.strftime("%Y-%m-%dT%H:%M:%SZ") if anchored else None,
        })
    return jsonify({"tenants": tenants})
