"""``certscan check HOST[:PORT]``: a Nagios/Icinga plugin (``check_ssl_cert`` style).

One handshake with the host (every address of a name; ``--all-certs`` to see both key types),
judged by the same findings as a sweep, into an in-memory inventory (nothing is stored), then
one status line on stdout and the plugin exit code (:mod:`reports.plugin`): 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN. Any usage or operational error is ``CERTSCAN UNKNOWN - ...`` and exit 3,
as monitoring plugins must (the usual certscan exit 2 would read as CRITICAL).
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scanner.errors import CertscanError, UsageError
from scanner.models import EngineLimits
from scanner.text import safe

if TYPE_CHECKING:
    from scanner.sweep.options import SweepOptions

__all__ = ["MAX_ADDRESSES", "check", "unknown"]

#: A name with more addresses than this is not one host.
MAX_ADDRESSES = 16


def unknown(message: str) -> int:
    """Print ``CERTSCAN UNKNOWN - message`` (stdout, as plugins do) and return 3."""
    from reports.plugin import PluginState

    sys.stdout.write(f"CERTSCAN UNKNOWN - {safe(message, 300).replace('|', '/')}\n")
    return int(PluginState.UNKNOWN)


def _days(text: str, option: str) -> float:
    from reports import assess

    stripped = text.strip()
    if stripped.replace(".", "", 1).isdigit():  # a bare number is days, as check_ssl_cert reads it
        return float(stripped)
    return assess.parse_window(stripped, option=option).total_seconds() / 86400


def _options(
    host: str, port: int, sni: str | None, timeout: float, starttls: str, all_certs: bool
) -> SweepOptions:
    from scanner.sweep.options import SweepOptions

    if not host.strip() or any(c in host for c in "/, \t") or _is_range(host):
        raise UsageError(f"HOST: one host name or address, got {safe(host)!r}")
    limits = EngineLimits(
        concurrency=MAX_ADDRESSES * 3,
        connect_timeout=min(timeout, 3.0),
        handshake_timeout=timeout,
        target_deadline=timeout,
        all_certs=all_certs,
    )
    return SweepOptions(
        specs=(host,),
        ports=(port,),
        starttls=starttls,
        sni=sni,
        allow_public=True,  # one host the operator named, not a range
        max_targets=MAX_ADDRESSES,
        limits=limits,
        db_url="sqlite://",
        db_label="memory",
        progress=False,
        summary=False,
        keep_views=True,  # the verdict is made from the judged views
    )


def _is_range(host: str) -> bool:
    """``10.0.0.1-20``: an address range, not a host name with a hyphen."""
    if "-" not in host:
        return False
    head = host.split("-", 1)[0]
    return head.replace(".", "").isdigit()


def check(
    host: Annotated[str, typer.Argument(metavar="HOST[:PORT]", help="The host to check.")],
    port: Annotated[
        int, typer.Option("--port", "-p", metavar="PORT", help="Port when HOST has none.")
    ] = 443,
    sni: Annotated[
        str | None, typer.Option("--sni", metavar="NAME", help="Server name to send.")
    ] = None,
    warning: Annotated[
        str, typer.Option("--warning", "-w", metavar="DAYS", help="WARNING below this (30d).")
    ] = "30d",
    critical: Annotated[
        str, typer.Option("--critical", "-c", metavar="DAYS", help="CRITICAL below this (7d).")
    ] = "7d",
    warn_on: Annotated[
        str,
        typer.Option("--warn-on", metavar="SEVERITY", help="WARNING for findings at/above this."),
    ] = "high",
    crit_on: Annotated[
        str,
        typer.Option("--crit-on", metavar="SEVERITY", help="CRITICAL for findings at/above this."),
    ] = "critical",
    timeout: Annotated[
        float, typer.Option("--timeout", "-t", metavar="SECONDS", help="Per connection.")
    ] = 10.0,
    starttls: Annotated[
        str, typer.Option("--starttls", metavar="auto|off|PROTOCOL", help="As for sweep.")
    ] = "auto",
    all_certs: Annotated[
        bool, typer.Option("--all-certs", help="Also check the other key type's certificate.")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", metavar="FILE", help="Policy and trust.")
    ] = None,
    ca_bundle: Annotated[
        list[Path] | None,
        typer.Option("--ca-bundle", metavar="PEM", help="Also trust these roots. Repeatable."),
    ] = None,
) -> None:
    """Check one host's certificate as a Nagios/Icinga plugin: one status line, exit 0-3."""
    raise typer.Exit(
        _check(
            host,
            port,
            sni,
            warning,
            critical,
            warn_on,
            crit_on,
            timeout,
            starttls,
            all_certs,
            config,
            ca_bundle,
        )
    )


def _check(
    host: str,
    port: int,
    sni: str | None,
    warning: str,
    critical: str,
    warn_on: str,
    crit_on: str,
    timeout: float,
    starttls: str,
    all_certs: bool,
    config: Path | None,
    ca_bundle: list[Path] | None = None,
) -> int:
    import trio

    from reports import assess
    from reports.plugin import CheckThresholds, plugin_verdict
    from scanner.sweep.events import SilentEvents
    from scanner.sweep.run import run

    try:
        limits = CheckThresholds(
            warning_days=_days(warning, "--warning"),
            critical_days=_days(critical, "--critical"),
            warning_on=assess.parse_severity(warn_on, option="--warn-on"),
            critical_on=assess.parse_severity(crit_on, option="--crit-on"),
        )
        if limits.critical_days > limits.warning_days:
            raise UsageError("--critical: must not be more days than --warning")
        if not 0 < timeout <= 300:
            raise UsageError(f"--timeout: between 0 and 300 seconds, got {timeout:g}")
        if not 0 < port < 65536:
            raise UsageError(f"--port: 1-65535, got {port}")
        options = dataclasses.replace(
            _options(host, port, sni, timeout, starttls, all_certs),
            criteria=assess.load_criteria(config, tuple(ca_bundle or ()), env=os.environ),
        )
        report = trio.run(lambda: run(options, out=io.StringIO(), events=SilentEvents()))
    except CertscanError as exc:
        return unknown(str(exc))
    except BaseExceptionGroup as group:  # a user error raised inside the sweep's nursery
        found = group.exceptions[0] if len(group.exceptions) == 1 else group
        if isinstance(found, CertscanError):
            return unknown(str(found))
        raise
    state, line = plugin_verdict(
        report.views,
        target=host,
        now=datetime.now(UTC),
        limits=limits,
        outcomes=report.counters.by_status,
    )
    sys.stdout.write(line + "\n")
    return int(state)
