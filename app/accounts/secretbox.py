"""Secrets encrypted at rest with the application key (AES-256-GCM).

Each ciphertext is bound to what it belongs to (the associated data names the
tenant, the user and the purpose), so a value copied to another row does not
decrypt. Layout: 12-byte random nonce, then ciphertext and tag. The tenant's
own data key replaces the application key when tenant keys arrive.
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def seal(key: bytes, plaintext: bytes, *context: object) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(context))


def unseal(key: bytes, sealed: bytes, *context: object) -> bytes:
    """The plaintext; cryptography.exceptions.InvalidTag if anything was changed."""
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], _aad(context))


def _aad(context: tuple[object, ...]) -> bytes:
    return "\x1f".join(str(part) for part in context).encode()
