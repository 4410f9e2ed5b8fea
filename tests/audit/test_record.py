"""The verifier's hash input is prev_hash || JCS(record), record as DESIGN.md defines it.

The verifier writes the record through a byte template for speed; here it is
compared with the record built as a dict and canonicalised by rfc8785.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from uuid import UUID

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audit.verify import hash_input, second_prefix
from tests.audit.test_canonical import json_values, text

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def reference(prev_hash: bytes, tenant: UUID, seq: int, micros: int, actor: str, action: str,
              target: tuple[str, str] | None, data: object, pii: bytes | None) -> bytes:
    record = {
        "v": 1,
        "tenant": str(tenant),
        "seq": seq,
        "at": (EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": actor,
        "action": action,
        "target": {"type": target[0], "id": target[1]} if target else None,
        "data": data,
        "pii": pii.hex() if pii is not None else None,
    }
    return prev_hash + rfc8785.dumps(record)


@settings(max_examples=1000, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.uuids(),
    st.integers(min_value=1, max_value=2**53 - 1),
    # 2000-01-01 to 9999-12-31: the years strftime writes with four digits.
    st.integers(min_value=946_684_800_000_000, max_value=253_402_300_799_999_999),
    text,
    text,
    st.none() | st.tuples(text, text),
    st.dictionaries(text, json_values, max_size=4),
    st.none() | st.binary(min_size=32, max_size=32),
)
def test_hash_input_is_prev_hash_and_the_rfc8785_record(prev_hash, tenant, seq, micros, actor, action, target,
                                                        data, pii):
    second, micro = divmod(micros, 1_000_000)
    ttype, tid = target if target else (None, None)
    ours = hash_input(prev_hash, str(tenant).encode("ascii"), seq, second_prefix(second), micro, actor, action,
                      ttype, tid, json.dumps(data, ensure_ascii=False), pii)
    assert ours == reference(prev_hash, tenant, seq, micros, actor, action, target, data, pii)
