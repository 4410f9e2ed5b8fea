"""RFC 8785 (JCS) on the Python side, for recording and for the verifier.

The `rfc8785` package is the reference. `canonical_data_text` adds a fast path
for the common case, JSON text with no fractions or exponents, no integers
beyond 15 digits and no character at or above U+E000: there the standard
library's sorted, compact output is byte for byte JCS (tests/audit/test_canonical.py
checks that against rfc8785). Everything else goes to rfc8785.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring  # no ASCII escaping, same escapes as JCS

import rfc8785

MAX_SAFE_INTEGER = 2**53 - 1

_HIGH_CHAR = re.compile("[\ue000-\U0010ffff]")
_LONG_DIGITS = re.compile(r"\d{16}")
_compact_sorted = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode


class NotCanonicalizable(ValueError):
    """A value RFC 8785 cannot represent; it is refused, never hashed differently."""


class _SeenFloat(Exception):
    pass


def _refuse_float(text: str) -> float:
    raise _SeenFloat


def _int_or_double(text: str) -> int | float:
    # JSON numbers are IEEE-754 doubles (RFC 8785 3.2.2.3); PostgreSQL keeps
    # 1e21 as the integer 1000000000000000000000, which is that double.
    value = int(text)
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else float(text)


def canonical(value: object) -> str:
    """JCS text of a Python JSON value, or NotCanonicalizable."""
    check_storable(value)
    try:
        return rfc8785.dumps(value).decode("utf-8")
    except rfc8785.CanonicalizationError as exc:
        raise NotCanonicalizable(f"not representable in RFC 8785 JSON: {exc}") from exc


def check_storable(value: object) -> None:
    """PostgreSQL jsonb cannot hold U+0000; refuse it here with a clear message."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise NotCanonicalizable("strings may not contain U+0000")
        elif isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str) and "\x00" in key:
                    raise NotCanonicalizable("keys may not contain U+0000")
                stack.append(sub)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def canonical_data_text(text: str) -> str:
    """JCS text of JSON text as PostgreSQL prints jsonb."""
    if text == "{}":
        return text
    if not _HIGH_CHAR.search(text) and not _LONG_DIGITS.search(text):
        try:
            return _compact_sorted(json.loads(text, parse_float=_refuse_float))
        except _SeenFloat:
            pass
    value = json.loads(text, parse_int=_int_or_double)
    return rfc8785.dumps(value).decode("utf-8")


def json_string(text: str) -> str:
    return encode_basestring(text)
