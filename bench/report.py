"""Medians and the Markdown report: pure functions from run records to text."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from measure import RunStats
from tools import Found, Scenario


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One invocation of one tool in one scenario."""

    scenario: str
    tool: str
    run: int  # 1-based
    target: str
    addresses: int
    stats: RunStats | None  # None: skipped (budget exhausted)
    found: Found | None
    syns: Mapping[str, int]
    syn_divisor: int
    note: str = ""
    argv: str = ""  # the command line as run, "" when skipped
    identical: str = ""  # certscan on a lab: identical.check's verdict ("" not checked)

    @property
    def syns_per_endpoint(self) -> float | None:
        if self.stats is None or not self.syns:
            return None
        return next(iter(self.syns.values())) / self.syn_divisor


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """Medians over the runs of one tool in one scenario."""

    scenario: Scenario
    tool: str
    target: str
    runs: int
    timeouts: int
    failures: int
    wall_s: float | None
    eps: float | None
    cpu_s: float | None
    rss_mb: float | None
    syns: float | None
    found: str
    unavailable: str = ""
    tree_mb: float | None = None  # sum of every process's peak RSS (sampled from /proc)
    walls: tuple[float | None, ...] = ()  # wall time per round (None: skipped or capped)
    identical: str = "—"  # results against the manifest, over the runs (certscan on a lab)

    @property
    def cpu_ms_per_endpoint(self) -> float | None:
        """User+system CPU ÷ endpoints: the lab's live endpoints, else the targets swept."""
        if self.cpu_s is None:
            return None
        return 1000 * self.cpu_s / (self.scenario.live or self.scenario.addresses(self.tool))


def summarise(scenario: Scenario, tool: str, records: Sequence[RunRecord]) -> Summary:
    done = [r for r in records if r.stats is not None]
    stats = [r.stats for r in done if r.stats is not None]
    wall = _median([s.wall_s for s in stats])
    addresses = scenario.addresses(tool)
    found = "—"
    founds = [r.found for r in done if r.found is not None]
    if founds and scenario.live:
        matched = _median([f.matched for f in founds])
        found = f"{fmt(matched, 0)}/{scenario.live:,}"
        chains = [f.full_chain for f in founds]
        extra = []
        if any(c is None for c in chains):
            extra.append("leaf only")
        else:
            extra.append(f"{fmt(_median([float(c) for c in chains if c is not None]), 0)} chains")
        if scenario.live_starttls:
            starttls = _median([f.starttls for f in founds])
            extra.append(f"STARTTLS {fmt(starttls, 0)}/{scenario.live_starttls:,}")
        found += f" ({'; '.join(extra)})"
    return Summary(
        scenario=scenario,
        tool=tool,
        target=scenario.targets[tool],
        runs=len(stats),
        timeouts=sum(1 for s in stats if s.timed_out),
        failures=sum(1 for s in stats if not s.timed_out and s.exit_code != 0),
        wall_s=wall,
        eps=addresses / wall if wall else None,
        cpu_s=_median([s.cpu_s for s in stats]),
        rss_mb=_median([s.rss_mb for s in stats]),
        syns=_median([r.syns_per_endpoint for r in done]),
        found=found,
        tree_mb=_median([s.tree_hwm_mb for s in stats]),
        walls=tuple(_round_wall(records, n) for n in sorted({r.run for r in records})),
        identical=_identical(done),
    )


def _identical(done: Sequence[RunRecord]) -> str:
    """ "identical (n/n runs)", or how many runs differed and the first difference."""
    checked = [r.identical for r in done if r.identical]
    if not checked:
        return "—"
    differing = [v for v in checked if v != "identical"]
    if not differing:
        return f"identical ({len(checked)}/{len(checked)} runs)"
    return f"{len(differing)}/{len(checked)} runs {differing[0]}"


def _round_wall(records: Sequence[RunRecord], run: int) -> float | None:
    for r in records:
        if r.run == run and r.stats is not None and not r.stats.timed_out:
            return r.stats.wall_s
    return None


#: Multi-process variants and the single-process tool each is compared with.
BASELINE = {"certscan-w2": "certscan"}


def speed_up(variant: Summary, base: Summary) -> float | None:
    """``base`` median wall ÷ ``variant`` median wall (None if either is missing or capped)."""
    if variant.timeouts or base.timeouts or not variant.wall_s or not base.wall_s:
        return None
    return base.wall_s / variant.wall_s


HEADER = (
    "| Scenario | Tool | Target | Runs | Wall s | Endpoints/s | Speed-up vs 1 process "
    "| Certificates found | Same as manifest | CPU s | CPU ms/endpoint "
    "| Peak RSS MB (largest process) | Σ peak RSS MB (all processes) "
    "| SYNs/endpoint |\n"
    "|---|---|---|--:|--:|--:|--:|---|---|--:|--:|--:|--:|--:|\n"
)


