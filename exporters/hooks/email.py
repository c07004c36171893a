"""The ``email`` hook action: one message per certificate over SMTP, with STARTTLS and login.

A message names the certificate once and lists every endpoint presenting it (at most
``notice.MAX_ENDPOINTS``, then "and N more"); with ``digest = "daily"`` in the hook the runner
sends one message per day instead (:func:`render_digest`, ``exporters.hooks.digest``).

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
from exporters.hooks.notice import (
    MAX_DIGEST_CERTIFICATES,
    MAX_ENDPOINTS,
    Digest,
    Notice,
    endpoint_text,
    listed,
    notice_of,
)
from scanner.errors import UsageError
from scanner.models import Severity
from scanner.text import safe

__all__ = [
    "EMAIL_KEYS",
    "EmailAction",
    "parse_email_options",
    "render_digest",
    "render_email",
]

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


def _where(notice: Notice) -> str:
    names = ", ".join(safe(n, 100) for n in notice.names[:5])
    return names or safe(endpoint_text(notice.endpoints[0]), 200)


def _block(notice: Notice) -> list[str]:
    """One certificate: its finding once, then every endpoint presenting it (bounded)."""
    shown, more = listed([safe(endpoint_text(e), 300) for e in notice.endpoints], MAX_ENDPOINTS)
    count = len(notice.endpoints)
    lines = [
        f"{notice.severity.upper()} {safe(notice.kind)}: {safe(notice.message, 500)}",
        "",
        f"names:       {_where(notice)}",
        f"not after:   {safe(notice.not_after or 'unknown')}",
        f"sha256:      {safe(notice.sha256)}",
        f"endpoints:   {count} presenting this certificate",
        *(f"  - {e}" for e in shown),
    ]
    if more:
        lines.append(f"  ... and {more} more")
    return lines


def _envelope(subject: str, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = subject[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="certscan.invalid")
    return msg


def render_email(ctx: HookContext, *, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """The message for one certificate's finding, naming every endpoint presenting it (pure)."""
    notice = notice_of(ctx)
    count = len(notice.endpoints)
    on = f" ({count} endpoints)" if count > 1 else ""
    msg = _envelope(
        f"certscan: {safe(notice.severity)} {safe(notice.kind)} on {_where(notice)}{on}",
        sender,
        recipients,
    )
    lines = [*_block(notice), f"hook:        {safe(ctx.hook)}"]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def render_digest(digest: Digest, *, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """One message for a hook's daily digest: every certificate once (bounded, pure)."""
    day = digest.window_start.strftime("%Y-%m-%d")
    total = len(digest.notices)
    worst = max((n.severity for n in digest.notices), key=_rank, default="info")
    msg = _envelope(
        f"certscan digest {day} (UTC): {total} certificate{'s' if total != 1 else ''}, "
        f"worst {safe(worst)}",
        sender,
        recipients,
    )
    lines = [
        f"certscan daily digest of hook {safe(digest.hook)}: the findings selected from "
        f"{digest.window_start.isoformat()} to {digest.window_end.isoformat()} (UTC).",
    ]
    shown = digest.notices[:MAX_DIGEST_CERTIFICATES]
    more = total - len(shown)
    for index, notice in enumerate(shown, 1):
        lines += ["", f"{index}. " + "-" * 60, *_block(notice)]
    if more:
        lines += ["", f"... and {more} more certificates (certscan findings lists them all)"]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def _rank(label: str) -> int:
    try:
        return int(Severity.parse(label))
    except ValueError:
        return -1


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailAction:
    """Send one message per certificate's finding, or one daily digest (module docstring)."""

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
        message = render_email(ctx, sender=self.sender, recipients=self.recipients)
        return await self._deliver(message)

    async def run_digest(self, digest: Digest) -> ActionResult:
        """Send one hook's daily digest as one message."""
        message = render_digest(digest, sender=self.sender, recipients=self.recipients)
        return await self._deliver(message)

    async def _deliver(self, message: EmailMessage) -> ActionResult:
        password = None
        if self.password_env is not None:
            password = os.environ.get(self.password_env)
            if password is None:
                return ActionResult(
                    ok=False,
                    exit_status=None,
                    output_tail=f"environment variable {self.password_env} (password_env) is unset",
                )
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
