"""The tamper-evident audit chain: recording events and verifying the chain."""

from app.audit.events import AuditAction, Pii, Target, record

__all__ = ["AuditAction", "Pii", "Target", "record"]
