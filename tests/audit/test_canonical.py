"""The in-database canonicaliser agrees with the rfc8785 package byte for byte.

The verifier recomputes hashes outside the database, so the two must agree on
every `data` value: numbers, escapes and key order included.
"""

from __future__ import annotations

import asyncio
import json
import math

import asyncpg
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.audit.canonical import NotCanonicalizable, canonical, canonical_data, json_string

MAX = 2**53 - 1

# Text PostgreSQL can store: no U+0000, no lone surrogates.
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
tricky_keys = st.sampled_from(["\ue000", "\U0001f600", "\uffff", "\U00010000", "a", "A", "é", "", "\x7f", "\u2028"])
keys = st.one_of(text, tricky_keys)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-MAX, max_value=MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e21, 1e-7, 0.1, 4.5, 333333333.33333329, -0.0, 5e-324, 1.7976931348623157e308, 1e16]),
    text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


class Database:
    """One connection and loop for a whole property test."""

    def __init__(self, url: str):
        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(url))

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def canonical(self, json_text: str) -> tuple[str, str]:
        """(jcs() of the value, the value as PostgreSQL prints jsonb)."""
        row = self.run(self.conn.fetchrow("SELECT jcs(v), v::text FROM (SELECT $1::jsonb AS v) s", json_text))
        return row[0], row[1]

    def close(self):
        self.run(self.conn.close())
        self.loop.close()


@pytest.fixture(scope="module")
def db(app_url):
    database = Database(app_url)  # the app role may call jcs(); no privileges needed
    yield database
    database.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_database_and_verifier_agree_with_rfc8785(db, value):
    expected = rfc8785.dumps(value).decode("utf-8")
    in_database, as_stored = db.canonical(json.dumps(value, ensure_ascii=False))
    assert in_database == expected
    # The verifier canonicalises data from the text PostgreSQL gives back.
    assert canonical_data(as_stored).decode() == expected


@pytest.mark.parametrize(
    "json_text",
    [
        "1e21", "1E21", "1e-7", "0.1", "4.50", "333333333.33333329", "-0", "-0.0", "0",
        "9007199254740991", "-9007199254740991", "1e16", "123456789012345680000", "5e-324",
        "1.7976931348623157e308", "0.000001", "0.0000001", "1e20", "100", "-1.5e-10",
        "true", "false", "null", "[]", "{}", '""',
        '{"\\ue000": 1, "\\ud83d\\ude00": 2}',
        '{"b": [1, {"z": null, "a": []}], "a": {}}',
        '"\\u0001\\u001f\\b\\t\\n\\f\\r\\"\\\\/\\u007f\\u2028\\ud83d\\ude00é"',
        '{"\\u20ac": 1, "\\r": 2, "\\ufb33": 3, "1": 4, "\\u0080": 5, "\\ud83d\\ude00": 6, "\\u00f6": 7}',
    ],
)
def test_rfc8785_examples(db, json_text):
    # I-JSON: a number is a double, however it is written.
    value = json.loads(json_text, parse_int=lambda s: int(s) if abs(int(s)) <= MAX else float(s))
    expected = rfc8785.dumps(value).decode("utf-8")
    in_database, as_stored = db.canonical(json_text)
    assert in_database == expected
    assert canonical_data(as_stored).decode() == expected


def test_key_order_is_utf16_not_code_point(db):
    # U+E000 is below U+1F600 as a code point, above it as UTF-16 (0xD83D ...).
    in_database, _ = db.canonical('{"\\ue000": 1, "\\ud83d\\ude00": 2}')
    assert in_database == '{"\U0001f600":2,"\ue000":1}'


@pytest.mark.parametrize("json_text", ["9007199254740993", "22517997598961670", "-123456789012345678901234567890"])
def test_integers_beyond_2_53_are_the_nearest_double(db, json_text):
    expected = rfc8785.dumps(float(json_text)).decode("utf-8")
    in_database, as_stored = db.canonical(json_text)
    assert in_database == expected
    assert canonical_data(as_stored).decode() == expected


@pytest.mark.parametrize(
    "json_text, message",
    [
        ("1e400", "outside the range"),
        ("-1e400", "outside the range"),
        ("1e-400", "outside the range"),
    ],
)
def test_database_refuses_what_a_double_cannot_hold(db, json_text, message):
    with pytest.raises(asyncpg.NumericValueOutOfRangeError, match=message):
        db.canonical(json_text)


@pytest.mark.parametrize(
    "value",
    [2**53, -(2**53), math.nan, math.inf, "\ud800", "nul \x00 inside", {"k\x00": 1}, {1: "non-string key"}, b"bytes"],
)
def test_python_side_refuses_what_jcs_cannot_represent(value):
    with pytest.raises(NotCanonicalizable):
        canonical(value)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=2**53, max_value=10**22).map(float), st.booleans())
def test_large_integral_doubles_print_shortest(db, value, negative):
    # PostgreSQL prints some of these as their exact integer (17+ digits);
    # RFC 8785 wants the shortest digits that read back as the same double.
    value = -value if negative else value
    in_database, _ = db.canonical(json.dumps(value))
    assert in_database == rfc8785.dumps(value).decode("utf-8")


@settings(max_examples=500, deadline=None)
@given(text)
def test_the_verifiers_string_escaping_is_rfc8785(value):
    # Actors, actions and targets are written with json_string, not rfc8785.
    assert json_string(value) == rfc8785.dumps(value)
