"""Quarantine decisions and the tenant's DLP policy.

Who decides on a quarantined file: someone holding exception.approve (the
people who decide which risks the organisation accepts also decide whether
a file holding card numbers or national ids may stay as evidence) and
evidence.read (they must be able to open what they judge), never on their
own upload (four eyes), with a second factor from the last five minutes
(the view's @step_up, as for approvals). The decision is final: released,
the file can be downloaded like any other; rejected, its stored object is
deleted and the row stays as the record of what was refused and why.

The DLP policy is the tenant administrator's (tenant.admin, in the whole
organisation), also behind a fresh second factor: turning findings into
mere warnings lowers every uploader's protection at once.
"""

from __future__ import annotations

import logging
from uuid import UUID

import asyncpg

from app.access import Access
from app.audit import AuditAction, Target, record
from app.audit.events import user_actor
from app.evidence import POLICIES, Evidence, dlp_policy, get_evidence
from app.storage import ObjectStore

log = logging.getLogger("exceptao.evidence")
DECISIONS = {"release": "released", "reject": "rejected"}
COMMENT_LIMIT = 5000


class DecisionRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def may_decide(access: Access | None, evidence: Evidence) -> bool:
    return (access is not None and access.has("exception.approve") and access.has("evidence.read")
            and evidence.uploaded_by != access.user_id)


def may_download(access: Access | None, evidence: Evidence) -> bool:
    """Stored and released files: whoever holds evidence.read; a quarantined one: only who may decide on it."""
    if access is None or not access.has("evidence.read"):
        return False
    return evidence.downloadable or (evidence.state == "quarantined" and may_decide(access, evidence))


async def decide(conn: asyncpg.Connection, access: Access, evidence_id: UUID, decision: str, comment: str) -> Evidence:
    """Release or reject a quarantined file, with the reviewer's comment; DecisionRefused says why not."""
    if decision not in DECISIONS:
        raise DecisionRefused(422, "Choose release or reject.")
    comment = comment.strip()
    if not comment:
        raise DecisionRefused(422, "Say why: a comment is required for a quarantine decision.")
    if len(comment) > COMMENT_LIMIT or "\x00" in comment:
        raise DecisionRefused(422, f"A comment has at most {COMMENT_LIMIT} characters and no NUL character.")
    # The row lock makes two reviewers deciding at once take turns: the second finds it decided.
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM evidence WHERE id = $1 FOR UPDATE)", evidence_id):
        raise DecisionRefused(404, "There is no such evidence.")
    evidence = await get_evidence(conn, evidence_id)
    if evidence.state != "quarantined":
        raise DecisionRefused(409, f"This file is {evidence.state_label}; there is nothing left to decide.")
    if not may_decide(access, evidence):
        raise DecisionRefused(403, "You cannot decide on this file: it needs exception.approve and evidence.read, "
                                   "and nobody decides on their own upload.")
    await conn.execute(
        "INSERT INTO evidence_decision (tenant_id, evidence_id, decision, decided_by, comment)"
        " SELECT tenant_id, id, $2, $3, $4 FROM evidence WHERE id = $1",
        evidence_id, decision, access.user_id, comment)
    await conn.execute("UPDATE evidence SET state = $2 WHERE id = $1", evidence_id, DECISIONS[decision])
    action = AuditAction.EVIDENCE_RELEASE if decision == "release" else AuditAction.EVIDENCE_REJECT
    await record(conn, action, actor=user_actor(access.user_id), target=Target("evidence", str(evidence_id)),
                 data={**evidence.parent.audit_data, "sha256": evidence.sha256_hex,
                       "findings": {f.kind: f.count for f in evidence.findings}})
    return await get_evidence(conn, evidence_id)


async def discard_rejected(store: ObjectStore, evidence: Evidence) -> None:
    """After a rejection has committed: delete the stored object. A failure leaves an encrypted orphan, logged."""
    try:
        await store.delete(evidence.object_name)
    except Exception:
        log.error("rejected evidence %s: its object %s could not be deleted; remove it by hand",
                  evidence.id, evidence.object_name, exc_info=True)


async def set_dlp_policy(conn: asyncpg.Connection, user_id: UUID, policy: str) -> bool:
    """Set the tenant's DLP policy; False when it was already that."""
    if policy not in POLICIES:
        raise DecisionRefused(422, "Choose block, quarantine or accept with a warning.")
    before = await dlp_policy(conn)
    if before == policy:
        return False
    await conn.execute(
        "INSERT INTO evidence_settings (tenant_id, dlp_policy) VALUES (app_current_tenant(), $1)"
        " ON CONFLICT (tenant_id) DO UPDATE SET dlp_policy = excluded.dlp_policy, updated_at = now()", policy)
    await record(conn, AuditAction.DLP_POLICY_UPDATE, actor=user_actor(user_id), data={"from": before, "to": policy})
    return True
