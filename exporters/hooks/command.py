"""The ``command`` action: run an argv list (never a shell) with the finding's facts.

The facts go into ``CERTSCAN_*`` environment variables and the finding, as JSON, onto stdin, so
``certbot renew --cert-name ...`` or ``lego ... renew`` can be called as they are. Certificate
text only ever travels as environment values or stdin bytes: no shell parses it. The timeout is
the runner's cancel scope (trio kills the process when it fires).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import trio

from exporters.hooks.base import ActionResult, HookContext, one_line, tail_bytes
from exporters.hooks.names import check, select
from scanner.serialize import iso


def endpoint_text(address: str, port: int, sni: str | None) -> str:
    """``ADDRESS:PORT`` (``[ADDRESS]:PORT`` for IPv6), with ``/SNI`` when a name that passes
    the host-name check was sent (pure)."""
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return where + (f"/{sni}" if sni and check(sni, wildcard=False) is None else "")


def environment(ctx: HookContext) -> dict[str, str]:
    """The ``CERTSCAN_*`` variables for ``ctx`` (pure). ``CERTSCAN_NAMES`` holds only the SANs
    that pass the host-name check, comma-separated (none can hold a comma, a space or a
    newline); ``CERTSCAN_NAMES_DROPPED`` counts the others. ``CERTSCAN_ENDPOINTS`` lists every
    endpoint presenting the certificate, space-separated (see :func:`endpoint_text`)."""
    chosen = select(n.lower() if n.isascii() else n for n in ctx.names)
    return {
        "CERTSCAN_ADDRESS": ctx.address,
        "CERTSCAN_PORT": str(ctx.port),
        "CERTSCAN_SNI": ctx.sni if ctx.sni and check(ctx.sni) is None else "",
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
