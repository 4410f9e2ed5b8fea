"""Password hashing (Argon2id) and the rules a new password must meet.

Parameters: argon2-cffi's RFC 9106 "low memory" profile, Argon2id with
t=3 passes, m=64 MiB, p=4 lanes, a 16-byte salt and a 32-byte tag, about 50 ms
a hash here. A stored hash made with other parameters is replaced at the next
successful sign-in (`needs_rehash`).

Request code calls `verified` and `hashed`: they run the hash in a worker
thread, so its 50 ms of CPU do not stop the event loop and every other request
with it (argon2-cffi lets go of the GIL while it hashes, so the thread runs
beside the loop, on another core). The threads are their own, HASHERS of them:
each hash holds 64 MiB while it runs, so a burst of sign-ins queues for a
thread instead of taking 64 MiB per request at once (with the default executor
of six threads, 64 users signing in together took the app from 82 MB to 337 MB
in bench/http_load.py; more threads than cores would not sign anyone in
sooner).
"""

from __future__ import annotations

import asyncio
import string
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

MIN_LENGTH = 12
MAX_LENGTH = 1024  # hashing is costly: an unbounded input is a denial of service

hasher = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)

# Verified against when the account does not exist, so an unknown email costs
# the same time as a wrong password.
_DUMMY_HASH = hasher.hash("not a password anyone has")


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches; spends one Argon2 verification either way."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


HASHERS = 2
_hashers = ThreadPoolExecutor(max_workers=HASHERS, thread_name_prefix="argon2")


async def hashed(password: str) -> str:
    """hash_password, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_hashers, hash_password, password)


async def verified(stored_hash: str | None, password: str) -> bool:
    """verify_password, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_hashers, verify_password, stored_hash, password)


def needs_rehash(stored_hash: str) -> bool:
    return hasher.check_needs_rehash(stored_hash)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords from leaks, as shipped with zxcvbn (its Xato list)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


_PADDING = string.digits + string.punctuation + " "


def password_problem(password: str, *, email: str = "") -> str | None:
    """Why `password` may not be used, in words for the user; None when it may."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    lowered = password.lower()
    # "Password1234!" is "password" with padding: common all the same.
    stems = {lowered, lowered.strip(_PADDING), lowered.rstrip(_PADDING), lowered.lstrip(_PADDING)}
    if stems & common_passwords() or len(set(lowered)) <= 2:
        return "This password is too common; choose one that is not on lists of leaked passwords."
    local = email.partition("@")[0].lower()
    if len(local) >= 4 and local in lowered:
        return "Do not use your email address in your password."
    return None
