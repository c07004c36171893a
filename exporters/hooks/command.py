"""The ``command`` action: run an argv list (never a shell) with the finding's facts.

The facts go into ``CERTSCAN_*`` environment variables and the finding, as JSON, onto stdin, so
``certbot renew --cert-name ...`` or ``lego ... renew`` can be called as they are. Certificate
text only ever travels as environment values or stdin bytes: no shell parses it. The timeout is
the runner's cancel scope (trio kills the process when it fires).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import trio

from exporters.hooks.base import ActionResult, HookContext, one_line, tail_bytes
from exporters.hooks.names import select
from scanner.serialize import iso

_SNI = re.compile(r"[A-Za-z0-9._-]{1,253}")


def safe_sni(sni: str | None) -> str:
    """The SNI sent (the operator's target list gave it), or '' when none was sent or it holds
    anything but letters, digits, dots, hyphens and underscores (pure)."""
    return sni if sni and _SNI.fullmatch(sni) else ""


def endpoint_text(address: str, port: int, sni: str | None) -> str:
    """``ADDRESS:PORT`` (``[ADDRESS]:PORT`` for IPv6), then ``/SNI`` when one was sent (pure)."""
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return where + (f"/{safe_sni(sni)}" if safe_sni(sni) else "")


def environment(ctx: HookContext) -> dict[str, str]:
    """The ``CERTSCAN_*`` variables for ``ctx`` (pure). ``CERTSCAN_NAMES`` holds only the SANs
    that pass the host-name check, comma-separated (none can hold a comma, a space or a
    newline); ``CERTSCAN_NAMES_DROPPED`` counts the others. ``CERTSCAN_ENDPOINTS`` lists every
    endpoint presenting the certificate, space-separated (see :func:`endpoint_text`)."""
    chosen = select(n.lower() if n.isascii() else n for n in ctx.names)
    return {
        "CERTSCAN_ADDRESS": ctx.address,
        "CERTSCAN_PORT": str(ctx.port),
        "CERTSCAN_SNI": safe_sni(ctx.sni),
        "CERTSCAN_NAMES": ",".join(chosen.kept),
        "CERTSCAN_NAMES_DROPPED": str(len(chosen.refused)),
        "CERTSCAN_ENDPOINTS": " ".join(endpoint_text(*e) for e in ctx.endpoints),
        "CERTSCAN_NOT_AFTER": iso(ctx.not_after) or "",
        "CERTSCAN_SHA256": ctx.sha256,
        "CERTSCAN_FINDING": ctx.kind,
        "CERTSCAN_SEVERITY": ctx.severity,
        "CERTSCAN_HOOK": ctx.hook,
    }


def _clean(value: str) -> str:
    # NUL cannot be in an environment value; certificate text may hold one.
    return value.replace("\x00", "\ufffd")


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandAction:
    """Run ``argv`` with the facts; ``ok`` when it exits 0."""

    kind: ClassVar[str] = "command"
    argv: tuple[str, ...]
    base_env: Mapping[str, str] | None = field(default=None, repr=False)  # None: os.environ

    async def run(self, ctx: HookContext) -> ActionResult:
        env = dict(os.environ if self.base_env is None else self.base_env)
        env.update({k: _clean(v) for k, v in environment(ctx).items()})
        stdin = json.dumps(dict(ctx.finding), ensure_ascii=True).encode()
        try:
            done = await trio.run_process(
                list(self.argv),
                stdin=stdin,
                capture_stdout=True,
                stderr=subprocess.STDOUT,
                check=False,
                env=env,
            )
        except OSError as exc:
            reason = one_line(f"cannot run {self.argv[0]}: {exc}")
            return ActionResult(ok=False, exit_status=None, output_tail=reason)
        return ActionResult(
            ok=done.returncode == 0,
            exit_status=done.returncode,
            output_tail=tail_bytes(done.stdout or b""),
        )
