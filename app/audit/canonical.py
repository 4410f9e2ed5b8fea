"""RFC 8785 (JCS) on the Python side, for recording and for the verifier.

The `rfc8785` package is the reference. `canonical_data`, which the verifier
runs on every row, adds a fast path: orjson parses the text, the numbers it
would print unlike JCS are swapped for their JCS text (doubles, as ECMAScript's
Number::toString writes them, and integers beyond 2**53 - 1, which JSON reads
as doubles), and orjson's sorted, compact output is then byte for byte JCS:
strings are escaped the same way, and keys sort in code-point order, which is
UTF-16 order unless a key holds a character at or above U+E000. Objects with
such keys, and whatever orjson cannot parse or print, go to rfc8785.
tests/audit/test_canonical.py checks the fast path against rfc8785.
"""

from __future__ import annotations

import json
import re

import orjson
import rfc8785

MAX_SAFE_INTEGER = 2**53 - 1

_HIGH_CHAR = re.compile("[\ue000-\U0010ffff]")
_SORTED = orjson.OPT_SORT_KEYS


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


def double(value: float) -> str:
    """A finite double as ECMAScript's Number::toString writes it (RFC 8785 3.2.2.3).

    Both it and Python's repr write the shortest digits that read back as the
    same double; they differ only in when they switch to an exponent, and in
    repr's ".0" on integral values and "-0.0".
    """
    if value == 0:
        return "0"
    text = repr(value)
    mantissa, exponent_mark, exponent = text.partition("e")
    if not exponent_mark:
        return text[:-2] if text.endswith(".0") else text
    power = int(exponent)
    if power >= 21 or power <= -7:
        return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"
    # repr used an exponent for 1e-5 and 1e-6 (power -5, -6) or 1e16..1e20; ECMAScript does not.
    sign = "-" if value < 0 else ""
    digits = mantissa.lstrip("-").replace(".", "")
    if power > 0:
        return sign + digits + "0" * (power + 1 - len(digits))
    return sign + "0." + "0" * (-power - 1) + digits


def _as_jcs_numbers(container: dict | list, keys_may_reorder: bool) -> bool:
    """Swap, in place, every number orjson would print unlike JCS for its JCS text.

    False, with the work half done, when an object has a key at or above U+E000:
    orjson would sort it in code-point order, JCS wants UTF-16 order.
    """
    stack = [container]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            if keys_may_reorder and _HIGH_CHAR.search("".join(node)):
                return False
            items = node.items()
        else:
            items = enumerate(node)
        for key, item in items:
            kind = type(item)
            if kind is str or item is None or kind is bool:
                continue
            if kind is int:
                if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                    continue
                node[key] = orjson.Fragment(double(float(item)))
            elif kind is float:
                node[key] = orjson.Fragment(double(item))
            elif item:
                stack.append(item)
    return True


def _reference(text: str) -> bytes:
    return rfc8785.dumps(_decode_as_doubles(text))


def canonical_data(text: str) -> bytes:
    """UTF-8 JCS of JSON text as PostgreSQL prints jsonb."""
    try:
        value = orjson.loads(text)
        if type(value) is dict and text.isascii():
            # Most data: one flat object of strings and integers JSON reads exactly.
            for item in value.values():
                if type(item) is not str and not (
                    type(item) is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER
                ):
                    break
            else:
                return orjson.dumps(value, option=_SORTED)
        holder = value if type(value) is dict or type(value) is list else [value]
        if _as_jcs_numbers(holder, not text.isascii() and _HIGH_CHAR.search(text) is not None):
            jcs = orjson.dumps(holder, option=_SORTED)
            return jcs if holder is value else jcs[1:-1]
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass  # nested deeper than orjson reads or writes, or a number beyond a double
    return _reference(text)


def json_string(text: str) -> bytes:
    """A JSON string as JCS writes it: only " \\ and controls escaped, UTF-8."""
    return orjson.dumps(text)
