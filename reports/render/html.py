"""The HTML report: one self-contained page for a laptop screen, a mail attachment or paper.

Theory of operation
-------------------
Every certificate field and every server string is attacker-controlled, so this module keeps
data and code apart in four ways:

* The page is rendered by jinja2 with ``autoescape=True`` from ``reports/templates``; templates
  never mark data ``|safe``. The only :class:`~markupsafe.Markup` values are this package's own
  static stylesheet and script (``_style.html.j2``, ``_script.html.j2``), rendered without data.
* Every ``{{ }}`` passes through :func:`_finalize`: ``None`` prints as nothing and every code
  point :func:`scanner.text.hostile` names (control, bidi, invisible format characters, tag
  characters, Hangul fillers) is shown as a ``⟨U+202E⟩`` marker, so a name cannot hide or
  visually reorder itself. Escaping then happens as usual.
* The page's script reads what it needs (sort keys, severity ranks) from the DOM; no data is
  ever written into JavaScript. Attribute values that carry data are quoted and escaped; ids and
  anchors are counters (``c12``), never names from a certificate; URLs from certificates (OCSP,
  CRL, CA issuers) are shown as text, never as links.
* A Content-Security-Policy ``<meta>`` allows nothing but the one inline stylesheet and the one
  inline script, by SHA-256 hash computed here from the exact text shipped, so even markup that
  slipped through escaping could not run script, load anything or submit a form.

Everything the page shows is computed here (the view model) and in ``build_report``: the
template only lays it out, including the expiry timeline, whose SVG geometry comes from
``reports.render.timeline``.

Alternative chains (``certscan sweep --all-certs``: a server holding an RSA and an ECDSA
certificate) are shown where the main chain is: each inventory row lists the endpoint's
alternative leaves under its leaf, a certificate's details show the chain it was served in and
mark placements in an alternative chain, and the summary counts and the expiry timeline include
their certificates (they come from ``build_report``'s distinct certificates).

Size: rows are one line each and whitespace is trimmed; a certificate's "served at" list shows at
most :data:`MAX_PLACEMENTS` endpoints, and details sections are written for at most
:data:`MAX_DETAILS` certificates, the most urgent first (worst finding, then soonest expiry). The
tables, the timeline and the JSON report always cover everything. A details section costs about
1.3 kB, so detailing 10,000 distinct leaves alone would be some 13 MB; with the bound, 10,000
endpoints make about 6 MB of HTML (a third of a MB gzipped) and render in under a second.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import jinja2
from markupsafe import Markup

from reports.model import EndpointView
from reports.output import CertificateUse, Placement, Report, days_left, endpoint_label, key_label
from reports.render.charts import EstateCharts, estate_charts
from reports.render.interface import Renderer
from reports.render.timeline import Timeline, timeline
from scanner.models import CertInfo, Finding
from scanner.text import marked

__all__ = ["MAX_DETAILS", "MAX_PLACEMENTS", "PAGE_ROWS", "HtmlRenderer", "content_security_policy"]

MAX_PLACEMENTS = 20  # endpoints listed per certificate; the rest are counted
MAX_CHAINS = 3  # distinct presented chains listed per leaf certificate
MAX_DETAILS = 1000  # certificates given a details section by default
PAGE_ROWS = 1000  # table rows the page shows before "Show all" (layout of 10,000 rows is slow)


def _finalize(value: object) -> object:
    """Applied to every ``{{ }}`` before escaping (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, Markup):  # our own static assets only
        return value
    if isinstance(value, str):
        return marked(value)
    return value


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Asset:
    text: Markup
    csp_hash: str  # "'sha256-…'"


@functools.cache
def _asset(name: str) -> _Asset:
    text = _environment().get_template(name).render()
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return _Asset(text=Markup(text), csp_hash=f"'sha256-{digest}'")  # noqa: S704 - static, no data


