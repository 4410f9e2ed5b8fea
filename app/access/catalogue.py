"""The capability catalogue: fixed in code, mirrored in the `capability` table (a test compares them)."""

from __future__ import annotations

CAPABILITIES: dict[str, str] = {
    "exception.submit": "Submit policy exceptions and edit their own drafts",
    "exception.read": "See exceptions, their history and decisions",
    "exception.review": "Review submitted exceptions and ask for changes",
    "exception.approve": "Approve or reject exceptions (needs a recent second factor)",
    "risk.manage": "Own and update entries in the risk register",
    "evidence.read": "Open and download evidence files",
    "audit.read": "Read the audit trail and export it for verification",
    "report.export": "Export reports as PDF or CSV",
    "vendor.manage": "Manage vendors and send self-assessment links",
    "asset.manage": "Manage the asset inventory and its remediation tracking",
    "integration.manage": "Connect and configure integrations (SSO, Slack, Jira, NVD)",
    "tenant.admin": "Manage users, groups, roles and org units of the workspace",
}


def meaning(code: str) -> str:
    return CAPABILITIES[code]


def unknown(codes) -> list[str]:
    """The codes in `codes` that are not in the catalogue."""
    return sorted(set(codes) - CAPABILITIES.keys())
