"""Recording audit events: the only way application code writes to the chain.

Every change of state is followed, in the same transaction, by one call to
`record`. It calls the database function audit_append (owned by the
audit_writer role). When the transaction commits, the event enters the chain
and the chain trigger assigns seq, occurred_at and the hashes; when it rolls
back, the event goes with the change it recorded.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass

import asyncpg

from app.audit.canonical import NotCanonicalizable, canonical

_ACTOR = re.compile(r"^(user|system|vendor|operator):[A-Za-z0-9_.:-]+$")


class AuditAction(str, enum.Enum):
    """Event names, `domain:subject:verb`."""

    TENANT_CREATE = "tenant:tenant:create"
    USER_CREATE = "identity:user:create"
    SIGNIN = "identity:session:create"
    SIGNIN_FAIL = "identity:signin:fail"
    SIGNOUT = "identity:session:end"
    SESSION_REVOKE = "identity:session:revoke"
    SESSIONS_REVOKE_ALL = "identity:session:revoke_all"
    STEP_UP = "identity:session:step_up"
    FACTOR_FAIL = "identity:factor:fail"
    TOTP_ENROL = "identity:totp:enrol"
    TOTP_REMOVE = "identity:totp:remove"
    RECOVERY_CODES_CREATE = "identity:recovery_codes:create"
    RECOVERY_CODE_USE = "identity:recovery_code:use"
    PASSKEY_REGISTER = "identity:passkey:register"
    PASSKEY_REMOVE = "identity:passkey:remove"
    PASSWORD_RESET_REQUEST = "identity:password_reset:request"
    PASSWORD_RESET = "identity:password:reset"
    ACCOUNT_LOCK = "identity:account:lock"
    SCOPE_SWITCH = "identity:session:scope"
    TOKEN_CREATE = "access:token:create"
    TOKEN_REVOKE = "access:token:revoke"
    USER_INVITE = "access:user:invite"
    USER_DISABLE = "access:user:disable"
    USER_ENABLE = "access:user:enable"
    USER_ERASE = "access:user:erase"
    EVERYONE_PSEUDONYMISE = "access:everyone:pseudonymise"
    ERASURE_EXPORT = "access:erasure:export"
    GROUP_CREATE = "access:group:create"
    GROUP_UPDATE = "access:group:update"
    GROUP_DELETE = "access:group:delete"
    GROUP_MEMBER_ADD = "access:group_member:add"
    GROUP_MEMBER_REMOVE = "access:group_member:remove"
    ROLE_CREATE = "access:role:create"
    ROLE_UPDATE = "access:role:update"
    ROLE_DELETE = "access:role:delete"
    ASSIGNMENT_CREATE = "access:assignment:create"
    ASSIGNMENT_DELETE = "access:assignment:delete"
    ORG_UNIT_CREATE = "access:org_unit:create"
    ORG_UNIT_UPDATE = "access:org_unit:update"
    ORG_UNIT_DELETE = "access:org_unit:delete"
    EXCEPTION_CREATE = "exception:exception:create"
    EXCEPTION_TRANSITION = "exception:exception:transition"
    EXCEPTION_EDIT = "exception:exception:edit"
    EXCEPTION_ATTEST = "exception:exception:attest"
    EXCEPTION_REMIND = "exception:exception:remind"
    EXCEPTION_EXPORT = "exception:list:export"
    RISK_CREATE = "risk:risk:create"
    RISK_UPDATE = "risk:risk:update"
    RISK_MIRROR = "risk:risk:mirror"
    EVIDENCE_UPLOAD = "evidence:evidence:upload"
    EVIDENCE_FINDING = "evidence:finding:record"
    EVIDENCE_BLOCK = "evidence:upload:block"
    EVIDENCE_RELEASE = "evidence:evidence:release"
    EVIDENCE_REJECT = "evidence:evidence:reject"
    EVIDENCE_DOWNLOAD = "evidence:evidence:download"
    EVIDENCE_MISMATCH = "evidence:evidence:mismatch"
    DLP_POLICY_UPDATE = "evidence:dlp_policy:update"
    TENANT_SUSPEND = "tenant:tenant:suspend"
    TENANT_RESTORE = "tenant:tenant:restore"
    TENANT_END = "tenant:subscription:end"
    TENANT_RESUME = "tenant:subscription:resume"
    TENANT_DELETE_START = "tenant:deletion:start"
    TENANT_DELETE = "tenant:tenant:delete"
    KEY_CREATE = "crypto:data_key:create"
    KEY_ROTATE = "crypto:kek:rotate"
    AUDIT_BUNDLE_EXPORT = "audit:bundle:export"
    TENANT_EXPORT_REQUEST = "tenant:export:request"
    TENANT_EXPORT_START = "tenant:export:start"
    TENANT_EXPORT_DONE = "tenant:export:finish"
    TENANT_EXPORT_FAIL = "tenant:export:fail"
    TENANT_EXPORT_DOWNLOAD = "tenant:export:download"
    TENANT_EXPORT_EXPIRE = "tenant:export:expire"


@dataclass(frozen=True)
class Target:
    type: str
    id: str


@dataclass(frozen=True)
class Pii:
    """Who did it, kept outside the chain; the chain holds a salted commitment."""

    email: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    def as_json(self) -> str:
        if self.ip is not None:
            ipaddress.ip_address(self.ip)  # ValueError for anything but an address
        return json.dumps({"email": self.email, "ip": self.ip, "ua": self.user_agent})


def user_actor(user_id: object) -> str:
    return f"user:{user_id}"


def operator_actor(operator_id: object) -> str:
    return f"operator:{operator_id}"


def system_actor(job: str) -> str:
    return f"system:{job}"


async def record(
    conn: asyncpg.Connection,
    action: AuditAction,
    *,
    actor: str,
    target: Target | None = None,
    data: dict | None = None,
    pii: Pii | None = None,
) -> None:
    """Record one event for the current tenant's chain, which it joins at commit.

    `conn` must be inside a tenant transaction; the caller owns it, so the event
    commits or rolls back with the change it records.
    """
    action = AuditAction(action)
    if not _ACTOR.match(actor):
        raise ValueError(f"actor {actor!r} is not user:<id>, system:<job>, vendor:<id> or operator:<id>")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise NotCanonicalizable("event data must be a JSON object")
    canonical(data)  # refuse what RFC 8785 cannot represent before it reaches the trigger
    await conn.execute(
        "SELECT audit_append($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)",
        actor,
        action.value,
        target.type if target else None,
        str(target.id) if target else None,
        json.dumps(data, ensure_ascii=False, allow_nan=False),
        pii.as_json() if pii else None,
        secrets.token_bytes(32) if pii else None,
    )