def table(summaries: Sequence[Summary]) -> str:
    by_key = {(s.scenario.key, s.tool): s for s in summaries}
    rows = []
    for s in summaries:
        if s.unavailable:
            rows.append(
                f"| {s.scenario.key} | {s.tool} | {s.target} | {s.unavailable} "
                "| — | — | — | — | — | — | — | — | — | — |"
            )
            continue
        base = by_key.get((s.scenario.key, BASELINE.get(s.tool, "")))
        gain = speed_up(s, base) if base else None
        gain_text = f"{gain:.2f}×" if gain else "—"
        runs = str(s.runs) if s.runs else "0 (time budget used up)"
        # A capped run's wall time is a lower bound, so the true median is at least ours.
        bound, rate_bound = ("≥", "≤") if s.timeouts else ("", "")
        if s.timeouts:
            runs += f" ({s.timeouts} killed at the cap)"
        if s.failures:
            runs += f" ({s.failures} failed)"
        rows.append(
            f"| {s.scenario.key} | {s.tool} | {s.target} | {runs} | {bound}{fmt(s.wall_s)} "
            f"| {rate_bound}{fmt(s.eps, 0)} | {gain_text} | {s.found} | {s.identical} "
            f"| {fmt(s.cpu_s)} | {fmt(s.cpu_ms_per_endpoint, 3)} "
            f"| {fmt(s.rss_mb, 1)} | {fmt(s.tree_mb, 1)} | {fmt(s.syns)} |"
        )
    return HEADER + "\n".join(rows) + "\n"


def ratios(summaries: Sequence[Summary]) -> list[str]:
    """Per scenario: each certscan variant's endpoints-per-second ratio to nmap, where both ran,
    and each multi-process variant's speed-up over single-process certscan in the same run."""
    lines = []
    by_key: dict[tuple[str, str], Summary] = {(s.scenario.key, s.tool): s for s in summaries}
    for key in sorted({s.scenario.key for s in summaries}):
        theirs = by_key.get((key, "nmap"))
        for tool in ("certscan", *BASELINE):
            ours = by_key.get((key, tool))
            if ours and theirs and ours.eps and theirs.eps:
                # A capped run makes its rate an upper bound; both capped: no meaningful ratio.
                bound = {(True, False): "≤", (False, True): "≥"}.get(
                    (bool(ours.timeouts), bool(theirs.timeouts)), ""
                )
                if ours.timeouts and theirs.timeouts:
                    bound = "~ (both capped) "
                lines.append(
                    f"scenario {key}: {tool}/nmap endpoints per second = "
                    f"{bound}{ours.eps / theirs.eps:.2f} ({ours.eps:,.0f} / {theirs.eps:,.0f})"
                )
        for tool, base_tool in BASELINE.items():
            variant, base = by_key.get((key, tool)), by_key.get((key, base_tool))
            gain = speed_up(variant, base) if variant and base else None
            if variant and base and gain:
                rounds = [
                    f"{b / v:.2f}" if b and v else "—"
                    for b, v in zip(base.walls, variant.walls, strict=False)
                ]
                lines.append(
                    f"scenario {key}: {tool} speed-up over {base_tool} (1 process) = "
                    f"{base_tool} wall ÷ {tool} wall = {base.wall_s:.2f} s / {variant.wall_s:.2f} s"
                    f" = {gain:.2f}× (per round: {', '.join(rounds)})"
                )
    return lines


def runs_table(records: Sequence[RunRecord]) -> str:
    """Every run, for the record."""
    out = [
        "| Scenario | Tool | Run | Wall s | Exit | CPU s | Peak RSS MB (largest) "
        "| Σ peak RSS MB (processes) | Max Σ RSS MB | Leaves ✓ | Chains | SYNs | Note |",
        "|---|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in records:
        if r.stats is None:
            out.append(
                f"| {r.scenario} | {r.tool} | {r.run} | — | skipped | — | — | — | — | — | — "
                f"| — | {r.note} |"
            )
            continue
        s, f = r.stats, r.found
        exit_text = "killed at cap" if s.timed_out else str(s.exit_code)
        syns = ", ".join(f"{k}={v}" for k, v in r.syns.items())
        garbled = f"{f.garbled} unreadable output records" if f and f.garbled else ""
        mail = f"{f.starttls} via STARTTLS" if f and f.starttls else ""
        parts = (r.note, mail, f.note if f else "", garbled, r.identical)
        note = "; ".join(x for x in parts if x)
        out.append(
            f"| {r.scenario} | {r.tool} | {r.run} | {s.wall_s:.2f} | {exit_text} "
            f"| {fmt(s.cpu_s)} | {fmt(s.rss_mb, 1)} "
            f"| {fmt(s.tree_hwm_mb, 1)} ({s.processes}) | {fmt(s.tree_rss_mb, 1)} "
            f"| {f.matched if f else '—'} "
            f"| {f.full_chain if f and f.full_chain is not None else '—'} | {syns} | {note} |"
        )
    return "\n".join(out) + "\n"


def commands(records: Sequence[RunRecord]) -> str:
    """The command line of each tool in each scenario (first run that ran)."""
    seen: dict[tuple[str, str], str] = {}
    for r in records:
        if r.argv and (r.scenario, r.tool) not in seen:
            seen[(r.scenario, r.tool)] = r.argv
    return "".join(f"- scenario {s}, {t}: `{argv}`\n" for (s, t), argv in seen.items())
