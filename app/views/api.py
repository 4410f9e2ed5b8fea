"""The JSON API for scripts, signed in with a personal API token (`Authorization: Bearer`)."""

from __future__ import annotations

import json

from quart import Blueprint, abort, g, jsonify, request

from app.db import tenant_transaction
from app.views import pool
from app.web.guards import requires

blueprint = Blueprint("api", __name__, url_prefix="/api")

MAX_EVENTS = 1000
MAX_SEQ = 2**63 - 1  # audit_log.seq is a bigint


@blueprint.get("/me")
async def me():
    """Who this token speaks for, and what it may do now."""
    return jsonify({
        "tenant": g.tenant.slug,
        "user": {"id": str(g.user.id), "email": g.user.email},
        "token": g.token.as_json(),
        "scope": {"org_unit_id": str(g.access.scope.unit_id) if g.access.scope.unit_id else None,
                  "label": g.access.scope.label},
        "capabilities": sorted(g.access.capabilities),
    })


@blueprint.get("/audit/events")
@requires("audit.read")
async def audit_events():
    """The tenant's chain in order, `limit` rows after `after`: what an auditor re-hashes offline."""
    try:
        after = int(request.args.get("after", "0"))
        limit = int(request.args.get("limit", str(MAX_EVENTS)))
    except ValueError:
        abort(400, "after and limit are whole numbers")
    if not 0 <= after <= MAX_SEQ or not 1 <= limit <= MAX_EVENTS:  # a bigint cannot hold more than MAX_SEQ
        abort(400, f"after is 0 to {MAX_SEQ}; limit is 1 to {MAX_EVENTS}")
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        rows = await conn.fetch(
            """
            SELECT seq, occurred_at, actor, action, target_type, target_id, data::text AS data,
                   pii_commitment, hash_v, prev_hash, row_hash
              FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2
            """,
            after, limit)
    events = [{
        "seq": r["seq"], "at": r["occurred_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "actor": r["actor"],
        "action": r["action"],
        "target": {"type": r["target_type"], "id": r["target_id"]} if r["target_type"] else None,
        "data": json.loads(r["data"]), "pii": r["pii_commitment"].hex() if r["pii_commitment"] else None,
        "hash_v": r["hash_v"], "prev_hash": r["prev_hash"].hex(), "row_hash": r["row_hash"].hex(),
    } for r in rows]
    return jsonify({"events": events, "next_after": events[-1]["seq"] if events else None})
