"""The sweep options of a ``[jobs.NAME]`` table beyond targets, ports and schedule: the same
choices as ``certscan sweep``'s flags, validated the same way, each error naming the key.

=================  ===========================  ================================================
key                sweep flag                   value
=================  ===========================  ================================================
``sni_from``       ``--sni-from``               list of ``"san"``, ``"ptr"``
``sni_file``       ``--sni-file``               file of names (relative to the config file)
``all_certs``      ``--all-certs``              true / false
``probe_protocols`` ``--probe-protocols``       true / false
``blocklist``      ``--blocklist``              file of CIDRs never to scan
``exclude_file``   ``--exclude-file``           file of exclusions
``rate``           ``--rate``                   new connections per second (> 0)
``per_address``    ``--per-address``            connections to one address at once (>= 1)
``handshakes``     ``--handshakes``             TLS handshakes in flight (>= 1)
``resolve``        ``--resolve``                ``"all"`` or ``"first"``
``max_targets``    ``--max-targets``            refuse larger plans (>= 1)
``workers``        ``--workers``                processes (1-256; see below)
``run_timeout``    (none)                       seconds a ``workers > 1`` run may take
                                                (default 21600 = 6 h)
=================  ===========================  ================================================

A job with ``workers`` above 1 runs each sweep in a child process
(``python -m exporters.serve.child``, :mod:`exporters.serve.child`): sweep workers are forked
before an event loop starts, and the daemon's loop runs for its whole life, so the child --
whose loop has not started -- forks them, exactly as ``certscan sweep --workers N`` does. A run
past ``run_timeout`` is stopped (SIGTERM: the scan is marked interrupted) and the run fails.
A zone job cannot have workers (its agents sweep). Pure apart from reading the named files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from scanner.engine import discovery
from scanner.engine.discovery import DiscoveryOptions
from scanner.errors import UsageError
from scanner.plan import targets
from scanner.plan.lists import read_list_file

__all__ = ["JOB_SWEEP_KEYS", "JobSweepOptions", "job_sweep_options"]

JOB_SWEEP_KEYS: tuple[str, ...] = (
    "sni_from",
    "sni_file",
    "all_certs",
    "blocklist",
    "exclude_file",
    "rate",
    "per_address",
    "handshakes",
    "resolve",
    "max_targets",
    "workers",
    "run_timeout",
)
#: ``workers`` above this is a mistake (``certscan sweep --workers`` has the same bound).
MAX_WORKERS = 256
DEFAULT_RUN_TIMEOUT = 6 * 3600.0


class Section(Protocol):
    data: Any

    def fail(self, key: str, message: str) -> UsageError: ...

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any: ...

    def strings(self, key: str) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSweepOptions:
    """The values of :data:`JOB_SWEEP_KEYS` (defaults: ``certscan sweep``'s)."""

    discovery: DiscoveryOptions = field(default_factory=DiscoveryOptions)
    all_certs: bool = False
    blocklist: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()  # from exclude_file
    rate: float | None = None
    per_address: int = 2
    handshakes: int = 256
    resolve_mode: str = "all"
    max_targets: int = 2**24
    #: Sweep processes; above 1 each run is a child process (module docstring).
    workers: int = 1
    #: Seconds a child-process run may take before it is stopped.
    run_timeout: float = DEFAULT_RUN_TIMEOUT


def _at_least(sec: Section, key: str, default: int, low: int) -> int:
    value = sec.get(key, int, default)
    if value < low:
        raise sec.fail(key, f"must be at least {low} (got {value})")
    return int(value)


def _file(sec: Section, key: str, base: Path) -> list[str]:
    name = sec.get(key, str)
    if name is None:
        return []
    try:
        return read_list_file(base / Path(name).expanduser())
    except UsageError as exc:
        raise sec.fail(key, str(exc)) from None


def job_sweep_options(sec: Section, base: Path) -> JobSweepOptions:
    """The sweep options of the job table ``sec`` (module docstring); files are relative to
    ``base``, the config file's directory."""
    sources = sec.strings("sni_from")
    try:
        found = discovery.parse_options(sources, _file(sec, "sni_file", base))
    except UsageError as exc:
        key = "sni_from" if "--sni-from" in str(exc) else "sni_file"
        raise sec.fail(key, str(exc).split(": ", 1)[-1]) from None
    rate = sec.get("rate", (int, float))
    if rate is not None and rate <= 0:
        raise sec.fail("rate", f"must be positive (got {rate})")
    resolve = sec.get("resolve", str, "all")
    if resolve not in ("all", "first"):
        raise sec.fail("resolve", f"must be 'all' or 'first' (got {resolve!r})")
    workers = _at_least(sec, "workers", 1, 1)
    if workers > MAX_WORKERS:
        raise sec.fail("workers", f"must be between 1 and {MAX_WORKERS} (got {workers})")
    if workers > 1 and sec.get("zone", str) is not None:
        raise sec.fail("workers", "a zone job is swept by its agents: drop workers or zone")
    run_timeout = sec.get("run_timeout", (int, float), DEFAULT_RUN_TIMEOUT)
    if not 1 <= run_timeout <= 7 * 86400:
        raise sec.fail("run_timeout", f"must be 1 second to 7 days (got {run_timeout})")
    blocklist, excludes = _file(sec, "blocklist", base), _file(sec, "exclude_file", base)
    for key, entries, what in (
        ("blocklist", blocklist, "blocklist entry"),
        ("exclude_file", excludes, "exclusion"),
    ):
        try:
            targets.check_address_entries(entries, what)
        except UsageError as exc:
            raise sec.fail(key, str(exc)) from None
    return JobSweepOptions(
        discovery=found,
        all_certs=sec.get("all_certs", bool, False),
        blocklist=tuple(blocklist),
        excludes=tuple(excludes),
        rate=None if rate is None else float(rate),
        per_address=_at_least(sec, "per_address", 2, 1),
        handshakes=_at_least(sec, "handshakes", 256, 1),
        resolve_mode=resolve,
        max_targets=_at_least(sec, "max_targets", 2**24, 1),
        workers=workers,
        run_timeout=float(run_timeout),
    )
