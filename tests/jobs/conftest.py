"""Fixtures of the job tests: a real SMTP server (aiosmtpd) and an operator to receive the alerts."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from app.operator.accounts import create_operator
from tests.views import test_reset

smtp = test_reset.smtp  # a real SMTP server on loopback: (inbox, port)


@pytest.fixture
async def operator_email(admin, settings):
    email = f"op-{uuid.uuid4().hex[:8]}@example.com"
    await create_operator(admin, settings.key(), email, "Alert Reader")
    return email


@pytest.fixture
def mail_settings(settings, smtp):
    return replace(settings, smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_password="smtp-secret-never-mailed")


def mails(inbox, to: str, job: str):
    return [m for m in inbox.messages if m["To"] == to and job in m["Subject"]]
