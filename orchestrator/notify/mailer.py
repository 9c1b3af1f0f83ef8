"""SMTP delivery with the settings from env: plain, STARTTLS or implicit TLS, optional login."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from orchestrator.settings import Settings

TIMEOUT_SECONDS = 30


def configured(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def send(settings: Settings, message: EmailMessage) -> None:
    """Deliver ``message``; any SMTP or network failure raises, and the RQ job retries."""
    context = ssl.create_default_context()
    host, port = settings.smtp_host, settings.smtp_port
    smtp = (
        smtplib.SMTP_SSL(host, port, timeout=TIMEOUT_SECONDS, context=context)
        if settings.smtp_security == "ssl"
        else smtplib.SMTP(host, port, timeout=TIMEOUT_SECONDS)
    )
    with smtp:
        if settings.smtp_security == "starttls":
            smtp.starttls(context=context)
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password.get_secret_value())
        smtp.send_message(message)
