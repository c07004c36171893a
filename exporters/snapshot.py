"""``/metrics`` from a snapshot: built at most once per TTL (or after a scan), one build at a time.

Reading the whole inventory costs seconds at a hundred thousand endpoints (and grows with it),
longer than a Prometheus scrape should wait, so ``certscan serve`` does not read it on every
scrape. :class:`SnapshotCollector` keeps the metric families of the last build and builds again
only when they are older than ``ttl`` seconds or :meth:`SnapshotCollector.invalidate` was called
(the daemon does after each scan it stores). Never more than one build runs: a scrape that finds
one running is served the previous snapshot at once; only the very first scrape waits for a
build. A failed build raises StoreError (the scrape fails as a whole, as before) and leaves the
old snapshot in place for the next scrape to try again.

``certscan_metrics_build_seconds`` says how long the snapshot being served took to build, and
``certscan_metrics_snapshot_age_seconds`` how old it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: Seconds a snapshot is served before a scrape builds a new one.
DEFAULT_TTL = 30.0


class SnapshotCollector(Collector):
    """Serves what ``build`` returned, rebuilt per the module docstring. Thread-safe."""

    def __init__(
        self,
        build: Callable[[], list[Metric]],
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._build = build
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()  # held by the one build in progress
        self._metrics: list[Metric] | None = None
        self._built_at = 0.0
        self._build_seconds = 0.0
        self._stale = True
        self.builds = 0

    def describe(self) -> list[Metric]:
        return []

    def invalidate(self) -> None:
        """The next scrape builds a new snapshot (a scan was stored)."""
        self._stale = True

    def _fresh(self) -> bool:
        return not self._stale and self._clock() - self._built_at < self._ttl

    def collect(self) -> list[Metric]:
        # The first scrape waits for a build; later ones get the old snapshot meanwhile.
        due = self._metrics is None or not self._fresh()
        if due and self._lock.acquire(blocking=self._metrics is None):
            try:
                if self._metrics is None or not self._fresh():
                    self._rebuild()
            finally:
                self._lock.release()
        metrics = self._metrics
        assert metrics is not None  # built above, or by the build we waited for
        return [*metrics, *self._own()]

    def _rebuild(self) -> None:
        self._stale = False
        started = self._clock()
        try:
            metrics = self._build()
        except BaseException:
            self._stale = True
            raise
        self._metrics = metrics
        self._built_at = self._clock()
        self._build_seconds = self._built_at - started
        self.builds += 1

    def _own(self) -> list[Metric]:
        took = GaugeMetricFamily(
            "certscan_metrics_build_seconds",
            "Seconds the served metrics snapshot took to build from the inventory.",
        )
        took.add_metric([], self._build_seconds)
        age = GaugeMetricFamily(
            "certscan_metrics_snapshot_age_seconds",
            "Seconds since the served metrics snapshot was built.",
        )
        age.add_metric([], max(0.0, self._clock() - self._built_at))
        return [took, age]
