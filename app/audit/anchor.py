"""Anchors: each tenant's chain head, timestamped by an RFC 3161 authority.

The "audit-anchor" job (app/jobs) calls `anchor_tenant` for every tenant. When
the head moved since the last anchor, it sends the authority a TimeStampReq
(RFC 3161 section 2.4.1) whose message imprint is the head's row_hash, itself
SHA-256(prev_hash || JCS(record)), so the token attests to that row's exact
bytes; and it appends the TimeStampToken with the anchored seq and hash to
audit_anchor (sql/0016_audit_anchor_job.sql). `openssl ts -verify -digest
<row_hash hex> -token_in -in token.der -CAfile ...` checks a stored token.

Before anchoring, the last anchored row must still be on the chain, with the
hash that was anchored. If not, the chain was rewritten behind the app's back:
a `chain_discontinuity` row is recorded (once per broken anchor), a CRITICAL
log line is written, and the tenant's run fails on every round until someone
looks; the rewritten head is not anchored, which would vouch for it.

Before a new head is anchored, the job vouches for it: it walks every row
since the previous anchor (from that anchor's row_hash, or from the genesis
for the first anchor) with the verifier's walk, and refuses to anchor a range
that does not verify: the run fails and a CRITICAL line names the seq. The
previous anchor's token must check too (app.audit.anchor_check), so a forged
anchor row cannot become the base of a real one. An anchor therefore stands
for a whole chain that verified, which is what lets verification start from
the latest anchor by default (app.audit.verify).

An authority that is down or answers wrongly fails the tenant's run with the
reason; the attempt is kept in audit_anchor_retry and retried after a backoff
(10 minutes, doubling, at most 6 hours). A tenant waiting for its retry fails
the run too, so the health page shows it until an anchor succeeds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from asn1crypto import tsp

from app.audit.anchor_check import INVALID, authority, latest_and_usable
from app.audit.verify import GENESIS, walk_ranges
from app.config import Settings
from app.db import tenant_transaction

log = logging.getLogger(__name__)

RETRY_FIRST = timedelta(minutes=10)
RETRY_LONGEST = timedelta(hours=6)
TSA_TIMEOUT_SECONDS = 30
MAX_REPLY_BYTES = 1 << 20


class AnchorFailed(RuntimeError):
    """The tenant's head could not be anchored this round."""


class AuthorityUnavailable(AnchorFailed):
    pass


class ChainDiscontinuity(AnchorFailed):
    pass


class ChainUnverified(AnchorFailed):
    """The rows to be anchored, or the anchor they follow, do not verify: anchoring them would vouch for them."""


@dataclass(frozen=True)
class Timestamp:
    token: bytes  # the TimeStampToken, DER (a CMS SignedData ContentInfo)
    gen_time: datetime


def timestamp_request(digest: bytes, nonce: int) -> bytes:
    """A DER TimeStampReq for a SHA-256 digest, asking for the signer's certificate."""
    return tsp.TimeStampReq({
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
        "nonce": nonce,
        "cert_req": True,
    }).dump()


