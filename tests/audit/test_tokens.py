"""A stored TimeStampToken checked against the authority's certificates (app/audit/tokens.py)."""

from __future__ import annotations

import hashlib

import pytest

from app.audit.anchor import read_timestamp_reply, timestamp_request
from app.audit.tokens import TokenInvalid, check_token, load_roots

DIGEST = hashlib.sha256(b"a chain head").digest()


@pytest.fixture(scope="module")
def token(tsa) -> bytes:
    return read_timestamp_reply(tsa.reply(timestamp_request(DIGEST, 42)), DIGEST, 42).token


def test_a_token_verifies_under_the_authority_root_and_names_the_signer(tsa, token):
    facts = check_token(token, DIGEST, load_roots(tsa.ca.read_bytes()))
    assert facts.authority == "CN=Exceptao Test TSA"
    assert facts.gen_time.tzinfo is not None


def test_a_token_for_another_digest_is_refused(tsa, token):
    with pytest.raises(TokenInvalid, match="does not verify"):
        check_token(token, hashlib.sha256(b"another head").digest(), load_roots(tsa.ca.read_bytes()))


def test_a_token_with_a_damaged_signature_is_refused(tsa, token):
    damaged = token[:-8] + bytes(8)
    with pytest.raises(TokenInvalid):
        check_token(damaged, DIGEST, load_roots(tsa.ca.read_bytes()))


def test_a_token_from_an_authority_not_trusted_is_refused(tsa, token):
    # The signer's own certificate is not a root: the chain must end at the CA given.
    with pytest.raises(TokenInvalid, match="does not verify"):
        check_token(token, DIGEST, load_roots(tsa.cert.read_bytes()))


def test_garbage_is_not_a_token(tsa):
    with pytest.raises(TokenInvalid, match="not a TimeStampToken"):
        check_token(b"\x30\x03\x02\x01\x00", DIGEST, load_roots(tsa.ca.read_bytes()))


def test_a_file_without_certificates_is_refused():
    with pytest.raises(TokenInvalid):
        load_roots(b"")
