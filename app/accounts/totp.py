"""Time-based one-time passwords (RFC 6238: SHA-1, 6 digits, 30-second steps).

A code is accepted for the current step and one step either side (clock
drift), and only for a step later than the last one accepted for that user, so
a code is never accepted twice, nor an older one after a newer.
"""

from __future__ import annotations

import hmac
import time

import pyotp
import segno

STEP_SECONDS = 30
DRIFT_STEPS = 1
ISSUER = "Exceptao"


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, as RFC 4226 recommends


def accepted_step(secret: str, code: str, *, last_step: int | None, now: float | None = None) -> int | None:
    """The time step `code` belongs to, if it is valid and unused; else None."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    matched = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared, in constant time, whatever matched before.
        if hmac.compare_digest(totp.generate_otp(step), code) and (last_step is None or step > last_step):
            matched = step
    return matched


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The URI as an SVG QR code, drawn on the server: no script, no inline style."""
    return segno.make(uri, error="m").svg_inline(scale=4, dark="#111", light="#fff", omitsize=False)
