"""WebAuthn passkeys (fido2): registration, sign-in as a second factor or without a password.

The relying party is the tenant's host name, so a passkey made for one tenant
is no use at another. Passkeys are discoverable (resident) and user
verification is required. The ceremony state (its challenge) travels in a
cookie sealed with the application key, bound to the tenant and the purpose,
and good for five minutes.
"""

from __future__ import annotations

import json
import time
from uuid import UUID

import asyncpg
from cryptography.exceptions import InvalidTag
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestedCredentialData, AuthenticationResponse, PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity,
    ResidentKeyRequirement, UserVerificationRequirement,
)

from app.accounts import secretbox
from app.accounts.users import User

STATE_SECONDS = 300


class PasskeyError(ValueError):
    """The ceremony failed; the message is safe to show."""


def server(rp_id: str) -> Fido2Server:
    return Fido2Server(PublicKeyCredentialRpEntity(id=rp_id, name="Exceptao"))


def seal_state(key: bytes, tenant_id: UUID, purpose: str, state: dict) -> str:
    payload = json.dumps({"state": state, "at": time.time()}).encode()
    return secretbox.seal(key, payload, "webauthn", tenant_id, purpose).hex()


def open_state(key: bytes, tenant_id: UUID, purpose: str, sealed: str | None) -> dict:
    try:
        payload = json.loads(secretbox.unseal(key, bytes.fromhex(sealed or ""), "webauthn", tenant_id, purpose))
    except (ValueError, InvalidTag):
        raise PasskeyError("The passkey request expired. Try again.") from None
    if time.time() - payload["at"] > STATE_SECONDS:
        raise PasskeyError("The passkey request expired. Try again.")
    return payload["state"]


async def stored(conn: asyncpg.Connection, user_id: UUID) -> list[AttestedCredentialData]:
    rows = await conn.fetch("SELECT credential FROM webauthn_credential WHERE user_id = $1", user_id)
    return [AttestedCredentialData(r["credential"]) for r in rows]


async def registration_options(conn: asyncpg.Connection, rp_id: str, user: User) -> tuple[dict, dict]:
    handle = await conn.fetchval("SELECT webauthn_user_id FROM app_user WHERE id = $1", user.id)
    options, state = server(rp_id).register_begin(
        PublicKeyCredentialUserEntity(id=handle, name=user.email, display_name=user.display_name),
        credentials=await stored(conn, user.id),
        resident_key_requirement=ResidentKeyRequirement.REQUIRED,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return dict(options), state


async def register(conn: asyncpg.Connection, rp_id: str, tenant_id: UUID, user: User, state: dict,
                   response: dict, name: str) -> UUID:
    try:
        auth_data = server(rp_id).register_complete(state, response)
    except (ValueError, KeyError, TypeError) as error:
        raise PasskeyError(f"The passkey could not be registered: {error}") from None
    credential = auth_data.credential_data
    return await conn.fetchval(
        "INSERT INTO webauthn_credential (tenant_id, user_id, credential_id, credential, sign_count, name)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, credential_id) DO NOTHING RETURNING id",
        tenant_id, user.id, credential.credential_id, bytes(credential), auth_data.counter, name,
    ) or _already()


def _already():
    raise PasskeyError("This passkey is registered already.")


async def authentication_options(conn: asyncpg.Connection | None, rp_id: str, user_id: UUID | None) -> tuple[dict, dict]:
    """For a known user (second factor) their passkeys; for passwordless sign-in, any discoverable one."""
    credentials = await stored(conn, user_id) if user_id else None
    options, state = server(rp_id).authenticate_begin(
        credentials=credentials, user_verification=UserVerificationRequirement.REQUIRED)
    return dict(options), state


async def authenticate(conn: asyncpg.Connection, rp_id: str, state: dict, response: dict,
                       user_id: UUID | None) -> UUID:
    """The user the assertion proves, after checking signature, user verification and sign count."""
    try:
        assertion = AuthenticationResponse.from_dict(response)
    except (ValueError, KeyError, TypeError):
        raise PasskeyError("The passkey answer could not be read.") from None
    row = await conn.fetchrow(
        "SELECT w.id, w.user_id, w.credential, w.sign_count, u.webauthn_user_id FROM webauthn_credential w"
        " JOIN app_user u ON u.id = w.user_id WHERE w.credential_id = $1", assertion.raw_id)
    if row is None or (user_id is not None and row["user_id"] != user_id):
        raise PasskeyError("This passkey is not registered here.")
    handle = assertion.response.user_handle
    if handle is not None and handle != row["webauthn_user_id"]:
        raise PasskeyError("This passkey belongs to another account.")
    try:
        server(rp_id).authenticate_complete(state, [AttestedCredentialData(row["credential"])], response)
    except ValueError as error:
        raise PasskeyError(f"The passkey was not accepted: {error}") from None
    counter = assertion.response.authenticator_data.counter
    # A counter that does not grow means a cloned authenticator (both zero: one that keeps no counter).
    if (counter or row["sign_count"]) and counter <= row["sign_count"]:
        raise PasskeyError("This passkey's signature counter went backwards; it may have been cloned.")
    await conn.execute("UPDATE webauthn_credential SET sign_count = $2, last_used_at = now() WHERE id = $1",
                       row["id"], counter)
    return row["user_id"]
