"""Metrics as a file for node_exporter's textfile collector.

node_exporter reads every ``*.prom`` file in its ``--collector.textfile.directory`` on each of its
own scrapes, so a file it reads must be whole: the exposition is rendered completely in memory
first (a failing collector leaves the old file in place), then written by
:func:`reports.atomic.write_atomic` -- a temporary file in the same directory, fsynced, renamed
over the target, directory fsynced. The temporary file's name (``.NAME.RANDOM.tmp``) does not end
in ``.prom``, so the collector never reads a half-written file.
"""

from __future__ import annotations

import os

from prometheus_client import generate_latest
from prometheus_client.registry import Collector

from reports.atomic import write_atomic

__all__ = ["write_textfile"]


def write_textfile(path: str | os.PathLike[str], registry: Collector) -> None:
    """Replace ``path`` with ``registry``'s metrics in the Prometheus text format, atomically."""
    write_atomic(path, generate_latest(registry))
