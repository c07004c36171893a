"""The expiry timeline of the HTML report: distinct certificates per week, as SVG geometry.

One bar per week for :data:`TIMELINE_WEEKS` weeks from the report's ``generated_at``, with an
``expired`` bar before them and a ``later`` bar after. Everything the template draws — bar
rectangles, count labels, date labels, tooltips, grid lines — is computed here in a fixed
900 x 240 viewBox, so the template only places elements and the SVG scales with the page.
Tones are colour hints (expired or within a week, within four weeks, later), not findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reports.output import Report

__all__ = ["TIMELINE_WEEKS", "Bar", "Timeline", "timeline"]

TIMELINE_WEEKS = 26
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One bar: its rectangle, its count and the texts drawn with it."""

    x: float
    y: float
    width: float
    height: float
    count: int
    label: str | None  # under the bar, every few weeks
    title: str  # tooltip
    tone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """The whole chart: viewBox size, axis positions, bars and grid lines."""

    width: int
    height: int
    base: float  # y of the axis
    top: float
    now_x: float  # x of the "now" line, between the expired bar and the first week
    left: float
    right: float
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, int], ...]  # (y, value) grid lines
    undated: int  # certificates without a readable not_after


def timeline(report: Report) -> Timeline:
    """Distinct certificates per expiry week, as bar geometry in a 900 x 240 viewBox."""
    now = report.generated_at
    slots = TIMELINE_WEEKS + 2  # expired, the weeks, later
    counts = [0] * slots
    undated = 0
    for use in report.certificates:
        end = use.cert.not_after
        if end is None:
            undated += 1
        elif end < now:
            counts[0] += 1
        else:
            counts[min(1 + int((end - now) / timedelta(weeks=1)), slots - 1)] += 1
    width, height, left, right, top, bottom = 900, 240, 44.0, 12.0, 22.0, 40.0
    base = height - bottom
    step = (width - left - right) / slots
    peak = max(max(counts), 1)
    scale = (base - top) / peak
    bars: list[Bar] = []
    for slot, count in enumerate(counts):
        bar_height = count * scale if count == 0 else max(2.0, count * scale)
        bars.append(
            Bar(
                x=round(left + slot * step + step * 0.15, 1),
                y=round(base - bar_height, 1),
                width=round(step * 0.7, 1),
                height=round(bar_height, 1),
                count=count,
                label=_bar_label(slot, now),
                title=_bar_title(slot, count, now),
                tone=_bar_tone(slot),
            )
        )
    ticks = tuple(
        (round(base - value * scale, 1), value) for value in sorted({0, peak // 2, peak}) if value
    )
    return Timeline(
        width=width,
        height=height,
        base=base,
        top=top,
        now_x=round(left + step, 1),
        left=left,
        right=width - right,
        bars=tuple(bars),
        ticks=ticks,
        undated=undated,
    )


def _week_start(slot: int, now: datetime) -> datetime:
    return now + timedelta(weeks=slot - 1)


def _short_date(when: datetime) -> str:
    return f"{when.day} {_MONTHS[when.month - 1]}"


def _bar_label(slot: int, now: datetime) -> str | None:
    if slot == 0:
        return "expired"
    if slot == TIMELINE_WEEKS + 1:
        return "later"
    # Every fourth week, offset so the first date label stays clear of "expired".
    return _short_date(_week_start(slot, now)) if slot % 4 == 3 else None


def _bar_title(slot: int, count: int, now: datetime) -> str:
    certs = f"{count} certificate{'' if count == 1 else 's'}"
    if slot == 0:
        return f"{certs} already expired"
    if slot == TIMELINE_WEEKS + 1:
        return f"{certs} expiring after {_short_date(_week_start(slot, now))}"
    start = _week_start(slot, now)
    end = start + timedelta(days=6)
    return f"{certs} expiring {_short_date(start)} – {_short_date(end)} {end.year}"


def _bar_tone(slot: int) -> str:
    if slot <= 1:
        return "crit"  # expired, or within 7 days
    if slot <= 4:
        return "high"  # within 30 days
    if slot <= TIMELINE_WEEKS:
        return "ok"
    return "later"
