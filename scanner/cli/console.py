"""Everything certscan prints for a person: safe text, progress and tables.

Certificate fields and server replies are attacker-controlled. Before any of them reaches a
terminal, :func:`safe` replaces control characters (C0, C1, DEL), bidi overrides and other
format characters with visible escapes, and tables are built from :class:`rich.text.Text`
objects so no ``[markup]`` in a certificate is ever interpreted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from scanner.sweep.counters import SweepCounters
from scanner.sweep.events import Tick
from scanner.text import MAX_CELL, safe

if TYPE_CHECKING:
    from scanner.inventory.store import EndpointRecord


def cell(value: object, limit: int = MAX_CELL, style: str = "") -> Text:
    """A table cell that rich never parses for markup."""
    return Text(safe(value, limit), style=style)


def days_left(not_after: datetime | None, now: datetime | None = None) -> int | None:
    """Whole days until ``not_after`` (negative once expired)."""
    if not_after is None:
        return None
    delta = not_after - (now or datetime.now(UTC))
    return int(delta.total_seconds() // 86400)


def expiry_style(days: int | None) -> str:
    if days is None:
        return "dim"
    if days < 0:
        return "bold red"
    if days <= 7:
        return "red"
    if days <= 30:
        return "yellow"
    return "green"


class ProgressDisplay:
    """A rich progress bar on a terminal; plain periodic lines otherwise; nothing when disabled."""

    def __init__(self, console: Console, counters: SweepCounters, *, enabled: bool) -> None:
        self._console = console
        self._counters = counters
        self._enabled = enabled
        self._interactive = enabled and console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = time.monotonic()

    def __enter__(self) -> ProgressDisplay:
        if self._interactive:
            self._progress = Progress(
                TextColumn("{task.fields[phase]:>8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>7.0f}/s"),
                TextColumn("open {task.fields[open]}"),
                TextColumn("certs {task.fields[certs]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self._console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "sweep", total=self._counters.total, rate=0.0, open=0, certs=0, phase="sweeping"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresh(final=True)
        if self._progress is not None:
            self._progress.stop()

    def refresh(self, *, final: bool = False) -> None:
        c = self._counters
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=c.done,
                rate=c.rate,
                open=c.open,
                certs=len(c.certificates),
                phase=c.phase,
            )
        elif self._enabled:
            now = time.monotonic()
            if final or now - self._last_line >= 5.0:
                self._last_line = now
                pct = 100.0 * c.done / c.total if c.total else 100.0
                phase = "" if c.phase == "sweeping" else f"[{c.phase}] "
                self._console.print(
                    f"progress: {phase}{c.done}/{c.total} ({pct:.1f}%) {c.rate:.0f}/s "
                    f"open={c.open} certificates={len(c.certificates)} "
                    f"elapsed={c.elapsed:.1f}s",
                    markup=False,
                    highlight=False,
                )


class ConsoleEvents:
    """The sweep's events (:class:`scanner.sweep.events.SweepEvents`) on a terminal: notes as
    plain lines (never markup), a progress bar or periodic lines, the summary table."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def note(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False)

    def live(self, counters: SweepCounters) -> AbstractContextManager[Tick]:
        return self._live(counters)

    @contextmanager
    def _live(self, counters: SweepCounters) -> Iterator[Tick]:
        with ProgressDisplay(self._console, counters, enabled=True) as display:
            yield display.refresh

    def finished(self, counters: SweepCounters, *, scan_id: int | None, db_label: str) -> None:
        self._console.print(summary_table(counters, scan_id=scan_id, db_label=db_label))


def summary_table(counters: SweepCounters, *, scan_id: int | None, db_label: str) -> Table:
    """The table printed after a sweep."""
    table = Table(title="sweep summary", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("scan", str(scan_id) if scan_id is not None else "-")
    table.add_row("targets", str(counters.total))
    if counters.discovery:
        table.add_row("discovery", cell(counters.discovery, 200))
    table.add_row("done", str(counters.done))
    table.add_row("open (TCP accepted)", str(counters.open))
    table.add_row("TLS chains captured", str(counters.chains))
    table.add_row("distinct certificates", str(len(counters.certificates)))
    for status, n in sorted(counters.by_status.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(f"  {status}", str(n))
    table.add_row("elapsed", f"{counters.elapsed:.2f} s")
    table.add_row("rate", f"{counters.rate:.0f} targets/s")
    table.add_row("inventory", cell(db_label, 120))
    return table


def simple_table(title: str, headers: Iterable[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for h in headers:
        table.add_column(h, overflow="fold")
    return table


def inventory_table(records: Sequence[EndpointRecord]) -> Table:
    """Endpoints with their leaf certificate, soonest expiry first (the order given); an
    endpoint with alternative chains (``--all-certs``) gets one more row per chain."""
    show_sni = any(rec.sni for rec in records)
    table = Table(title="inventory (soonest expiry first)", title_justify="left")
    table.add_column("endpoint", no_wrap=True)
    if show_sni:
        table.add_column("sni", overflow="ellipsis", no_wrap=True, max_width=32)
    table.add_column("status", overflow="ellipsis", no_wrap=True, max_width=30)
    table.add_column("subject CN", overflow="ellipsis", no_wrap=True, max_width=34)
    table.add_column("issuer CN", overflow="ellipsis", no_wrap=True, max_width=32)
    table.add_column("not after", no_wrap=True)
    table.add_column("days", justify="right", no_wrap=True)
    table.add_column("key", no_wrap=True)
    table.add_column("sig", no_wrap=True)
    for rec in records:
        host = f"[{rec.address}]" if ":" in rec.address else rec.address
        status = rec.status if rec.error is None else f"{rec.status}: {rec.error}"
        # One row per chain: the usual one, then each --all-certs alternative ("alt chain").
        chains = [(status, rec.chain)] + [("alt chain", alt) for alt in rec.alt_chains]
        for label, chain in chains:
            leaf = chain[0] if chain else None
            days = days_left(leaf.not_after if leaf else None)
            key = f"{leaf.key_type or '?'} {leaf.key_bits or ''}".strip() if leaf else ""
            row = [cell(f"{host}:{rec.port}")]
            if show_sni:
                row.append(cell(rec.sni or ""))
            row += [
                cell(label, 60),
                cell(leaf.subject_cn if leaf else ""),
                cell(leaf.issuer_cn if leaf else ""),
                cell(leaf.not_after.strftime("%Y-%m-%d") if leaf and leaf.not_after else ""),
                cell("" if days is None else days, style=expiry_style(days)),
                cell(key),
                cell(leaf.signature_hash if leaf else ""),
            ]
            table.add_row(*row)
    return table


def stdout_console() -> Console:
    """A console for tables on stdout: the terminal's width, or 180 columns when piped."""
    probe = Console(highlight=False)
    return probe if probe.is_terminal else Console(highlight=False, width=180)
