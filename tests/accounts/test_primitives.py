"""Passwords, TOTP and sealed secrets, each rule on its own."""

from __future__ import annotations

import asyncio
import threading
import time

import pyotp
import pytest
from argon2 import PasswordHasher
from cryptography.exceptions import InvalidTag

from app.accounts import passwords, secretbox, totp


@pytest.mark.parametrize("password, problem", [
    ("short pass1", "at least 12"),
    ("password1234", "too common"),
    ("Qwertyuiop!!", "too common"),
    ("aaaaaaaaaaaaaaaa", "too common"),
    ("jane.doe-is-secure-99", "email"),
    ("violet kettle orbit 9", None),
])
def test_new_password_rules(password, problem):
    found = passwords.password_problem(password, email="jane.doe@example.com")
    assert (found is None) if problem is None else (problem in found.lower())


def test_argon2id_and_rehash_when_parameters_change():
    stored = passwords.hash_password("violet kettle orbit 9")
    assert stored.startswith("$argon2id$") and not passwords.needs_rehash(stored)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("violet kettle orbit 9")
    assert passwords.verify_password(old, "violet kettle orbit 9") and passwords.needs_rehash(old)
    assert not passwords.verify_password(None, "anything at all")
    assert not passwords.verify_password(stored, "x" * (passwords.MAX_LENGTH + 1))


def test_totp_accepts_one_step_of_drift_and_never_the_same_step_twice():
    secret = totp.new_secret()
    now = time.time()
    current = int(now // 30)
    gen = pyotp.TOTP(secret)
    for offset, accepted in ((-2, False), (-1, True), (0, True), (1, True), (2, False)):
        code = gen.at(now + 30 * offset)
        assert (totp.accepted_step(secret, code, last_step=None, now=now) is not None) is accepted, offset
    assert totp.accepted_step(secret, gen.at(now), last_step=current, now=now) is None  # replay
    assert totp.accepted_step(secret, gen.at(now - 30), last_step=current, now=now) is None  # older after newer
    assert totp.accepted_step(secret, "12345", last_step=None, now=now) is None


def test_sealed_secrets_open_only_in_their_place():
    key = bytes(range(32))
    sealed = secretbox.seal(key, b"JBSWY3DPEHPK3PXP", "totp", "tenant-a", "user-1")
    assert b"JBSWY3DP" not in sealed
    assert secretbox.unseal(key, sealed, "totp", "tenant-a", "user-1") == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(InvalidTag):
        secretbox.unseal(key, sealed, "totp", "tenant-a", "user-2")
    with pytest.raises(InvalidTag):
        secretbox.unseal(bytes(32), sealed, "totp", "tenant-a", "user-1")


def test_qr_code_is_svg_without_script_or_style():
    svg = totp.qr_svg(totp.provisioning_uri(totp.new_secret(), "a@example.com"))
    assert svg.startswith("<svg") and "<script" not in svg and "style=" not in svg


async def test_no_more_password_hashes_run_at_once_than_there_are_hashers(monkeypatch):
    """Each Argon2 hash holds 64 MiB while it runs: a burst of sign-ins waits for a hasher, it does not add up."""
    stored = passwords.hash_password("violet kettle orbit 9")
    running, most = 0, 0
    lock = threading.Lock()
    real = passwords.hasher

    class Slow:
        def verify(self, *args):
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            return real.verify(*args)

    monkeypatch.setattr(passwords, "hasher", Slow())
    results = await asyncio.gather(*(passwords.verified(stored, "violet kettle orbit 9") for _ in range(8)))
    assert results == [True] * 8
    assert most == passwords.HASHERS == 2
