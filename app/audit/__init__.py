"""The tamper-evident audit chain: recording events and verifying the chain.

The names below load app.audit.events (and with it asyncpg) on first use, not
on import of the package: the offline bundle verifier (app.audit.offline)
lives in this package and must run where no database code is loaded.
"""

from __future__ import annotations

import importlib

__all__ = ["AuditAction", "Pii", "Target", "record"]


def __getattr__(name: str):
    # PEP 562: `from app.audit import record` still works, loading events.py then.
    if name in __all__:
        return getattr(importlib.import_module("app.audit.events"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
