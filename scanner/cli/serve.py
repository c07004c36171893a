"""``certscan serve``: option parsing for the daemon in :mod:`exporters.serve.daemon`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exporters.serve.defaults import DEFAULT_PORT
from scanner.cli.options import ConfigOption, DbOption
from scanner.errors import UsageError


def serve(
    config: ConfigOption = None,
    db: DbOption = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help=f"Address for /metrics, the API and the report (default: serve.listen, else "
            f"127.0.0.1:{DEFAULT_PORT}; binding a non-loopback address is your explicit choice).",
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Run every configured job once and exit (for cron or a systemd timer)."
        ),
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            metavar="text|json",
            help="Log lines on stderr: text, or one JSON object per line.",
        ),
    ] = "text",
) -> int:
    """Serve Prometheus metrics, a JSON API and the live report; run the configured scan jobs
    on their schedules (a job with workers = N sweeps in a child process, bounded by its
    run_timeout). SIGTERM/SIGINT stop it, SIGHUP reloads the config."""
    if log_format not in ("text", "json"):
        raise UsageError(f"--log-format must be text or json (got {log_format!r})")
    # Imported here: the web stack (starlette, hypercorn) costs every other command start-up time.
    from exporters.serve.daemon import DaemonOptions, run_daemon
    from exporters.serve.log import setup_logging

    setup_logging(log_format)
    path: Path | None = config
    return run_daemon(
        DaemonOptions(config=path, db=db, listen=listen, once=once, log_format=log_format)
    )
