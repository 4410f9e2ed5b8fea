"""Blueprints, one per area, wired into the app in one place."""

from __future__ import annotations

from quart import Quart, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from app.web import render


def register_blueprints(app: Quart) -> None:
    from app.views.account import blueprint as account
    from app.views.admin import blueprint as admin
    from app.views.api import blueprint as api
    from app.views.audit_api import blueprint as audit_api
    from app.views.audit_page import blueprint as audit_page
    from app.views.audit_bundle import blueprint as audit_bundle
    from app.views.auth import blueprint as auth
    from app.views.erasure import blueprint as erasure
    from app.views.evidence import blueprint as evidence
    from app.views.exceptions import blueprint as exceptions
    from app.views.exceptions_api import blueprint as exceptions_api
    from app.views.health import blueprint as health
    from app.views.openapi import blueprint as openapi
    from app.views.operator import blueprint as operator
    from app.views.passkeys import blueprint as passkeys
    from app.views.reset import blueprint as reset
    from app.views.risks import blueprint as risks
    from app.views.tenant_export import blueprint as tenant_export
    from app.views.tokens import blueprint as tokens

    app.register_blueprint(health)
    app.register_blueprint(audit_api)
    app.register_blueprint(audit_page)
    app.register_blueprint(audit_bundle)
    app.register_blueprint(auth)
    app.register_blueprint(account)
    app.register_blueprint(reset)
    app.register_blueprint(passkeys)
    app.register_blueprint(tokens)
    app.register_blueprint(admin)
    app.register_blueprint(erasure)
    app.register_blueprint(exceptions)
    app.register_blueprint(risks)
    app.register_blueprint(evidence)
    app.register_blueprint(tenant_export)
    app.register_blueprint(api)
    app.register_blueprint(exceptions_api)
    app.register_blueprint(openapi)
    app.register_blueprint(operator)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException):
        # The JSON API answers errors in JSON, never with an HTML page or a trace.
        if request.path.startswith("/api/"):
            return jsonify({"error": error.name, "message": error.description}), error.code
        if error.code == 404:
            return await render("error.html", title="Not found", message="There is no such page.", status=404)
        return await render("error.html", title=error.name, message=error.description, status=error.code)


def pool():
    return current_app.extensions["pool"]


def settings():
    return current_app.config["EXCEPTAO"]
