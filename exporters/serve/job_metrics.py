"""Metrics about the daemon's scan jobs, read from the scheduler at scrape time.

The inventory metrics (:mod:`exporters.prometheus`) describe what the scans found, and their
``certscan_scan_*`` series the latest finished scan whatever started it. These say how each
configured job is doing, by its name (``job`` is the name from ``[jobs.NAME]``; Prometheus shows
it as ``exported_job`` unless the scrape config sets ``honor_labels: true``):

``certscan_job_running{job}``
    1 while the job runs.
``certscan_job_runs_total{job}``, ``certscan_job_failures_total{job}``
    Runs started and runs that failed since the daemon started.
``certscan_job_last_success_timestamp_seconds{job}``
    When the job last finished without an error; absent until it has.
``certscan_job_next_run_timestamp_seconds{job}``
    Its next scheduled slot.

Job names are validated config keys (1-64 characters of ``A-Za-z0-9_.-``), so they are safe as
label values; there is one series per job and metric.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporters.serve.scheduler import Scheduler

__all__ = ["JobCollector"]


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


class JobCollector(Collector):
    """Reads ``scheduler.jobs`` on every scrape (no locking: a scrape may see one job
    mid-update, never a torn value)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        running = GaugeMetricFamily(
            "certscan_job_running", "1 while the scan job runs.", labels=["job"]
        )
        runs = CounterMetricFamily(
            "certscan_job_runs", "Runs of the scan job since the daemon started.", labels=["job"]
        )
        failures = CounterMetricFamily(
            "certscan_job_failures",
            "Runs of the scan job that failed since the daemon started.",
            labels=["job"],
        )
        success = GaugeMetricFamily(
            "certscan_job_last_success_timestamp_seconds",
            "When the scan job last finished without an error (Unix time).",
            labels=["job"],
        )
        upcoming = GaugeMetricFamily(
            "certscan_job_next_run_timestamp_seconds",
            "The scan job's next scheduled run (Unix time).",
            labels=["job"],
        )
        jobs = dict(self._scheduler.jobs)  # one atomic copy: the event loop may reload meanwhile
        for name, state in sorted(jobs.items()):
            running.add_metric([name], 1.0 if state.running else 0.0)
            runs.add_metric([name], float(state.runs))
            failures.add_metric([name], float(state.failures))
            if (value := _ts(state.last_success)) is not None:
                success.add_metric([name], value)
            if (value := _ts(state.next_run)) is not None:
                upcoming.add_metric([name], value)
        return [running, runs, failures, success, upcoming]
