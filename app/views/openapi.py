"""GET /api/openapi.json: the description of the JSON API, public (it holds no data, only the API's shape)."""

from __future__ import annotations

from quart import Blueprint, current_app, jsonify

from app.openapi import document as build

blueprint = Blueprint("openapi", __name__, url_prefix="/api")


@blueprint.get("/openapi.json")
async def document():
    return jsonify(build(current_app))
