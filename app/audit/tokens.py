"""Checking a stored RFC 3161 TimeStampToken against the authority's certificates.

No database and nothing of the app's: the offline bundle verifier uses this
module as it is. `rfc3161-client` does the CMS work (the signature, the
signer's certificate chain up to a trusted root, its critical timeStamping
extended key usage) for any key type; it reads a TimeStampResp, so the stored
token is wrapped in a granted one first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms, tsp
from cryptography import x509
from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response


class TokenInvalid(ValueError):
    """The token does not vouch for this digest under these roots; the message says why."""


@dataclass(frozen=True)
class TokenFacts:
    gen_time: datetime
    serial: int
    authority: str  # the signer certificate's subject, as RFC 4514 text


def load_roots(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file; an empty or unreadable file is refused."""
    try:
        roots = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TokenInvalid(f"the authority's certificates are not PEM: {exc}") from exc
    if not roots:
        raise TokenInvalid("no certificate for the authority")
    return roots


def check_token(token: bytes, digest: bytes, roots: list[x509.Certificate]) -> TokenFacts:
    """The facts of a TimeStampToken (DER) whose signature, chain and imprint hold for `digest`.

    `digest` is the SHA-256 the token must timestamp (an anchored row_hash).
    """
    try:
        content = cms.ContentInfo.load(token, strict=True)
        response = tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": content}).dump()
        decoded = decode_timestamp_response(response)
    except Exception as exc:  # asn1crypto and the Rust parser raise their own kinds
        raise TokenInvalid(f"not a TimeStampToken: {exc}") from exc
    if decoded.tst_info.message_imprint.hash_algorithm != x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1"):
        raise TokenInvalid("the token's imprint is not SHA-256")
    verifier = VerifierBuilder()
    for root in roots:
        verifier = verifier.add_root_certificate(root)
    try:
        verifier.build().verify(decoded, digest)
    except VerificationError as exc:
        raise TokenInvalid(f"the token does not verify: {exc}") from exc
    signer = decoded.signed_data.signer_infos.pop()
    authority = next((x509.load_der_x509_certificate(der).subject.rfc4514_string()
                      for der in decoded.signed_data.certificates
                      if x509.load_der_x509_certificate(der).serial_number == signer.serial_number), "")
    return TokenFacts(gen_time=decoded.tst_info.gen_time, serial=decoded.tst_info.serial_number,
                      authority=authority)
