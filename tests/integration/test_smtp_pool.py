"""The SMTP adapter against a real SMTP server (aiosmtpd) on loopback, the ways shops' relays
are set up: STARTTLS then AUTH, implicit TLS, a certificate that does not verify, a wrong
password, and a kept connection the server has closed in the meantime."""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.smtp_sink import SinkHandler
from tidings.channels.email.smtp import SmtpPool, SmtpServer, SmtpStage

USER, PASSWORD = "shop@relay.example", "a relay password"
MAIL = b"From: shop@teahouse.example\r\nTo: lin@example.org\r\nSubject: hi\r\n\r\nWinter teas.\r\n"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, as a local relay has."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.datetime.now(datetime.UTC)  # noqa: TID251 - TLS checks the real clock
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def check_password(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def relay(handler: SinkHandler, port: int, **server: Any) -> Iterator[Controller]:
    controller = Controller(handler, hostname="127.0.0.1", port=port, **server)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def starttls_relay(
    handler: SinkHandler, port: int, certificate: tuple[Path, Path]
) -> Any:  # a context manager
    """STARTTLS required before anything, AUTH required and only over TLS."""
    return relay(
        handler,
        port,
        tls_context=server_context(certificate),
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=check_password,
    )


def test_starttls_then_auth_delivers_over_the_encrypted_session(
    certificate: tuple[Path, Path],
) -> None:
    handler, port, pool = SinkHandler(), free_port(), SmtpPool()
    server = SmtpServer("127.0.0.1", port, "starttls", USER, PASSWORD, verify_tls=False, timeout=10)
    with starttls_relay(handler, port, certificate):
        result = pool.send(server, "shop@teahouse.example", "lin@example.org", MAIL)
        pool.close()
    assert result.accepted, result
    (mail,) = handler.wait_for(1)
    assert mail.recipients == ["lin@example.org"] and b"Winter teas." in mail.data


def test_a_wrong_password_is_a_refusal_at_connect_with_the_servers_code(
    certificate: tuple[Path, Path],
) -> None:
    handler, port, pool = SinkHandler(), free_port(), SmtpPool()
    server = SmtpServer("127.0.0.1", port, "starttls", USER, "not it", verify_tls=False, timeout=10)
    with starttls_relay(handler, port, certificate):
        result = pool.send(server, "shop@teahouse.example", "lin@example.org", MAIL)
        pool.close()
    assert result.state == "rejected" and result.code == 535, result
    assert result.stage == SmtpStage.CONNECT
    assert handler.received == []


def test_without_starttls_a_relay_that_requires_it_refuses_before_any_mail(
    certificate: tuple[Path, Path],
) -> None:
    handler, port, pool = SinkHandler(), free_port(), SmtpPool()
    server = SmtpServer("127.0.0.1", port, "none", verify_tls=False, timeout=10)
    with starttls_relay(handler, port, certificate):
        result = pool.send(server, "shop@teahouse.example", "lin@example.org", MAIL)
        pool.close()
    assert not result.accepted and result.code == 530, result  # "Must issue a STARTTLS first"
    assert handler.received == []


def test_a_certificate_that_does_not_verify_is_refused_by_default(
    certificate: tuple[Path, Path],
) -> None:
    handler, port, pool = SinkHandler(), free_port(), SmtpPool()
    server = SmtpServer("127.0.0.1", port, "starttls", USER, PASSWORD, timeout=10)
    with starttls_relay(handler, port, certificate):
        result = pool.send(server, "shop@teahouse.example", "lin@example.org", MAIL)
        pool.close()
    assert result.state == "unsent" and result.stage == SmtpStage.CONNECT, result
    assert "CERTIFICATE_VERIFY_FAILED" in result.text
    assert handler.received == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_delivers(certificate: tuple[Path, Path]) -> None:
    handler, port, pool = SinkHandler(), free_port(), SmtpPool()
    server = SmtpServer("127.0.0.1", port, "tls", USER, PASSWORD, verify_tls=False, timeout=10)
    context = server_context(certificate)
    with relay(
        handler,
        port,
        ssl_context=context,
        auth_require_tls=False,  # the whole session is TLS; aiosmtpd cannot tell
        authenticator=check_password,
        auth_required=True,
    ):
        result = pool.send(server, "shop@teahouse.example", "lin@example.org", MAIL)
        pool.close()
    assert result.accepted, result
    assert len(handler.wait_for(1)) == 1


def test_a_kept_connection_the_server_closed_is_replaced_and_the_mail_goes_once() -> None:
    """Relays drop idle connections; the pool's kept one is dead when the next mail comes."""
    handler, port, pool = SinkHandler(), free_port(), SmtpPool()
    server = SmtpServer("127.0.0.1", port, "none", timeout=10)
    with relay(handler, port):
        first = pool.send(server, "shop@teahouse.example", "lin@example.org", MAIL)
    with relay(handler, port):  # the same address, a new server: the kept socket is gone
        second = pool.send(server, "shop@teahouse.example", "mei@example.org", MAIL)
        pool.close()
    assert first.accepted and second.accepted, (first, second)
    assert [m.recipients for m in handler.wait_for(2)] == [["lin@example.org"], ["mei@example.org"]]
