"""The ``email`` hook action: one message per finding over SMTP, with STARTTLS and login.

Config keys (``[hooks.NAME]`` with ``action = "email"``): ``smtp_host`` (required),
``smtp_port`` (587), ``starttls`` (true: upgrade before anything is sent; false only for a
relay on localhost), ``username`` and ``password_env`` (the environment variable holding the
password: secrets stay out of the config file), ``from`` and ``to`` (a list), ``tls_ca`` (a
PEM bundle to trust instead of the system's, for an internal relay).

The message is built with the standard library's ``email`` package under the SMTP policy, so a
header can never hold a line break: every certificate-derived text is made one printable line
with :func:`scanner.text.safe` first. SMTP runs in a worker thread (``smtplib`` blocks) inside
the runner's timeout; a refused login, a failed STARTTLS or a rejected recipient is a result
with ``ok=False``, never an exception.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, ClassVar

import trio

from exporters.hooks.base import ActionResult, HookContext, tail
from scanner.errors import UsageError
from scanner.text import safe

__all__ = ["EMAIL_KEYS", "EmailAction", "parse_email_options", "render_email"]

EMAIL_KEYS: tuple[str, ...] = (
    "smtp_host",
    "smtp_port",
    "starttls",
    "username",
    "password_env",
    "from",
    "to",
    "tls_ca",
)


def render_email(ctx: HookContext, *, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """The message for one finding (pure)."""
    where = ", ".join(safe(n, 100) for n in ctx.names[:5]) or f"{safe(ctx.address)}:{ctx.port}"
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = f"certscan: {ctx.severity} {ctx.kind} on {where}"[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="certscan.invalid")
    lines = [
        f"{ctx.severity.upper()} {ctx.kind}: {safe(ctx.message, 500)}",
        "",
        f"endpoint:    {safe(ctx.address)}:{ctx.port}"
        + (f" (SNI {safe(ctx.sni)})" if ctx.sni else ""),
        f"names:       {where}",
        f"not after:   {ctx.not_after.isoformat() if ctx.not_after else 'unknown'}",
        f"sha256:      {ctx.sha256}",
        f"hook:        {safe(ctx.hook)}",
    ]
    msg.set_content("\n".join(lines) + "\n")
    return msg


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailAction:
    """Send one message per finding (module docstring)."""

    kind: ClassVar[str] = "email"
    host: str
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password_env: str | None = None
    sender: str
    recipients: tuple[str, ...]
    tls_ca: Path | None = None

    def _context(self) -> ssl.SSLContext:
        if self.tls_ca is not None:
            return ssl.create_default_context(cafile=str(self.tls_ca))
        return ssl.create_default_context()

    def _send(self, message: EmailMessage, password: str | None) -> ActionResult:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if self.username is not None:
                    _login(smtp, self.username, password or "")
                refused = smtp.send_message(message)
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            return ActionResult(
                ok=False, exit_status=None, output_tail=tail(f"{type(exc).__name__}: {exc}")
            )
        if refused:
            return ActionResult(
                ok=False, exit_status=None, output_tail=f"refused: {sorted(refused)}"
            )
        return ActionResult(ok=True, exit_status=250, output_tail=f"sent to {len(self.recipients)}")

    async def run(self, ctx: HookContext) -> ActionResult:
        password = None
        if self.password_env is not None:
            password = os.environ.get(self.password_env)
            if password is None:
                return ActionResult(
                    ok=False,
                    exit_status=None,
                    output_tail=f"environment variable {self.password_env} (password_env) is unset",
                )
        message = render_email(ctx, sender=self.sender, recipients=self.recipients)
        return await trio.to_thread.run_sync(self._send, message, password, abandon_on_cancel=True)


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH PLAIN when the server offers it (one exchange, over TLS), else smtplib's choice: a
    failed PLAIN is then an answer, not a fallback to mechanisms that may stall."""
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    if "PLAIN" in offered:
        smtp.user, smtp.password = username, password
        smtp.auth("PLAIN", smtp.auth_plain)
    else:
        smtp.login(username, password)


def _address(value: object, where: str) -> str:
    if not isinstance(value, str) or "@" not in value or any(c in value for c in "\r\n<>,; "):
        raise UsageError(f"{where}: expected an e-mail address such as certs@example.org")
    return value


def parse_email_options(own: Mapping[str, Any], where: str) -> EmailAction:
    """An :class:`EmailAction` from a hook table's own keys; UsageError naming the key."""
    host = own.get("smtp_host")
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        raise UsageError(f"{where}.smtp_host: expected a host name")
    port = own.get("smtp_port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"{where}.smtp_port: expected a port 1-65535")
    starttls = own.get("starttls", True)
    if not isinstance(starttls, bool):
        raise UsageError(f"{where}.starttls: expected true or false")
    username, password_env = own.get("username"), own.get("password_env")
    if username is not None and (not isinstance(username, str) or not username):
        raise UsageError(f"{where}.username: expected a non-empty string")
    if password_env is not None and (not isinstance(password_env, str) or not password_env):
        raise UsageError(f"{where}.password_env: expected an environment variable name")
    if username is not None and not starttls:
        raise UsageError(f"{where}.starttls: a login needs starttls = true (no password in clear)")
    sender = _address(own.get("from"), f"{where}.from")
    to = own.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to:
        raise UsageError(f"{where}.to: expected a list of e-mail addresses")
    recipients = tuple(_address(r, f"{where}.to") for r in to)
    ca = own.get("tls_ca")
    if ca is not None and not isinstance(ca, str):
        raise UsageError(f"{where}.tls_ca: expected a PEM file path")
    return EmailAction(
        host=host,
        port=port,
        starttls=starttls,
        username=username,
        password_env=password_env,
        sender=sender,
        recipients=recipients,
        tls_ca=None if ca is None else Path(ca).expanduser(),
    )
