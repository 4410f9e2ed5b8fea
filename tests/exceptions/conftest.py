"""Fixtures of the exception tests: the people of an organisation, and a real SMTP server for reminder mail."""

from tests.exceptions.test_engine import people  # noqa: F401  (fixture)
from tests.views.test_reset import smtp  # noqa: F401  (fixture: aiosmtpd on loopback)
