"""Envelope encryption: tenant data keys (keys), the key-encryption keys that wrap them (kek), their
rotation (rotation), and the chunked file format encrypted under a data key (stream)."""

from __future__ import annotations


class Tampered(ValueError):
    """Stored bytes are not what was encrypted for this tenant and this record: changed, cut, reordered or misplaced."""
