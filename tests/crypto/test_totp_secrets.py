"""TOTP secrets under the tenant's data key: new ones sealed there, old ones (the application key) resealed on use."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from app.accounts import factors, secretbox, totp
from app.accounts.users import by_id
from app.crypto.keys import current_key, forget_keys
from app.db import tenant_transaction
from tests.web import code_at, make_user


async def user_of(admin, tenant):
    email = await make_user(admin, tenant)
    return await admin.fetchval("SELECT id FROM app_user WHERE email = $1", email)


async def test_a_new_totp_secret_is_sealed_under_the_tenant_key(pool, admin, settings, tenant):
    user_id = await user_of(admin, tenant)
    async with tenant_transaction(pool, tenant.id) as conn:
        secret = await factors.pending_totp_secret(conn, settings, tenant.id, await by_id(conn, user_id))
        key = await current_key(conn, settings)
    row = await admin.fetchrow("SELECT totp_secret, totp_key_id FROM app_user WHERE id = $1", user_id)
    assert row["totp_key_id"] == key.id
    sealed = bytes(row["totp_secret"])
    assert secret.encode() not in sealed
    assert secretbox.unseal(key.key, sealed, "totp", tenant.id, user_id, key.id).decode() == secret
    with pytest.raises(InvalidTag):
        secretbox.unseal(settings.key(), sealed, "totp", tenant.id, user_id)

    forget_keys()
    async with tenant_transaction(pool, tenant.id) as conn:
        assert await factors.pending_totp_secret(conn, settings, tenant.id, await by_id(conn, user_id)) == secret
        assert await factors.check_totp(conn, settings, tenant.id, user_id, code_at(secret), enrolling=True)


async def test_a_secret_sealed_under_the_application_key_still_works_and_moves_to_the_tenant_key(
        pool, admin, settings, tenant):
    user_id = await user_of(admin, tenant)
    secret = totp.new_secret()
    legacy = secretbox.seal(settings.key(), secret.encode(), "totp", tenant.id, user_id)
    await admin.execute("UPDATE app_user SET totp_secret = $2, totp_enrolled_at = now() WHERE id = $1", user_id, legacy)

    async with tenant_transaction(pool, tenant.id) as conn:
        assert await factors.check_totp(conn, settings, tenant.id, user_id, code_at(secret, -1))
        key = await current_key(conn, settings)
    row = await admin.fetchrow("SELECT totp_secret, totp_key_id FROM app_user WHERE id = $1", user_id)
    assert row["totp_key_id"] == key.id and bytes(row["totp_secret"]) != legacy
    assert secretbox.unseal(key.key, bytes(row["totp_secret"]), "totp", tenant.id, user_id, key.id).decode() == secret

    async with tenant_transaction(pool, tenant.id) as conn:  # and on from there, under the tenant key
        assert await factors.check_totp(conn, settings, tenant.id, user_id, code_at(secret))
        assert not await factors.check_totp(conn, settings, tenant.id, user_id, code_at(secret))  # used already


async def test_a_sealed_secret_copied_to_another_user_does_not_open(pool, admin, settings, tenant):
    first, second = await user_of(admin, tenant), await user_of(admin, tenant)
    async with tenant_transaction(pool, tenant.id) as conn:
        secret = await factors.pending_totp_secret(conn, settings, tenant.id, await by_id(conn, first))
    await admin.execute(
        "UPDATE app_user SET (totp_secret, totp_key_id, totp_enrolled_at) ="
        " (SELECT totp_secret, totp_key_id, now() FROM app_user WHERE id = $1) WHERE id = $2", first, second)
    async with tenant_transaction(pool, tenant.id) as conn:
        with pytest.raises(InvalidTag):
            await factors.check_totp(conn, settings, tenant.id, second, code_at(secret))