def content_security_policy() -> str:
    """The page's policy: nothing but its own inline stylesheet and script, by hash."""
    style, script = _asset("_style.html.j2"), _asset("_script.html.j2")
    return (
        f"default-src 'none'; style-src {style.csp_hash}; script-src {script.csp_hash}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )


class HtmlRenderer(Renderer):
    """The self-contained HTML report.

    ``max_details`` bounds the certificates given a details section (most urgent first; the
    tables and the timeline always cover everything); ``None`` details every certificate.
    """

    format_name: ClassVar[str] = "html"
    media_type: ClassVar[str] = "text/html; charset=utf-8"
    extension: ClassVar[str] = "html"

    def __init__(self, *, max_details: int | None = MAX_DETAILS) -> None:
        if max_details is not None and max_details < 0:
            raise ValueError("max_details must not be negative")
        self.max_details = max_details

    def render(self, report: Report) -> bytes:
        page = _environment().get_template("report.html.j2")
        text = page.render(
            view=_view(report, self.max_details),
            csp=content_security_policy(),
            page_rows=PAGE_ROWS,
            style=_asset("_style.html.j2").text,
            script=_asset("_script.html.j2").text,
        )
        return text.encode("utf-8")


# --- view model -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Expiry:
    """A ``not_after`` as the page shows it."""

    date: str  # YYYY-MM-DD
    days_left: int
    tone: str  # crit, high, ok: a colour hint, not a finding

    @property
    def text(self) -> str:
        if self.days_left < 0:
            return f"expired {-self.days_left} d ago"
        return f"{self.days_left} d"


@dataclass(frozen=True, slots=True, kw_only=True)
class _FindingRow:
    finding: Finding
    endpoint: str
    cert_id: str | None
    cert_name: str | None
    owner: str | None = None  # the endpoint's owner, for the owner filter


@dataclass(frozen=True, slots=True, kw_only=True)
class _AltLeaf:
    """The leaf of an endpoint's alternative chain, as its inventory row lists it."""

    number: int  # N for alt_chains[N-1]
    cert_id: str | None
    name: str
    expiry: _Expiry | None
    key: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _EndpointRow:
    view: EndpointView
    endpoint: str
    leaf: CertInfo | None
    leaf_id: str | None
    expiry: _Expiry | None
    key: str | None
    worst: Finding | None  # the most severe finding, None without findings
    rank: int  # severity rank of ``worst``; -1 without findings
    alts: tuple[_AltLeaf, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _ChainLink:
    cert_id: str | None  # None when the certificate has no details section
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _CertView:
    id: str
    cert: CertInfo
    name: str
    expiry: _Expiry | None
    key: str | None
    served: tuple[tuple[str, int, int], ...]  # (endpoint label, position, chain number)
    more: int  # placements not listed
    endpoints: int  # distinct endpoints serving it (both chains of one endpoint count once)
    chains: tuple[tuple[_ChainLink, ...], ...]  # what was sent after it, when it was the leaf
    more_chains: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _View:
    report: Report
    generated: str
    scan_started: str | None
    scan_finished: str | None
    next_expiry: _Expiry | None
    next_endpoint: str | None
    findings: tuple[_FindingRow, ...]
    endpoints: tuple[_EndpointRow, ...]
    certificates: tuple[_CertView, ...]
    undetailed: int  # certificates left without a details section by ``max_details``
    timeline: Timeline
    estate: EstateCharts
    owners: tuple[str, ...] = ()  # the owner filter's choices; empty: no endpoint has an owner
    unowned: bool = False  # some endpoint has no owner (the filter offers "(unowned)")


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _expiry(not_after: datetime | None, now: datetime) -> _Expiry | None:
    if not_after is None:
        return None
    left = days_left(not_after, now)
    tone = "crit" if left < 7 else "high" if left < 30 else "ok"
    return _Expiry(date=not_after.strftime("%Y-%m-%d"), days_left=left, tone=tone)


def _name(cert: CertInfo) -> str:
    """What a certificate is called on the page: its CN, else its subject, else a fingerprint."""
    return cert.subject_cn or cert.subject or f"sha256 {cert.sha256[:16]}…"


def _view(report: Report, max_details: int | None) -> _View:
    now = report.generated_at
    detailed = _detailed(report, max_details)
    ids = {use.cert.sha256: f"c{n}" for n, use in enumerate(detailed, 1)}
    names = {use.cert.sha256: _name(use.cert) for use in report.certificates}
    findings: list[_FindingRow] = []
    rows: list[_EndpointRow] = []
    for view in report.endpoints:
        label = endpoint_label(view.address, view.port, None)
        full = endpoint_label(view.address, view.port, view.sni)
        for finding in view.findings:
            sha = finding.sha256
            findings.append(
                _FindingRow(
                    finding=finding,
                    endpoint=full,
                    cert_id=ids.get(sha) if sha else None,
                    cert_name=names.get(sha) if sha else None,
                    owner=view.owner,
                )
            )
        leaf = view.chain[0] if view.chain else None
        worst = max(view.findings, key=lambda f: f.severity, default=None)
        rows.append(
            _EndpointRow(
                view=view,
                endpoint=label,
                leaf=leaf,
                leaf_id=ids.get(leaf.sha256) if leaf else None,
                expiry=_expiry(leaf.not_after, now) if leaf else None,
                key=key_label(leaf) if leaf else None,
                worst=worst,
                rank=-1 if worst is None else int(worst.severity),
                alts=tuple(
                    _AltLeaf(
                        number=number,
                        cert_id=ids.get(alt[0].sha256),
                        name=_name(alt[0]),
                        expiry=_expiry(alt[0].not_after, now),
                        key=key_label(alt[0]),
                    )
                    for number, alt in enumerate(view.alt_chains, 1)
                    if alt
                ),
            )
        )
    findings.sort(key=lambda row: -row.finding.severity)  # stable: report order within a rank
    nxt = report.summary.next_expiry
    return _View(
        report=report,
        generated=_stamp(now) or "",
        scan_started=_stamp(report.scan.started_at) if report.scan else None,
        scan_finished=_stamp(report.scan.finished_at) if report.scan else None,
        next_expiry=_expiry(nxt.not_after, now) if nxt else None,
        next_endpoint=endpoint_label(nxt.address, nxt.port, nxt.sni) if nxt else None,
        findings=tuple(findings),
        endpoints=tuple(rows),
        owners=tuple(sorted({v.owner for v in report.endpoints if v.owner})),
        unowned=any(not v.owner for v in report.endpoints),
        certificates=_cert_views(report, detailed, ids, names),
        undetailed=len(report.certificates) - len(detailed),
        timeline=timeline(report),
        estate=estate_charts(report.endpoints),
    )


def _detailed(report: Report, limit: int | None) -> list[CertificateUse]:
    """The certificates that get a details section, most urgent first.

    Urgency: the most severe finding about the certificate, then the soonest ``not_after``,
    then first-seen order. ``limit`` keeps the page small for very large reports.
    """
    worst: dict[str, int] = {}
    for view in report.endpoints:
        for finding in view.findings:
            if finding.sha256 is not None:
                worst[finding.sha256] = max(worst.get(finding.sha256, -1), int(finding.severity))
    never = datetime.max.replace(tzinfo=report.generated_at.tzinfo)

    def urgency(item: tuple[int, CertificateUse]) -> tuple[int, datetime, int]:
        index, use = item
        return -worst.get(use.cert.sha256, -1), use.cert.not_after or never, index

    ordered = [use for _, use in sorted(enumerate(report.certificates), key=urgency)]
    return ordered if limit is None else ordered[:limit]


def _cert_views(
    report: Report, detailed: list[CertificateUse], ids: dict[str, str], names: dict[str, str]
) -> tuple[_CertView, ...]:
    chains_of = {
        (v.address, v.port, v.sni, index): chain
        for v in report.endpoints
        for index, chain in enumerate((v.chain, *v.alt_chains))
    }
    out = []
    for use in detailed:
        chains: dict[tuple[str, ...], None] = {}
        for place in use.served_at:
            if place.position == 0:
                chain = chains_of[(place.address, place.port, place.sni, place.chain)]
                chains.setdefault(tuple(c.sha256 for c in chain[1:]), None)
        listed = list(chains)[:MAX_CHAINS]
        out.append(
            _CertView(
                id=ids[use.cert.sha256],
                cert=use.cert,
                name=names[use.cert.sha256],
                expiry=_expiry(use.cert.not_after, report.generated_at),
                key=_key_text(use.cert),
                served=tuple(_served(p) for p in use.served_at[:MAX_PLACEMENTS]),
                more=max(0, len(use.served_at) - MAX_PLACEMENTS),
                endpoints=len({(p.address, p.port, p.sni) for p in use.served_at}),
                chains=tuple(
                    tuple(_ChainLink(cert_id=ids.get(sha), name=names[sha]) for sha in chain)
                    for chain in listed
                ),
                more_chains=len(chains) - len(listed),
            )
        )
    return tuple(out)


def _served(place: Placement) -> tuple[str, int, int]:
    return endpoint_label(place.address, place.port, place.sni), place.position, place.chain


def _key_text(cert: CertInfo) -> str | None:
    label = key_label(cert)
    if label is not None and cert.key_curve:
        return f"{label} ({cert.key_curve})"
    return label
