"""One run of a ``serve`` job with ``workers > 1``, in a child process of the daemon.

``python -m exporters.serve.child --job NAME --db URL [--config FILE] [--log-format F]`` reads
the config as the daemon does (:func:`exporters.serve.runs.load`), builds the job's sweep
options with the daemon's own :func:`~exporters.serve.runs.job_sweep`, and runs
``certscan sweep``'s entry (:func:`scanner.sweep.run.run_command`): it forks the ``workers``
before its event loop starts, sweeps one sharded scan into the inventory, judges it and runs
the hooks. Log lines go to stderr in the daemon's format (the daemon's stderr: the child
inherits it); the last line on stdout is one JSON object, the "scan stored" fields
(``scan_id``, ``targets``, ``findings``, ``interrupted``...) or ``{"error": "..."}``.

Exit status: 0 stored, 130 interrupted (SIGTERM/SIGINT: the scan is marked interrupted), 2 a
config mistake, 3 an operational failure.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["child_argv", "main", "read_summary"]

log = logging.getLogger("certscan.serve")
_MAX_SUMMARY = 64 * 1024  # bytes of stdout read at most


def child_argv(*, job: str, db: str, config: Path | None, log_format: str) -> list[str]:
    """The command line of one child run (pure)."""
    argv = [sys.executable, "-m", "exporters.serve.child", "--job", job, "--db", db]
    if config is not None:
        argv += ["--config", str(config)]
    return [*argv, "--log-format", log_format]


def read_summary(stdout: bytes) -> dict[str, Any]:
    """The child's last stdout line as a JSON object; {} when there is none (pure)."""
    lines = stdout[-_MAX_SUMMARY:].decode("utf-8", "replace").strip().splitlines()
    if not lines:
        return {}
    try:
        data = json.loads(lines[-1])
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _say(data: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(data, ensure_ascii=True, default=str) + "\n")
        sys.stdout.flush()
    except OSError:  # the daemon stopped listening (it stopped this run): nothing to tell
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's own flush cannot fail again
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporters.serve.child")
    parser.add_argument("--job", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)

    import sqlalchemy as sa

    from exporters.serve.log import LogEvents, setup_logging
    from exporters.serve.runs import DaemonOptions, job_sweep, load, scan_summary
    from scanner.errors import CertscanError, UsageError
    from scanner.sweep.options import EXIT_INTERRUPTED
    from scanner.sweep.run import run_command
    from scanner.text import safe

    setup_logging(args.log_format)
    try:
        loaded = load(DaemonOptions(config=args.config, db=args.db))
        job = loaded.settings.jobs.get(args.job)
        if job is None:
            raise UsageError(f"job {safe(args.job, 100)} is no longer in the config file")
        label = sa.make_url(args.db).render_as_string(hide_password=True)
        options = job_sweep(args.job, job, loaded, args.db, label)
        report = run_command(options, out=io.StringIO(), events=LogEvents(log, job=args.job))
    except CertscanError as exc:
        _say({"error": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__})
        return exc.exit_code
    except Exception as exc:  # a bug: one line for the daemon, the traceback in the log
        log.exception("sweep process failed", extra={"job": args.job})
        _say({"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]})
        return 3
    _say(scan_summary(report))
    return EXIT_INTERRUPTED if report.interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
