"""The auditor's API: chain verification and the public chain status."""

from __future__ import annotations

from quart import Blueprint, abort, jsonify, request

from app.accounts import throttle
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


# Anyone may ask for a tenant's verdict, and a full walk costs about 5 s of the
# server's CPU per million rows (bench/README.md): so full walks are counted,
# per client address and tenant, and per tenant from all addresses together.
# The walk from the latest anchor stays unlimited, and an auditor who needs
# more full walks checks an audit bundle offline.
FULL_WALKS_PER_ADDRESS = throttle.Limit("verify-full-address", 6, 3600)
FULL_WALKS_PER_TENANT = throttle.Limit("verify-full-tenant", 30, 3600)
TOO_MANY_FULL_WALKS = ("Too many full walks of this chain in the last hour (at most {per_address} from one address, "
                       "{per_tenant} in all). The check from the latest anchor, without ?full=1, is not limited; "
                       "to check every row more often, export an audit bundle and verify it offline.")


@blueprint.get("/verify")
async def verify():
    """The verdict: from the latest anchor by default, every row with ?full=1; 200 intact, 422 not."""
    tenant = await requested_tenant()
    full = wants_full_walk()
    if full and not await _full_walk_allowed(tenant):
        response = jsonify({"error": "Too Many Requests", "message": TOO_MANY_FULL_WALKS.format(
            per_address=FULL_WALKS_PER_ADDRESS.hits, per_tenant=FULL_WALKS_PER_TENANT.hits)})
        response.status_code = 429
        response.headers["Retry-After"] = str(FULL_WALKS_PER_ADDRESS.seconds)
        return response
    verdict = await verify_tenant(pool(), tenant.id, settings(), full=full)
    return jsonify(verdict.as_json()), 200 if verdict.ok else 422


async def _full_walk_allowed(tenant: Tenant) -> bool:
    key = settings().secret_key
    return (await throttle.allow(pool(), key, FULL_WALKS_PER_ADDRESS, client_address(), tenant.id)
            and await throttle.allow(pool(), key, FULL_WALKS_PER_TENANT, tenant.id))


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
