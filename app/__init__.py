"""Exceptao: policy exceptions on the record."""

from __future__ import annotations

from quart import Quart

from app.config import Settings


def create_app(settings: Settings | None = None) -> Quart:
    from dataclasses import replace

    from app.db import open_pool
    from app.jobs import start_scheduler, stop_scheduler
    from app.views import register_blueprints
    from app.web import init_app as init_web

    settings = settings or Settings.from_env()
    app = Quart(__name__, static_folder="../static", static_url_path="/static")
    app.config["EXCEPTAO"] = replace(settings, secret_key=settings.key())

    @app.before_serving
    async def open_database() -> None:
        app.extensions["pool"] = await open_pool(app.config["EXCEPTAO"])
        # The operator panel's own pool, as the operator role; only its views use it.
        if operator_url := app.config["EXCEPTAO"].operator_pool_url:
            app.extensions["operator_pool"] = await open_pool(app.config["EXCEPTAO"], operator_url,
                                                              name="exceptao-operator")
        if app.config["EXCEPTAO"].jobs:
            start_scheduler(app)

    @app.after_serving
    async def close_database() -> None:
        from app.audit.verify import shutdown_workers

        await stop_scheduler(app)
        shutdown_workers()
        for name in ("pool", "operator_pool"):
            pool = app.extensions.pop(name, None)
            if pool is not None:
                await pool.close()

    init_web(app)
    register_blueprints(app)
    return app
