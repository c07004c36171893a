"""The ``email`` hook action against a real SMTP server started here (aiosmtpd on 127.0.0.2)
that requires STARTTLS before AUTH, with a certificate from a throwaway CA."""

from __future__ import annotations

import email
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from exporters.hooks.base import HookContext
from exporters.hooks.config import parse_hooks
from exporters.hooks.email import EmailAction, parse_email_options
from scanner.errors import UsageError
from scanner.lab import certgen

HOST = "127.0.0.2"
USER, PASSWORD = "certscan", "smtp-secret-for-tests"


@dataclass
class Inbox:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    root = certgen.make_ca("smtp test root")
    leaf = certgen.make_leaf(root, cn="smtp.test", dns_names=["smtp.test"], ip_addresses=[HOST])
    (tmp_path / "cert.pem").write_bytes(leaf.cert_pem)
    (tmp_path / "key.pem").write_bytes(leaf.key_pem)
    (tmp_path / "ca.pem").write_bytes(root.cert_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname=HOST,
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=_auth,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield inbox, port, tmp_path / "ca.pem"
    finally:
        controller.stop()


def _ctx(name: str = "evil\r\nBcc: x@evil.example") -> HookContext:
    return HookContext(
        hook="mail",
        kind="expiring",
        severity="high",
        message=f"leaf '{name}' expires in 5 days",
        address="127.0.9.1",
        port=443,
        sni=None,
        names=(name,),
        not_after=datetime(2026, 12, 8, tzinfo=UTC),
        sha256="ab" * 32,
        finding={},
    )


def _action(port: int, ca: Path, **over: Any) -> EmailAction:
    own: dict[str, Any] = {
        "smtp_host": HOST,
        "smtp_port": port,
        "username": USER,
        "password_env": "CERTSCAN_TEST_SMTP_PASSWORD",
        "from": "certscan@example.org",
        "to": ["pki@example.org", "ops@example.org"],
        "tls_ca": str(ca),
    }
    own.update(over)
    return parse_email_options(own, "hooks.mail")


async def test_sends_over_starttls_with_login(
    smtp: tuple[Inbox, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port, ca = smtp
    monkeypatch.setenv("CERTSCAN_TEST_SMTP_PASSWORD", PASSWORD)
    result = await _action(port, ca).run(_ctx())
    assert result.ok, result.output_tail
    ((sender, recipients, raw),) = inbox.messages
    assert sender == "certscan@example.org"
    assert recipients == ["pki@example.org", "ops@example.org"]
    message = email.message_from_bytes(raw, policy=default_policy)
    assert message["Bcc"] is None  # the crafted name could not add a header
    subject = str(message["Subject"])
    assert subject.startswith("certscan: high expiring on evil\\x0d\\x0aBcc")
    body = message.get_content()
    assert "sha256:      " + "ab" * 32 in body


async def test_failures_are_results(
    smtp: tuple[Inbox, int, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    inbox, port, ca = smtp
    monkeypatch.setenv("CERTSCAN_TEST_SMTP_PASSWORD", "wrong")
    refused = await _action(port, ca).run(_ctx("a.example"))
    assert not refused.ok
    assert "Authentication" in refused.output_tail or "535" in refused.output_tail
    monkeypatch.setenv("CERTSCAN_TEST_SMTP_PASSWORD", PASSWORD)
    other_ca = certgen.make_ca("not the smtp root")
    (tmp_path / "other.pem").write_bytes(other_ca.cert_pem)
    untrusted = await _action(port, tmp_path / "other.pem").run(_ctx("a.example"))
    assert not untrusted.ok
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.output_tail
    monkeypatch.delenv("CERTSCAN_TEST_SMTP_PASSWORD")
    unset = await _action(port, ca).run(_ctx("a.example"))
    assert not unset.ok
    assert "password_env" in unset.output_tail
    assert inbox.messages == []


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"smtp_host": ""}, "smtp_host"),
        ({"smtp_port": 0}, "smtp_port"),
        ({"to": []}, "to"),
        ({"to": ["x@y\r\nBcc: z@w"]}, "to"),
        ({"from": "nobody"}, "from"),
        ({"starttls": False}, "starttls"),
        ({"starttls": "yes"}, "starttls"),
    ],
)
def test_bad_options_name_the_key(over: dict[str, Any], key: str) -> None:
    with pytest.raises(UsageError, match=rf"^hooks\.mail\.{key}: "):
        _action(25, Path("ca.pem"), **over)


def test_registered_as_a_hook_action() -> None:
    config = parse_hooks(
        {
            "mail": {
                "action": "email",
                "smtp_host": "smtp.example.org",
                "from": "certscan@example.org",
                "to": "pki@example.org",
            }
        },
        source="c.toml",
    )
    assert isinstance(config.hooks[0].action, EmailAction)
