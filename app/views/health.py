"""GET /healthz: 200 when the process is up and the database answers, 503 otherwise."""

from __future__ import annotations

import asyncio

from quart import Blueprint, jsonify

from app.views import pool

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
async def healthz():
    try:
        async with asyncio.timeout(2):
            await pool().fetchval("SELECT 1")
    except Exception:  # any failure to reach the database is "not healthy"
        return jsonify({"status": "unavailable", "database": "unreachable"}), 503
    return jsonify({"status": "ok", "database": "ok"})
