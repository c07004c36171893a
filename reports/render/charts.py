"""The estate charts of the HTML report: one small horizontal bar chart per dimension of
:func:`reports.summary.estate`, as SVG geometry (the template only places elements; labels are
escaped by the template like every other text). Fixed 360-unit-wide viewBox, one 20-unit row
per value, at most :data:`MAX_ROWS` values (the rest are summed into "others")."""

from __future__ import annotations

from dataclasses import dataclass

from reports.model import EndpointView
from reports.summary import Group, estate

__all__ = ["MAX_ROWS", "Chart", "Row", "estate_charts"]

MAX_ROWS = 8
_WIDTH, _ROW, _LABEL, _BAR = 360, 20, 130, 190


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    y: float
    width: float
    label: str
    count: int
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    name: str
    width: int
    height: int
    bar_x: int
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EstateCharts:
    charts: tuple[Chart, ...]
    automated: int
    judged: int


def _chart(name: str, groups: tuple[Group, ...]) -> Chart:
    shown = list(groups[:MAX_ROWS])
    rest = groups[MAX_ROWS:]
    if rest:
        shown.append(
            Group(
                label=f"{len(rest)} others",
                endpoints=sum(g.endpoints for g in rest),
                certificates=sum(g.certificates for g in rest),
            )
        )
    top = max((g.endpoints for g in shown), default=1) or 1
    rows = tuple(
        Row(
            y=n * _ROW + 2,
            width=round(max(1.0, g.endpoints / top * _BAR), 1),
            label=g.label if len(g.label) <= 22 else g.label[:21] + "…",
            count=g.endpoints,
            title=f"{g.label}: {g.endpoints} endpoints, {g.certificates} certificates",
        )
        for n, g in enumerate(shown)
    )
    return Chart(name=name, width=_WIDTH, height=len(rows) * _ROW + 4, bar_x=_LABEL, rows=rows)


def estate_charts(views: tuple[EndpointView, ...]) -> EstateCharts:
    found = estate(views)
    charts = tuple(_chart(name, groups) for name, groups in found.dimensions() if groups)
    return EstateCharts(charts=charts, automated=found.automated, judged=found.judged)
