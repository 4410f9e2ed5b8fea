"""The audit page: the chain's verdict and its anchoring state, for those who read the audit trail (audit.read).

The verdict is the API's (app.audit.verify), from the latest anchor by default,
every row on request. Beside it, what a tenant must be able to see without
asking an operator: the latest anchors and whether their tokens verify, any
chain discontinuity, and an authority that is down (attempts, since when, next
attempt, last error). The bundle download (audit_bundle.download) is linked
when the app has it.
"""

from __future__ import annotations

from quart import Blueprint, current_app, g, request, url_for

from app.audit import walk_limits
from app.audit.anchor_check import anchoring_state, authority
from app.audit.verify import verify_tenant
from app.db import tenant_transaction
from app.jobs import JOBS
from app.jobs.health import for_tenant_admins, job_health
from app.views import pool, settings
from app.web import render
from app.web.guards import requires

blueprint = Blueprint("audit_page", __name__, url_prefix="/audit")

ANCHOR_JOB = "audit-anchor"
BUNDLE = "audit_bundle.download"


@blueprint.get("")
@requires("audit.read")
async def index():
    full = request.args.get("full", "") == "1"
    configured = settings()
    # A long walk is counted like the API's (app.audit.walk_limits), per person: past the limit the
    # page still shows the anchors and the authority, with why there is no verdict this time.
    allowed = await walk_limits.walk_allowed(pool(), configured, g.tenant.id, full=full, asker=("user", g.user.id))
    verdict = await verify_tenant(pool(), g.tenant.id, configured, full=full) if allowed else None
    async with tenant_transaction(pool(), g.tenant.id, readonly=True) as conn:
        state = await anchoring_state(conn, g.tenant.id, authority(configured))
    [job] = [for_tenant_admins(j) for j in await job_health(pool(), [j for j in JOBS if j.name == ANCHOR_JOB])]
    response = await render(
        "audit/index.html", verdict=verdict, state=state, job=job, full=full, refused=walk_limits.TOO_MANY,
        authority_url=bool(configured.tsa_url), ca_file=configured.tsa_ca_file is not None,
        bundle_url=url_for(BUNDLE) if BUNDLE in current_app.view_functions else None,
        status=200 if allowed else 429)
    if not allowed:
        response.headers["Retry-After"] = str(walk_limits.RETRY_AFTER)
    return response
