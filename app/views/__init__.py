"""Blueprints, one per area, wired into the app in one place."""

from __future__ import annotations

from quart import Quart, current_app, jsonify, request
from werkzeug.exceptions import HTTPException


def register_blueprints(app: Quart) -> None:
    from app.views.audit_api import blueprint as audit_api
    from app.views.health import blueprint as health

    app.register_blueprint(health)
    app.register_blueprint(audit_api)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException):
        # The JSON API answers errors in JSON, never with an HTML page or a trace.
        if request.path.startswith("/api/"):
            return jsonify({"error": error.name, "message": error.description}), error.code
        return error

    @app.after_request
    async def no_sniff(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def pool():
    return current_app.extensions["pool"]


def settings():
    return current_app.config["EXCEPTAO"]
