"""Outgoing mail over SMTP (settings in app.config), sent off the event loop.

`send` sends now (a reset link the person is waiting for). `queue` puts a
mail in the tenant's outbox inside the caller's transaction, so it leaves
only if that transaction commits; the outbox job (app/jobs/outbox.py)
delivers it.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from uuid import UUID

import asyncpg

from app.config import Settings


def _send(settings: Settings, message: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(message)


async def send(settings: Settings, to: str, subject: str, body: str, *, message_id: str | None = None) -> None:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    if message_id:  # a stable id lets the receiving side recognise a mail sent again after a crash
        message["Message-ID"] = message_id
    message.set_content(body)
    await asyncio.to_thread(_send, settings, message)


async def queue(conn: asyncpg.Connection, user_id: UUID, subject: str, body: str) -> UUID:
    """Put a mail to a user of the current tenant in the outbox; their address is looked up when it is sent."""
    subject = " ".join(subject.split())[:300]  # a header holds no line breaks
    return await conn.fetchval(
        "INSERT INTO mail_outbox (tenant_id, user_id, subject, body) VALUES (app_current_tenant(), $1, $2, $3)"
        " RETURNING id",
        user_id, subject, body)
