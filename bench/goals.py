"""Issue 14's speed goals, judged on the figures of one benchmark: pure, from summaries to lines.

Every goal is a ratio to nmap measured in the same benchmark, or a per-endpoint or memory figure
of the same runs, never an absolute time (except the start-up commands', which have no nmap
equivalent). A goal whose figures are missing (scenario not run, tool not chosen, runs capped)
says so instead of passing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import startup
from report import Summary, fmt


@dataclass(frozen=True, slots=True, kw_only=True)
class Goal:
    what: str
    measured: str
    met: bool | None  # None: not measured


def _ratio_goal(
    by_key: dict[tuple[str, str], Summary], key: str, tool: str, at_least: float, what: str
) -> Goal:
    ours, nmap = by_key.get((key, tool)), by_key.get((key, "nmap"))
    if not (ours and nmap and ours.eps and nmap.eps) or ours.timeouts or nmap.timeouts:
        return Goal(what=what, measured="not measured (missing or capped runs)", met=None)
    ratio = ours.eps / nmap.eps
    return Goal(
        what=what,
        measured=f"{ratio:.2f}× ({ours.eps:,.0f} / {nmap.eps:,.0f} endpoints/s)",
        met=ratio >= at_least,
    )


def _at_most(
    by_key: dict[tuple[str, str], Summary],
    key: str,
    tool: str,
    what: str,
    figure: str,
    limit: float,
) -> Goal:
    ours = by_key.get((key, tool))
    value = None
    if ours is not None:
        value = ours.cpu_ms_per_endpoint if figure == "cpu" else ours.rss_mb
    if ours is None or value is None:
        return Goal(what=what, measured="not measured", met=None)
    unit = "ms" if figure == "cpu" else "MB"
    if ours.timeouts:  # a capped run swept part of the range: no verdict either way
        return Goal(what=what, measured=f"{value:,.3g} {unit} when capped (partial)", met=None)
    return Goal(what=what, measured=f"{value:,.3g} {unit}", met=value <= limit)


def _identical(by_key: dict[tuple[str, str], Summary], key: str, what: str) -> Goal:
    rows = [by_key[k] for k in ((key, "certscan"), (key, "certscan-w2")) if k in by_key]
    verdicts = [f"{s.tool}: {s.identical}" for s in rows if s.identical != "—"]
    if not verdicts:
        return Goal(what=what, measured="not measured", met=None)
    met = all(s.identical.startswith("identical") for s in rows if s.identical != "—")
    return Goal(what=what, measured="; ".join(verdicts), met=met)


def judge(summaries: Sequence[Summary], start: Sequence[startup.Result]) -> list[Goal]:
    """Every goal whose scenario ran in this benchmark."""
    by_key = {(s.scenario.key, s.tool): s for s in summaries}
    keys = {s.scenario.key for s in summaries}
    goals: list[Goal] = []
    for r in start:
        if r.row.goal_s is None and r.row.goal_nmap is None:
            continue
        shown = f"{fmt(r.wall_s, 3)} s"
        if r.vs_nmap is not None and r.row.goal_nmap is not None:
            shown += f", {r.vs_nmap:.2f}× nmap's one-target time"
        if r.cpu_vs_nmap is not None and r.row.goal_nmap is not None:
            shown += f" (CPU {r.cpu_vs_nmap:.2f}× nmap's)"
        met = None if r.verdict == "—" else r.verdict == "met"
        what = f"{r.row.label} {startup.goal_text(r.row)}"
        goals.append(Goal(what=what, measured=shown, met=met))
    if "1" in keys:
        goals.append(_ratio_goal(by_key, "1", "certscan", 2.0, "1,000 lab: certscan ≥ 2× nmap"))
        goals.append(_identical(by_key, "1", "1,000 lab: results identical to the manifest"))
    if "8" in keys:
        goals.append(_ratio_goal(by_key, "8", "certscan", 2.5, "10,000 lab: certscan ≥ 2.5× nmap"))
        goals.append(
            _ratio_goal(by_key, "8", "certscan-w2", 3.0, "10,000 lab: --workers 2 ≥ 3× nmap")
        )
        goals.append(
            _at_most(by_key, "8", "certscan", "10,000 lab: CPU per endpoint ≤ 0.8 ms", "cpu", 0.8)
        )
        goals.append(
            _at_most(by_key, "8", "certscan", "10,000 lab: peak RSS ≤ 150 MB", "rss", 150.0)
        )
        goals.append(_identical(by_key, "8", "10,000 lab: results identical to the manifest"))
    if "8p" in keys:
        goals.append(
            _at_most(by_key, "8p", "certscan", "65,536 endpoints: peak RSS < 200 MB", "rss", 199.9)
        )
        goals.append(_identical(by_key, "8p", "65,536 endpoints: results identical"))
    return goals


def lines(goals: Sequence[Goal]) -> list[str]:
    verdict = {True: " — met", False: " — NOT met", None: " — no verdict"}
    return [
        f"{g.what}: {g.measured}{verdict[g.met] if g.measured != 'not measured' else ''}"
        for g in goals
    ]
