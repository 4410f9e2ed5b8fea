"""Checking stored anchors: may a verification start from one?

An anchor (audit_anchor, kind 'anchor') is usable when its TimeStampToken
verifies for its row_hash under the authority's roots (EXCEPTAO_TSA_CA_FILE,
app.audit.tokens.check_token) and the anchored seq still holds that row_hash.
With no CA file configured the token's signature cannot be checked; then its
message imprint must still be the anchored row_hash, and the status says the
signature was not checked, so nobody mistakes it for a verified one. A CA file
configured but unreadable fails every token: a broken trust setting must be
loud, not a quiet downgrade to an unchecked signature.

Shared by the verifier (app.audit.verify) and the audit page, which shows the
latest anchors with their status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID

import asyncpg
from asn1crypto import cms
from cryptography import x509

from app.audit.tokens import TokenInvalid, check_token, load_roots

log = logging.getLogger(__name__)

VERIFIED = "verified"
SIGNATURE_NOT_CHECKED = "signature_not_checked"
INVALID = "invalid"

# How many anchors, newest first, are looked at for a usable one: past that a
# flood of bad rows only earns a full walk.
LOOK_BACK = 100


@dataclass(frozen=True)
class Authority:
    """The roots anchors are checked against; `roots` None: no CA file configured."""

    roots: list[x509.Certificate] | None = None
    problem: str | None = None  # a CA file configured but unreadable


NO_AUTHORITY = Authority()


def authority(settings) -> Authority:
    """The authority's roots from settings.tsa_ca_file, read each time (a renewed file counts at once)."""
    path: Path | None = settings.tsa_ca_file
    if path is None:
        return NO_AUTHORITY
    try:
        return Authority(roots=load_roots(Path(path).read_bytes()))
    except (OSError, TokenInvalid) as exc:
        log.error("the TSA certificate file %s cannot be used: %s", path, exc)
        # The verdict is public: the reason without the server's paths, which the log has.
        return Authority(problem="the authority's certificates (EXCEPTAO_TSA_CA_FILE) cannot be read; "
                                 "the server log says why")


@dataclass(frozen=True)
class TokenStatus:
    status: str                 # VERIFIED | SIGNATURE_NOT_CHECKED | INVALID
    gen_time: datetime | None   # the authority's time in the token, when it could be read
    why: str | None = None      # for INVALID and SIGNATURE_NOT_CHECKED


