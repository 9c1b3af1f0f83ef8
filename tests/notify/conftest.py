"""A real SMTP server (aiosmtpd) on a free port, and a control plane whose RQ jobs run here."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from orchestrator.app import create_app
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from tests.support.api import create_worker_token, make_settings
from tests.support.rq import task_runtime
from tests.support.stack import free_port

SMTP_USER, SMTP_PASSWORD = "baton", "s3cret-pass"
PUBLIC_URL = "https://baton.example"
FROM = "Baton <baton@baton.example>"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    def body(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part"
        content: str = part.get_content()
        return content


@dataclass
class Mailbox:
    """What the SMTP server received, and who logged in."""

    received: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), message))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1 (key and certificate in one PEM file)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("tls") / "smtp.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return path


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox


StartSmtp = Callable[..., SmtpServer]


@pytest.fixture
def smtp_server(tls_cert: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StartSmtp]:
    """Start an aiosmtpd server: ``security`` none | starttls (login required) | ssl."""
    # The control plane verifies certificates: make it trust the test's own.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_cert)
    controllers: list[Controller] = []

    def start(security: str, port: int | None = None) -> SmtpServer:
        mailbox = Mailbox()
        choices: dict[str, dict[str, Any]] = {
            "none": {},
            "starttls": {
                "tls_context": context,
                "require_starttls": True,
                "authenticator": mailbox.authenticate,
                "auth_required": True,
            },
            "ssl": {"ssl_context": context},
        }
        port = port or free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **choices[security])
        controller.start()
        controllers.append(controller)
        return SmtpServer(port=port, mailbox=mailbox)

    yield start
    for controller in controllers:
        controller.stop()


def smtp_env(*, port: int, security: str, **extra: Any) -> dict[str, Any]:
    env = {
        "BATON_SMTP_HOST": "127.0.0.1",
        "BATON_SMTP_PORT": port,
        "BATON_SMTP_SECURITY": security,
        "BATON_SMTP_FROM": FROM,
        "BATON_PUBLIC_URL": PUBLIC_URL,
        **extra,
    }
    if security == "starttls":
        env.update(BATON_SMTP_USER=SMTP_USER, BATON_SMTP_PASSWORD=SMTP_PASSWORD)
    return env


@dataclass
class ControlPlane:
    """The real app in-process, plus the runtime its RQ jobs use when run here."""

    settings: Settings
    client: TestClient
    runtime: Runtime
    tokens: dict[str, str] = field(default_factory=dict)

    def worker_token(self, owner: str) -> str:
        """The worker token of ``owner`` (an email; made on first use): workers take only
        their token owner's work."""
        if owner not in self.tokens:
            self.tokens[owner] = create_worker_token(self.settings, owner=owner)
        return self.tokens[owner]


@pytest.fixture
def control_plane(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., ControlPlane]]:
    with ExitStack() as stack:

        def make(**env: Any) -> ControlPlane:
            settings = make_settings(
                database_url=f"sqlite:///{tmp_path / 'baton.db'}",
                redis_url=redis_url,
                data_dir=tmp_path / "data",
                **env,
            )
            client = stack.enter_context(TestClient(create_app(settings)))
            runtime = stack.enter_context(task_runtime(settings, monkeypatch))
            return ControlPlane(settings, client, runtime)

        yield make
