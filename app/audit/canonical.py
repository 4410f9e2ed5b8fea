"""RFC 8785 (JCS) on the Python side, for recording and for the verifier.

The `rfc8785` package is the reference. `canonical_data` adds a fast path for
the common case, JSON with no floats, no integers beyond 15 digits and no
character at or above U+E000: there orjson's sorted, compact output is byte for
byte JCS (strings escaped the same way, keys in code-point order, which is
UTF-16 order below U+E000), seven times faster than the standard library.
tests/audit/test_canonical.py checks both paths against rfc8785. Everything
else goes to rfc8785.
"""

from __future__ import annotations

import json
import re

import orjson
import rfc8785

MAX_SAFE_INTEGER = 2**53 - 1

_HIGH_CHAR = re.compile("[\ue000-\U0010ffff]")
_LONG_DIGITS = re.compile(r"\d{16}")


class NotCanonicalizable(ValueError):
    """A value RFC 8785 cannot represent; it is refused, never hashed differently."""


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


_decode_as_doubles = json.JSONDecoder(parse_int=_int_or_double).decode


def _has_float(value: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            return True
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return False


def canonical_data(text: str) -> bytes:
    """UTF-8 JCS of JSON text as PostgreSQL prints jsonb (an object or array)."""
    if text == "{}":
        return b"{}"
    if not _HIGH_CHAR.search(text) and not _LONG_DIGITS.search(text):
        value = orjson.loads(text)
        if not _has_float(value):
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return rfc8785.dumps(_decode_as_doubles(text))


def json_string(text: str) -> bytes:
    """A JSON string as JCS writes it: only " \\ and controls escaped, UTF-8."""
    return orjson.dumps(text)
