"""What one ``serve`` job run is, shared by the daemon (:mod:`exporters.serve.daemon`) and its
child process for ``workers > 1`` (:mod:`exporters.serve.child`): the command-line options, one
reading of the config, ``certscan sweep``'s options for a job, and the "scan stored" fields."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporters.hooks.config import HooksConfig, parse_hooks
from exporters.hooks.runner import after_sweep
from exporters.serve.config import JobSpec, ServeSettings, serve_settings
from reports import assess
from reports.policy import load_config
from scanner.sweep.options import SweepOptions, SweepReport

__all__ = ["DaemonOptions", "Loaded", "job_sweep", "load", "scan_summary"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonOptions:
    """The command line: each ``None`` falls back to the config, then the default."""

    config: Path | None = None
    db: str | None = None
    listen: str | None = None
    once: bool = False
    #: ``--log-format``: passed on to a job's child process (``workers > 1``).
    log_format: str = "text"


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    """One reading of the config file."""

    settings: ServeSettings
    criteria: assess.Criteria
    hooks: HooksConfig | None  # the renewal hooks run after each job; None when none is declared


def load(options: DaemonOptions) -> Loaded:
    """Read and validate the config (UsageError, one line, for a mistake)."""
    config = load_config(options.config, env=os.environ)
    settings = serve_settings(config)
    criteria = assess.load_criteria(options.config, env=os.environ)
    source = str(config.path) if config.path is not None else "config"
    hooks = parse_hooks(
        config.sections.get("hooks"),
        source=source,
        ari=config.sections.get("ari"),
        policy=config.policy,
    )
    wanted = hooks.hooks or hooks.ari is not None
    return Loaded(settings=settings, criteria=criteria, hooks=hooks if wanted else None)


def job_sweep(name: str, job: JobSpec, loaded: Loaded, url: str, label: str) -> SweepOptions:
    """``certscan sweep``'s options for one run of job ``name`` (the daemon's and the child's)."""
    return SweepOptions(
        specs=job.specs,
        ports=tuple(port for port, _ in job.ports),
        protocols=tuple((port, p) for port, p in job.ports if p is not None),
        starttls=job.starttls,
        excludes=job.excludes,
        blocklist=job.sweep.blocklist,
        sni=job.sni,
        discovery=job.sweep.discovery,
        allow_public=job.allow_public,
        max_targets=job.sweep.max_targets,
        resolve_mode=job.sweep.resolve_mode,
        limits=job.limits,
        discover=job.discover,
        db_url=url,
        db_label=label,
        progress=False,
        summary=False,
        criteria=loaded.criteria,
        job=name,
        after=None if loaded.hooks is None else after_sweep(loaded.hooks),
        workers=job.sweep.workers,
    )


def scan_summary(report: SweepReport) -> dict[str, Any]:
    """The "scan stored" fields of a finished sweep."""
    c = report.counters
    return {
        "scan_id": report.scan_id,
        "targets": c.total,
        "done": c.done,
        "open": c.open,
        "chains": c.chains,
        "certificates": len(c.certificates),
        "findings": report.tally.line(),
        "interrupted": report.interrupted,
    }