def check_anchor_token(token: bytes | None, row_hash: bytes, auth: Authority) -> TokenStatus:
    """The status of an anchor's token for its row_hash under `auth`."""
    if token is None:
        return TokenStatus(INVALID, None, "the anchor has no token")
    if auth.problem:
        return TokenStatus(INVALID, _gen_time(token), auth.problem)
    if auth.roots is not None:
        try:
            facts = check_token(token, row_hash, auth.roots)
        except TokenInvalid as exc:
            return TokenStatus(INVALID, _gen_time(token), str(exc))
        return TokenStatus(VERIFIED, facts.gen_time)
    try:
        info = cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"].parsed
        imprint = info["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        hashed = imprint["hashed_message"].native
        gen_time = info["gen_time"].native
    except Exception as exc:  # asn1crypto parses lazily: any malformed part surfaces here
        return TokenStatus(INVALID, None, f"not a TimeStampToken: {exc}")
    if algorithm != "sha256" or hashed != row_hash:
        return TokenStatus(INVALID, gen_time, "the token's message imprint is not the anchored row_hash")
    return TokenStatus(SIGNATURE_NOT_CHECKED, gen_time,
                       "no authority certificate configured (EXCEPTAO_TSA_CA_FILE): the imprint matches, "
                       "the signature was not checked")


def _gen_time(token: bytes) -> datetime | None:
    try:
        return cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"].parsed["gen_time"].native
    except Exception:
        return None


@dataclass(frozen=True)
class CheckedAnchor:
    seq: int
    row_hash: bytes
    anchored_at: datetime
    token: TokenStatus
    on_chain: bool              # the anchored seq still holds row_hash

    @property
    def usable(self) -> bool:
        return self.on_chain and self.token.status != INVALID

    @property
    def trouble(self) -> str | None:
        """The verdict's reason when this, the latest anchor, is not usable."""
        if self.token.status == INVALID:
            return "anchor_token_invalid"
        return None if self.on_chain else "anchor_not_on_chain"

    def as_json(self) -> dict:
        return {
            "seq": self.seq,
            "row_hash": self.row_hash.hex(),
            "anchored_at": _utc(self.anchored_at),
            "gen_time": _utc(self.token.gen_time),
            "token": self.token.status,
            "token_note": self.token.why,
            "on_chain": self.on_chain,
        }


def _utc(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at else None


ANCHORS = """
SELECT a.seq, a.row_hash, a.anchored_at, a.tsa_token, l.row_hash AS chain_hash
  FROM audit_anchor a
  LEFT JOIN audit_log l ON l.tenant_id = a.tenant_id AND l.seq = a.seq
 WHERE a.tenant_id = $1 AND a.kind = 'anchor'
 ORDER BY a.anchored_at DESC
 LIMIT $2
"""


async def latest_anchors(conn: asyncpg.Connection, tenant_id: UUID, auth: Authority,
                         limit: int = LOOK_BACK) -> list[CheckedAnchor]:
    """The tenant's newest anchors, newest first, each checked (inside a tenant transaction)."""
    return [CheckedAnchor(seq=r["seq"], row_hash=bytes(r["row_hash"]), anchored_at=r["anchored_at"],
                          token=check_anchor_token(r["tsa_token"] and bytes(r["tsa_token"]), bytes(r["row_hash"]),
                                                   auth),
                          on_chain=r["chain_hash"] is not None and bytes(r["chain_hash"]) == bytes(r["row_hash"]))
            for r in await conn.fetch(ANCHORS, tenant_id, limit)]


async def latest_and_usable(conn: asyncpg.Connection, tenant_id: UUID,
                            auth: Authority) -> tuple[CheckedAnchor | None, CheckedAnchor | None]:
    """The latest anchor, and the latest usable one (None if none of the last LOOK_BACK is)."""
    checked: list[CheckedAnchor] = []
    # Newest first, a few at a time: nearly always the first one is usable.
    for limit in (1, LOOK_BACK):
        checked = checked + (await latest_anchors(conn, tenant_id, auth, limit))[len(checked):]
        usable = next((a for a in checked if a.usable), None)
        if usable is not None or len(checked) < limit:
            break
    return (checked[0] if checked else None), usable


async def discontinuity_after(conn: asyncpg.Connection, tenant_id: UUID, after: datetime | None):
    """The latest chain_discontinuity row recorded after `after` (any, when None), or None."""
    return await conn.fetchrow(
        "SELECT seq, anchored_at, detail FROM audit_anchor WHERE tenant_id = $1 AND kind = 'chain_discontinuity'"
        " AND ($2::timestamptz IS NULL OR anchored_at > $2) ORDER BY anchored_at DESC LIMIT 1",
        tenant_id, after)


@dataclass(frozen=True)
class AnchoringState:
    """What the audit page shows of a tenant's anchoring: its anchors, discontinuities and retry state."""

    anchors: list[CheckedAnchor]            # newest first
    discontinuities: list[asyncpg.Record]   # seq, anchored_at, found_row_hash; newest first
    retry: asyncpg.Record | None            # attempts, first_failed_at, next_attempt_at, last_error


async def anchoring_state(conn: asyncpg.Connection, tenant_id: UUID, auth: Authority, *,
                          shown: int = 10) -> AnchoringState:
    """The tenant's latest `shown` anchors, every chain_discontinuity, and the authority retry state."""
    return AnchoringState(
        anchors=await latest_anchors(conn, tenant_id, auth, shown),
        discontinuities=await conn.fetch(
            "SELECT seq, anchored_at, row_hash, detail->>'found_row_hash' AS found_row_hash FROM audit_anchor"
            " WHERE tenant_id = $1 AND kind = 'chain_discontinuity' ORDER BY anchored_at DESC", tenant_id),
        retry=await conn.fetchrow(
            "SELECT attempts, first_failed_at, next_attempt_at, last_error FROM audit_anchor_retry"
            " WHERE tenant_id = $1", tenant_id),
    )
