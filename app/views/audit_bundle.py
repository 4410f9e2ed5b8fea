"""The audit bundle download: the tenant's chain, anchors and tokens for an auditor (audit.read).

The file streams out of one database snapshot as it is read (app.audit.bundle),
never built in memory. Who took it and up to which seq is recorded before its
first byte; the bundle itself ends at the row before that record.
"""

from __future__ import annotations

from quart import Blueprint, current_app, g, request
from werkzeug.exceptions import MethodNotAllowed

from app.audit.bundle import BundleSummary, record_export, stream_bundle
from app.audit.events import user_actor
from app.views import pool, settings
from app.web.guards import requires

blueprint = Blueprint("audit_bundle", __name__, url_prefix="/audit")


@blueprint.get("/bundle")
@requires("audit.read")
async def download():
    if request.method == "HEAD":
        # Werkzeug answers HEAD wherever GET is routed; it would record a download nobody made.
        raise MethodNotAllowed(valid_methods=["GET"])
    tenant, user = g.tenant, g.user
    taken: list[BundleSummary] = []

    async def opened(summary: BundleSummary) -> None:
        await record_export(pool(), tenant.id, user_actor(user.id), summary)
        taken.append(summary)

    chunks = stream_bundle(pool(), tenant.id, settings(), opened=opened)
    # Run up to the first byte here, so a failure is an error page, not a cut-off file.
    first = await anext(chunks)

    async def body():
        yield first
        async for chunk in chunks:
            yield chunk

    response = current_app.response_class(body(), status=200, content_type="application/jsonl")
    name = f"audit-bundle-{tenant.slug}-seq{taken[0].head_seq or 0}.jsonl"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    # Quart cuts a response off after RESPONSE_TIMEOUT (60 s); a long chain takes longer to send.
    response.timeout = None
    return response
