"""The in-database canonicaliser agrees with the rfc8785 package byte for byte.

The verifier recomputes hashes outside the database, so the two must agree on
every `data` value: numbers, escapes and key order included. The verifier's
fast path (orjson, with doubles and large integers rewritten) is checked
against rfc8785 here too, with and without a database in between.
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

from app.audit import canonical as canonical_module
from app.audit.canonical import NotCanonicalizable, canonical, canonical_data, double, json_string

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
# Doubles where ECMAScript and Python's repr part ways (exponent thresholds, ".0", -0).
edge_doubles = st.sampled_from([
    1e21, 9.999999999999999e20, 1e20, 1e16, 9999999999999998.0, 1e15, 1e-7, 9.999999999999999e-8, 1e-6,
    1.2345e-6, 1e-5, 1e-4, 0.1, 4.5, 333333333.33333329, -0.0, 0.0, 5e-324, 2.2250738585072014e-308,
    1.7976931348623157e308, 2.0**53, 2.0**60, 123456789012345680000.0, 1.5e300, 3.0,
])
doubles = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    edge_doubles,
    edge_doubles.map(lambda f: -f),
    st.integers(min_value=-(10**22), max_value=10**22).map(float),
    st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(1, 10**17), st.integers(-30, 30)),
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


def reference(json_text: str) -> bytes:
    """What an ordinary RFC 8785 library makes of JSON text, reading every number as I-JSON does."""
    return rfc8785.dumps(json.loads(json_text, parse_int=lambda s: int(s) if abs(int(s)) <= MAX else float(s)))


@settings(max_examples=3000, deadline=None)
@given(doubles)
def test_doubles_print_as_ecmascript(value):
    assert double(value).encode() == rfc8785.dumps(value)


# Number literals as anyone might write them: long mantissas, leading zeros in
# fractions, exponents, integers beyond 2**53 and beyond 64 bits.
number_literals = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{whole}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.integers(1, 10**30).map(str)),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=30).map(lambda d: "." + d)),
    st.one_of(st.just(""), st.builds(lambda e, x: f"{e}{x}", st.sampled_from(["e", "E", "e+", "e-", "E-"]),
                                     st.integers(0, 340))),
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(number_literals, min_size=1, max_size=4))
def test_verifier_reads_numbers_as_rfc8785_does(literals):
    json_text = '{"n": [' + ", ".join(literals) + "]}"
    try:
        expected = reference(json_text)
    except rfc8785.CanonicalizationError:  # beyond a double (1e400): refused either way
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_data(json_text)
    else:
        assert canonical_data(json_text) == expected


@settings(max_examples=2000, deadline=None)
@given(json_values, st.booleans())
def test_verifier_agrees_with_rfc8785_without_a_database(value, as_postgresql_prints):
    # json.dumps writes doubles as repr does (1e+16, 1e-07): other text than PostgreSQL's.
    separators = (", ", ": ") if as_postgresql_prints else (",", ":")
    json_text = json.dumps(value, ensure_ascii=False, separators=separators)
    assert canonical_data(json_text) == reference(json_text)


@pytest.mark.parametrize(
    "json_text, fast",
    [
        ('{"n": 1, "note": "bench"}', True),
        ('{"risk": {"score": 0.42857142857142855, "tiny": 0.000000003}, "big": 9007199254740993}', True),
        ('{"note": "déploiement 🚀 reporté"}', True),  # high characters in values keep code-point order
        ('{"\\ue000": 1, "\\ud83d\\ude00": 2}', False),  # ...in keys they do not
        ('{"a": {"\\ufb33": 1, "\\ud83d\\ude00": 2}}', False),
    ],
)
def test_fast_path_is_taken_where_it_should_be(monkeypatch, json_text, fast):
    # The property tests above compare outputs; this keeps them comparing the fast path.
    stored = json.dumps(json.loads(json_text), ensure_ascii=False)
    expected = reference(stored)
    slow = []
    monkeypatch.setattr(canonical_module, "_reference", lambda text: slow.append(text) or rfc8785.dumps(json.loads(text)))
    assert canonical_data(stored) == expected
    assert (not slow) is fast


@pytest.mark.parametrize("depth", [1, 254, 255, 300])
def test_deep_nesting_beyond_what_orjson_writes(depth):
    json_text = '{"a": ' * depth + "[0.5]" + "}" * depth
    assert canonical_data(json_text) == reference(json_text)
