"""Live counters of one sweep: updated by the pipeline (or the worker pool, or a zone agent) and
read by whatever shows progress (the CLI's bar, the daemon's log, ``--json`` summaries)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["SweepCounters"]


@dataclass(slots=True)
class SweepCounters:
    """Live counters of a sweep, updated by the pipeline and read by progress displays."""

    total: int
    done: int = 0
    open: int = 0  # targets whose TCP connection was accepted
    chains: int = 0  # targets that yielded a certificate chain
    certificates: set[str] = field(default_factory=set)  # distinct sha256 seen
    by_status: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    #: What the bar says is running: "sweeping", or with SYN discovery "syn" then "tls".
    phase: str = "sweeping"
    #: Which discovery ran, one line for the summary (``scanner.sweep.discover.summary``).
    discovery: str = ""

    def count(self, status: str, *, connected: bool, chain: Sequence[str]) -> None:
        self.done += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if connected:
            self.open += 1
        if chain:
            self.chains += 1
            self.certificates.update(chain)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0
