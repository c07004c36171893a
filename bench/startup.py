"""Scenario 6: what certscan costs before it scans anything, beside nmap's one-target time.

Theory of operation
-------------------
Six rows (``ROWS``), each one command run several times (``runs``: at least ``MIN_RUNS``, since
one run of a sub-second command says little), in turn, the order rotating each round, after one
unmeasured warm-up of each (disk cache, ``.pyc`` files, and the existing database): ``certscan
--version``, ``certscan --help``, ``certscan sweep --help``, a sweep of one refused loopback target
(127.0.0.1 port 1: nothing listens there in the benchmark's namespace) into an existing database
and into a fresh one per run, and ``nmap -n -Pn -sT -p1 --script ssl-cert -T4`` of the same
target. Each run goes through ``measure.timed_run`` like every other benchmark run (wall time,
user+system CPU and peak RSS from ``time -v``). ``table`` shows medians beside each row's goal:
an absolute time for the three informational commands, a ratio to nmap's median for the two
sweeps.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import measure
import report
import tools

MIN_RUNS = 5
TARGET, PORT = "127.0.0.1", "1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    key: str  # one of tools.STARTUP_ROWS
    label: str
    tool: str  # which --tools entry selects it
    goal_s: float | None = None  # median wall time at most this
    goal_nmap: float | None = None  # median wall time at most this many times nmap's


ROWS: tuple[Row, ...] = (
    Row(key="version", label="certscan --version", tool="certscan", goal_s=0.15),
    Row(key="help", label="certscan --help", tool="certscan", goal_s=0.5),
    Row(key="sweep-help", label="certscan sweep --help", tool="certscan", goal_s=0.5),
    Row(
        key="one-target",
        label="certscan sweep, one refused target, existing database",
        tool="certscan",
        goal_nmap=2.0,
    ),
    Row(
        key="one-target-fresh",
        label="certscan sweep, one refused target, fresh database",
        tool="certscan",
        goal_nmap=2.0,
    ),
    Row(key="nmap-one", label="nmap -sT --script ssl-cert, one refused target", tool="nmap"),
)
BY_KEY = {r.key: r for r in ROWS}
assert tuple(BY_KEY) == tools.STARTUP_ROWS


def command(row: Row, certscan: Sequence[str], run_dir: Path, db: Path) -> list[str]:
    if row.key == "version":
        return [*certscan, "--version"]
    if row.key == "help":
        return [*certscan, "--help"]
    if row.key == "sweep-help":
        return [*certscan, "sweep", "--help"]
    if row.key == "nmap-one":
        xml = run_dir / "nmap.xml"
        nmap = ["nmap", "-n", "-Pn", "-sT", f"-p{PORT}", "--script", "ssl-cert", "-T4"]
        return [*nmap, "-oX", str(xml), TARGET]
    return [*certscan, "sweep", TARGET, "-p", PORT, "--db", str(db), "--no-progress", "--json"]


def run_rows(
    *,
    chosen_tools: Sequence[str],
    runs: int,
    certscan: Sequence[str],
    runs_root: Path,
    deadline: float,
) -> list[report.RunRecord]:
    """Every chosen row ``max(runs, MIN_RUNS)`` times, after one warm-up each."""
    scenario = tools.SCENARIOS["9"]
    rows = [r for r in ROWS if r.tool in chosen_tools]
    runs = max(runs, MIN_RUNS)
    existing = runs_root / "s6-existing.db"
    records: list[report.RunRecord] = []

    def once(row: Row, run_no: int) -> report.RunRecord | None:
        run_dir = runs_root / f"s6-{row.key}-r{run_no}"
        run_dir.mkdir(parents=True, exist_ok=True)
        db = existing if row.key != "one-target-fresh" else run_dir / "inventory.db"
        left = deadline - time.monotonic()
        if left < 5:
            return None
        argv = command(row, certscan, run_dir, db)
        (run_dir / "command").write_text(shlex.join(argv) + "\n")
        stats = measure.timed_run(
            argv,
            cap=min(scenario.cap_s[row.key], left),
            stdout=run_dir / "stdout",
            stderr=run_dir / "stderr",
            cwd=run_dir,
        )
        note = "" if stats.exit_code == 0 else f"exit {stats.exit_code}: {stats.stderr_tail[-120:]}"
        return report.RunRecord(
            scenario="9",
            tool=row.key,
            run=run_no,
            target=f"{TARGET}:{PORT}" if "one" in row.key else "—",
            addresses=1,
            stats=stats,
            found=None,
            syns={},
            syn_divisor=1,
            note=note,
            argv=shlex.join(argv).replace(str(runs_root) + "/", "$RUNS/"),
        )

    for row in rows:  # warm-up (and the existing database), not recorded
        once(row, 0)
    for run_no in range(1, runs + 1):
        shift = (run_no - 1) % max(len(rows), 1)
        for row in rows[shift:] + rows[:shift]:
            record = once(row, run_no)
            if record is None:
                print(f"  run {run_no} {row.key}: skipped, time budget used up", flush=True)
                continue
            s = record.stats
            assert s is not None
            print(
                f"  run {run_no} {row.key:16s} {s.wall_s:6.3f} s  exit {s.exit_code}"
                f"  cpu {report.fmt(s.cpu_s, 3)} s  rss {report.fmt(s.rss_mb, 1)} MB",
                flush=True,
            )
            if record.note:
                print(f"    note: {record.note}", flush=True)
            records.append(record)
    return records


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    row: Row
    runs: int
    failures: int
    wall_s: float | None  # median
    fastest_s: float | None
    cpu_s: float | None
    rss_mb: float | None
    vs_nmap: float | None  # median wall ÷ nmap's median wall
    cpu_vs_nmap: float | None  # median CPU ÷ nmap's median CPU (steadier on a busy machine)
    verdict: str  # "met", "not met", "—"


def _median(values: Sequence[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    mid = len(present) // 2
    return present[mid] if len(present) % 2 else (present[mid - 1] + present[mid]) / 2


def results(records: Sequence[report.RunRecord]) -> list[Result]:
    """Medians per row, each judged against its goal."""
    stats = {r.key: [x.stats for x in records if x.tool == r.key and x.stats] for r in ROWS}
    walls = {k: _median([s.wall_s for s in v if s.exit_code == 0]) for k, v in stats.items()}
    nmap = walls.get("nmap-one")
    nmap_cpu = _median([s.cpu_s for s in stats["nmap-one"]])
    out = []
    for row in ROWS:
        mine = stats[row.key]
        if not mine:
            continue
        wall = walls[row.key]
        vs_nmap = wall / nmap if wall is not None and nmap else None
        verdict = "—"
        if row.goal_s is not None and wall is not None:
            verdict = "met" if wall <= row.goal_s else "not met"
        elif row.goal_nmap is not None and vs_nmap is not None:
            verdict = "met" if vs_nmap <= row.goal_nmap else "not met"
        ok = [s.wall_s for s in mine if s.exit_code == 0]
        cpu = _median([s.cpu_s for s in mine])
        out.append(
            Result(
                row=row,
                runs=len(mine),
                failures=sum(1 for s in mine if s.exit_code != 0),
                wall_s=wall,
                fastest_s=min(ok) if ok else None,
                cpu_s=cpu,
                rss_mb=_median([s.rss_mb for s in mine]),
                vs_nmap=vs_nmap if row.key != "nmap-one" else None,
                cpu_vs_nmap=cpu / nmap_cpu
                if cpu is not None and nmap_cpu and row.key != "nmap-one"
                else None,
                verdict=verdict,
            )
        )
    return out


def goal_text(row: Row) -> str:
    if row.goal_s is not None:
        return f"≤ {row.goal_s:g} s"
    if row.goal_nmap is not None:
        return f"≤ {row.goal_nmap:g}× nmap"
    return "—"


def table(found: Sequence[Result]) -> str:
    lines = [
        "| Start-up (scenario 9) | Runs | Median wall s | Fastest s | × nmap one-target "
        "| CPU s | CPU × nmap | Peak RSS MB | Goal | Goal met |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in found:
        runs = f"{r.runs}" + (f" ({r.failures} failed)" if r.failures else "")
        ratio = f"{r.vs_nmap:.2f}×" if r.vs_nmap is not None else "—"
        cpu_ratio = f"{r.cpu_vs_nmap:.2f}×" if r.cpu_vs_nmap is not None else "—"
        lines.append(
            f"| {r.row.label} | {runs} | {report.fmt(r.wall_s, 3)} | {report.fmt(r.fastest_s, 3)} "
            f"| {ratio} | {report.fmt(r.cpu_s, 3)} | {cpu_ratio} | {report.fmt(r.rss_mb, 1)} "
            f"| {goal_text(r.row)} | {r.verdict} |"
        )
    return "\n".join(lines) + "\n"