def read_timestamp_reply(reply: bytes, digest: bytes, nonce: int) -> Timestamp:
    """The token of a granted TimeStampResp for exactly this digest and nonce, or AuthorityUnavailable.

    The signature is left to `openssl ts -verify` and the offline bundle
    verifier, which hold the authority's certificates; here the answer is
    checked to be about what was asked.
    """
    try:
        resp = tsp.TimeStampResp.load(reply)
        status = resp["status"]["status"].native
        if status not in ("granted", "granted_with_mods"):
            text = resp["status"]["status_string"].native
            raise AuthorityUnavailable(f"the authority refused: {status} {text or ''}".strip())
        token = resp["time_stamp_token"]
        info = token["content"]["encap_content_info"]["content"].parsed
        imprint = info["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        hashed = imprint["hashed_message"].native
        token_nonce = info["nonce"].native
        gen_time = info["gen_time"].native
        der = token.dump()
    except AuthorityUnavailable:
        raise
    except Exception as exc:  # asn1crypto parses lazily: any malformed part surfaces here
        raise AuthorityUnavailable(f"the authority's answer is not a TimeStampResp: {exc}") from exc
    if algorithm != "sha256" or hashed != digest:
        raise AuthorityUnavailable("the token's message imprint is not the head's hash")
    if token_nonce != nonce:
        raise AuthorityUnavailable("the token's nonce is not the request's")
    return Timestamp(token=der, gen_time=gen_time)


def _post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/timestamp-query"})
    with urllib.request.urlopen(request, timeout=TSA_TIMEOUT_SECONDS) as answer:
        if answer.headers.get_content_type() != "application/timestamp-reply":
            raise AuthorityUnavailable(f"the authority answered {answer.headers.get_content_type()}, "
                                       "not application/timestamp-reply")
        return answer.read(MAX_REPLY_BYTES)


def _shown(url: str) -> str:
    """The URL without credentials or query: the error is stored, mailed and shown to the tenant."""
    parts = urllib.parse.urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname or ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


async def request_timestamp(url: str, digest: bytes) -> Timestamp:
    """Ask the authority at `url` to timestamp a SHA-256 digest (RFC 3161 over HTTP, section 3.4)."""
    nonce = secrets.randbits(63)
    try:
        reply = await asyncio.to_thread(_post, url, timestamp_request(digest, nonce))
    except AuthorityUnavailable:
        raise
    except (OSError, urllib.error.URLError) as exc:  # refused, timed out, HTTP error status
        raise AuthorityUnavailable(f"the authority at {_shown(url)} is unreachable: {exc}") from exc
    return read_timestamp_reply(reply, digest, nonce)


async def anchor_tenant(pool: asyncpg.Pool, tenant_id: UUID, now: datetime, settings: Settings) -> dict[str, int]:
    """Anchor the tenant's head if it moved; counts of anchored and unchanged heads."""
    if not settings.tsa_url:
        return {"no_authority": 1}
    async with tenant_transaction(pool, tenant_id) as conn:
        head = await conn.fetchrow(
            "SELECT seq, row_hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1", tenant_id)
        last = await conn.fetchrow(
            "SELECT seq, row_hash, anchored_at FROM audit_anchor WHERE tenant_id = $1 AND kind = 'anchor'"
            " ORDER BY anchored_at DESC LIMIT 1", tenant_id)
        # Recorded in this transaction, raised once it has committed.
        broken = await _discontinuity(conn, tenant_id, last) if last is not None else None
        unchanged = head is None or (
            last is not None and (head["seq"], head["row_hash"]) == (last["seq"], last["row_hash"]))
        retry = await conn.fetchrow(
            "SELECT attempts, next_attempt_at, last_error FROM audit_anchor_retry WHERE tenant_id = $1", tenant_id)
    if broken:
        raise ChainDiscontinuity(broken)
    if unchanged:
        return {"unchanged": 1}
    if retry is not None and retry["next_attempt_at"] > now:
        raise AuthorityUnavailable(
            f"anchoring waits until {retry['next_attempt_at']:%Y-%m-%dT%H:%M:%SZ} after {retry['attempts']} "
            f"failed attempt(s), last: {retry['last_error']}")

    await vouch(pool, tenant_id, head, settings)
    # No connection is held while the authority is asked.
    try:
        stamp = await request_timestamp(settings.tsa_url, bytes(head["row_hash"]))
    except AuthorityUnavailable as exc:
        attempts = (retry["attempts"] if retry else 0) + 1
        async with tenant_transaction(pool, tenant_id) as conn:
            await conn.execute(
                "INSERT INTO audit_anchor_retry (tenant_id, attempts, first_failed_at, next_attempt_at, last_error)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (tenant_id) DO UPDATE SET attempts = EXCLUDED.attempts,"
                " next_attempt_at = EXCLUDED.next_attempt_at, last_error = EXCLUDED.last_error",
                tenant_id, attempts, now, now + min(RETRY_FIRST * 2 ** min(attempts - 1, 10), RETRY_LONGEST),
                str(exc)[:1000])
        raise AuthorityUnavailable(f"{exc} (attempt {attempts})") from exc

    async with tenant_transaction(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO audit_anchor (tenant_id, seq, row_hash, tsa_token, detail) VALUES ($1, $2, $3, $4, $5::jsonb)",
            tenant_id, head["seq"], head["row_hash"], stamp.token,
            json.dumps({"gen_time": stamp.gen_time.strftime("%Y-%m-%dT%H:%M:%SZ")}))
        await conn.execute("DELETE FROM audit_anchor_retry WHERE tenant_id = $1", tenant_id)
    return {"anchored": 1}


async def vouch(pool: asyncpg.Pool, tenant_id: UUID, head: asyncpg.Record, settings: Settings) -> None:
    """Raise ChainUnverified (and log CRITICAL) unless the rows since the previous anchor, up to `head`, verify."""
    async with tenant_transaction(pool, tenant_id, isolation="repeatable_read", readonly=True) as conn:
        latest, _ = await latest_and_usable(conn, tenant_id, authority(settings))
        if latest is not None and latest.token.status == INVALID:
            _unverified(f"the previous anchor (seq {latest.seq}) has a token that does not verify: {latest.token.why}",
                        tenant_id)
        start, prev = (latest.seq + 1, latest.row_hash) if latest is not None else (1, GENESIS)
        # A first anchor of a long chain walks it in worker processes, as verification does.
        broken = [r for r in await walk_ranges(conn, tenant_id, start, head["seq"], prev,
                                               batch=settings.verify_batch, workers=settings.verify_workers,
                                               dsn=settings.runtime_database_url)
                  if r.broken_at is not None]
        walked_head = await conn.fetchval("SELECT row_hash FROM audit_log WHERE tenant_id = $1 AND seq = $2",
                                          tenant_id, head["seq"])
    if broken:
        first = min(broken, key=lambda r: r.broken_at)
        _unverified(f"seq {first.broken_at} does not verify ({first.reason}); "
                    f"seq {start}..{head['seq']} not anchored", tenant_id)
    if walked_head is None or bytes(walked_head) != bytes(head["row_hash"]):
        _unverified(f"seq {head['seq']} no longer holds the head's row_hash", tenant_id)


def _unverified(what: str, tenant_id: UUID):
    message = f"chain of tenant {tenant_id} not anchored: {what}"
    log.critical(message)
    raise ChainUnverified(message)


async def _discontinuity(conn: asyncpg.Connection, tenant_id: UUID, last: asyncpg.Record) -> str | None:
    """None while the last anchored row is on the chain; else what broke, recorded once and logged."""
    found = await conn.fetchval(
        "SELECT row_hash FROM audit_log WHERE tenant_id = $1 AND seq = $2", tenant_id, last["seq"])
    if found is not None and bytes(found) == bytes(last["row_hash"]):
        return None
    what = "is missing" if found is None else f"has row_hash {bytes(found).hex()}"
    message = (f"chain discontinuity in tenant {tenant_id}: anchored seq {last['seq']} "
               f"(row_hash {bytes(last['row_hash']).hex()}, anchored {last['anchored_at']:%Y-%m-%dT%H:%M:%SZ}) {what}")
    log.critical(message)
    already = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM audit_anchor WHERE tenant_id = $1 AND kind = 'chain_discontinuity'"
        " AND anchored_at > $2)", tenant_id, last["anchored_at"])
    if not already:
        await conn.execute(
            "INSERT INTO audit_anchor (tenant_id, seq, row_hash, kind, detail)"
            " VALUES ($1, $2, $3, 'chain_discontinuity', jsonb_build_object('found_row_hash', $4::text))",
            tenant_id, last["seq"], last["row_hash"], bytes(found).hex() if found is not None else None)
    return message
