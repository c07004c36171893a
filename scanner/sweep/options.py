"""The sweep use case's inputs and outputs: :class:`SweepOptions` (what the operator asked for,
validated by the CLI, a ``serve`` job or ``dispatch``), :class:`SweepReport` (what the sweep
did), and the pure helpers shared by every caller (the scan spec that makes a sweep resumable,
the default STARTTLS protocol). No I/O."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scanner import models
from scanner.errors import UsageError
from scanner.models import EngineLimits, Severity
from scanner.plan import targets
from scanner.plan.shards import ShardSpec
from scanner.sweep.counters import SweepCounters
from scanner.sweep.events import SweepEvents
from scanner.sweep.modes import DiscoverOptions

if TYPE_CHECKING:  # kept out of `sweep --help` and `--dry-run`: each loads when a sweep runs
    from reports.criteria import Criteria
    from reports.destination import ReportOutput
    from reports.model import EndpointView
    from reports.output import FindingsTally
    from scanner.engine.discovery import DiscoveryOptions
    from scanner.inventory.store import FindingChanges, Inventory

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_INTERRUPTED",
    "AfterSweep",
    "SweepOptions",
    "SweepReport",
    "join_specs",
    "starttls_default",
    "sweep_spec",
]


def _empty_tally() -> FindingsTally:
    from reports.output import FindingsTally

    return FindingsTally()


def default_discover(env: Mapping[str, str] | None = None) -> DiscoverOptions:
    """The discovery a sweep gets when its caller names none: ``$CERTSCAN_DISCOVER`` (``auto``,
    ``syn`` or ``connect``, as ``--discover`` reads it too), else ``auto``."""
    mode = (os.environ if env is None else env).get("CERTSCAN_DISCOVER", "") or "auto"
    return DiscoverOptions(mode=mode)


def _no_discovery() -> DiscoveryOptions:
    from scanner.engine.discovery import DiscoveryOptions

    return DiscoveryOptions()


#: A step run after the findings are recorded, with the open inventory and the sweep's events.
AfterSweep = Callable[["Inventory", SweepEvents], Awaitable[object]]

#: Exit code when the user interrupts a sweep (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
#: Exit code when a finding is at or above ``--fail-on``.
EXIT_FINDINGS = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepOptions:
    """What the user asked for, already split into lists (files read, strings not yet parsed)."""

    specs: tuple[str, ...]
    ports: tuple[int, ...]
    #: ``-p 2525/smtp``: the protocol of those ports (``Target.protocol``).
    protocols: tuple[tuple[int, str], ...] = ()
    #: ``--starttls``: ``auto`` (by port), ``off`` (implicit TLS) or a protocol for every port.
    starttls: str = "auto"
    excludes: tuple[str, ...] = ()
    blocklist: tuple[str, ...] = ()
    sni: str | None = None
    #: ``--sni-from``/``--sni-file``: more names to try on each address that handshook.
    discovery: DiscoveryOptions = field(default_factory=lambda: _no_discovery())
    #: ``--discover``, ``--syn-retries``, ``--syn-wait`` (``scanner.sweep.discover``).
    discover: DiscoverOptions = field(default_factory=lambda: default_discover())
    allow_public: bool = False
    max_targets: int = 2**24
    resolve_mode: str = "all"
    limits: EngineLimits = field(default_factory=EngineLimits)
    db_url: str
    db_label: str
    resume: bool = False
    json_mode: str = "off"  # "off", "open" (endpoints that accepted a connection), "all"
    progress: bool = True
    summary: bool = True
    dry_run: bool = False
    dry_run_count: int = 20
    #: Policy and trust for the findings; None: the default config (CERTSCAN_CONFIG, XDG).
    criteria: Criteria | None = None
    report: ReportOutput | None = None  # --report: written after the sweep unless interrupted
    fail_on: Severity | None = None  # --fail-on
    #: Keep every judged view in the :class:`SweepReport` (``demo`` shows them); otherwise
    #: only a ``--report`` keeps them, and the report holds the counts.
    keep_views: bool = False
    job: str | None = None  # the `certscan serve` job running this sweep, None for a plain sweep
    #: What to run once the findings are recorded (``--run-hooks``: the renewal hooks), unless
    #: the sweep was interrupted. Given by the caller: the sweep floor knows no hooks.
    after: AfterSweep | None = None
    #: ``--seed/--shards/--shard``: sweep only this shard of the seeded permutation.
    shard: ShardSpec | None = None
    #: ``--workers N``: N processes over N shards (seeded by ``seed``), one inventory.
    workers: int = 1
    seed: int = 0


@dataclass(slots=True)
class SweepReport:
    """What a sweep did. ``views`` are the endpoints it observed, judged, when they were kept
    (``keep_views`` or ``--report``; never for a dry run); ``tally`` counts them either way;
    ``changes`` is what recording their findings did; ``failing``: a finding reached --fail-on."""

    scan_id: int | None
    counters: SweepCounters
    interrupted: bool
    views: tuple[EndpointView, ...] = ()
    changes: FindingChanges | None = None
    failing: bool = False
    #: The judged endpoints and their findings by severity (the summary line's counts).
    tally: FindingsTally = field(default_factory=lambda: _empty_tally())

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FINDINGS if self.failing else 0


def starttls_default(mode: str) -> str | None:
    """The ``Target.protocol`` of ports given without one: ``auto`` -> ``None`` (chosen by
    port), ``off`` -> ``"tls"``, a protocol name -> itself. UsageError for anything else."""
    if mode == "auto":
        return None
    if mode == "off":
        return "tls"
    try:
        return targets.check_protocol(mode)
    except ValueError:
        choices = ", ".join(("auto", "off", *models.PROTOCOLS))
        raise UsageError(f"--starttls must be one of {choices} (got {mode!r})") from None


def sweep_spec(options: SweepOptions) -> dict[str, object]:
    from scanner.sweep.pipeline import scan_spec

    lim = options.limits
    starttls: dict[str, object] = {}  # only when set: older scans stay resumable
    if options.protocols:
        starttls["protocols"] = [list(pair) for pair in options.protocols]
    if options.starttls != "auto":
        starttls["starttls"] = options.starttls
    if options.discovery.sources:
        starttls["sni_from"] = sorted(options.discovery.sources)
    if options.discovery.names:
        starttls["sni_names"] = list(options.discovery.names)
    if lim.all_certs:
        starttls["all_certs"] = True
    if options.shard is not None:
        starttls["shard"] = [options.shard.seed, options.shard.shards, options.shard.shard]
    if options.workers > 1:
        starttls["workers"] = [options.seed, options.workers]
    if options.job:
        starttls["job"] = options.job  # the serve job that ran it: the scan metrics' job label
    return scan_spec(
        **starttls,
        specs=list(options.specs),
        ports=list(options.ports),
        excludes=list(options.excludes),
        blocklist=list(options.blocklist),
        sni=options.sni,
        allow_public=options.allow_public,
        resolve=options.resolve_mode,
        connect_timeout=lim.connect_timeout,
        handshake_timeout=lim.handshake_timeout,
        deadline=lim.target_deadline,
    )


def join_specs(*groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(s for g in groups for s in g)
