"""The HTML report: escaping of hostile certificate text, the CSP, the view, size and speed.

The builders at the top (:func:`sample_report`, :func:`synthetic_views`) are shared with the
CSV, JSON and browser tests.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import re
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports.atomic import write_atomic
from reports.model import EndpointView
from reports.output import Report, ScanInfo, build_report
from reports.render import get_renderer
from reports.render.html import MAX_DETAILS, MAX_PLACEMENTS, HtmlRenderer
from reports.render.timeline import TIMELINE_WEEKS, timeline
from scanner.lab import certgen
from scanner.models import CertInfo, Finding, Severity
from scanner.parse import parse_certificate

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SCRIPT_CN = "<script>alert(1)</script>"
IMG_TEXT = '"><img src=x onerror=alert(1)>'
TEMPLATE_TEXT = "{{7*7}}"
FORMULA_CN = '=HYPERLINK("http://x.invalid","y")'
BIDI_CN = "evil\u202egnp.exe"


def _cert(issued: certgen.Issued) -> CertInfo:
    return parse_certificate(issued.der)


def _finding(
    view_address: str,
    port: int,
    sni: str | None,
    kind: str,
    severity: Severity,
    message: str,
    sha256: str | None = None,
) -> Finding:
    return Finding(
        kind=kind,
        severity=severity,
        message=message,
        address=view_address,
        port=port,
        sni=sni,
        sha256=sha256,
    )


def sample_views(now: datetime = NOW) -> tuple[EndpointView, ...]:
    """Six endpoints: healthy, hostile names, expired, expiring, self-signed and refused."""
    day = timedelta(days=1)
    root = certgen.make_ca("certscan test root", not_before=now - 400 * day)
    inter = certgen.make_ca(IMG_TEXT, org=TEMPLATE_TEXT, issuer=root, not_before=now - 300 * day)
    healthy = _cert(
        certgen.make_leaf(
            inter,
            cn="www.example.test",
            dns_names=("www.example.test", "example.test"),
            not_before=now - 10 * day,
            days=200,
        )
    )
    hostile = _cert(
        certgen.make_leaf(
            inter,
            cn=SCRIPT_CN,
            dns_names=(TEMPLATE_TEXT, "xss.example.test"),
            not_before=now - 10 * day,
            days=60,
        )
    )
    expired = _cert(
        certgen.make_leaf(
            inter,
            cn=FORMULA_CN,
            dns_names=("old.example.test",),
            not_before=now - 100 * day,
            not_after=now - 3 * day,
        )
    )
    expiring = _cert(
        certgen.make_leaf(
            inter,
            cn="soon.example.test",
            dns_names=("soon.example.test",),
            not_before=now - 80 * day,
            not_after=now + 5 * day,
        )
    )
    selfsigned = _cert(
        certgen.make_leaf(
            None, cn=BIDI_CN, dns_names=("self.example.test",), not_before=now - 1 * day, days=800
        )
    )
    inter_info, root_info = _cert(inter), _cert(root)
    chain = (inter_info, root_info)

    def view(
        address: str,
        sni: str | None,
        leaf: CertInfo | None,
        findings: list[tuple[str, Severity, str, bool]],
        **extra: str | None,
    ) -> EndpointView:
        port = 443
        return EndpointView(
            address=address,
            port=port,
            sni=sni,
            status=extra.get("status") or "ok",
            error=extra.get("error"),
            tls_version=None if leaf is None else "TLSv1.3",
            cipher=None if leaf is None else "TLS_AES_256_GCM_SHA384",
            observed_at=now - timedelta(minutes=5),
            scan_id=7,
            chain=() if leaf is None else (leaf, *([] if leaf is selfsigned else chain)),
            findings=tuple(
                _finding(
                    address,
                    port,
                    sni,
                    kind,
                    sev,
                    message,
                    leaf.sha256 if (about_cert and leaf) else None,
                )
                for kind, sev, message, about_cert in findings
            ),
        )

    return (
        view("127.0.0.1", "www.example.test", healthy, []),
        view(
            "127.0.0.2",
            "xss.example.test",
            hostile,
            [
                (
                    "hostname_mismatch",
                    Severity.HIGH,
                    f"name {SCRIPT_CN} is not covered; SANs: {TEMPLATE_TEXT}",
                    True,
                ),
                ("weak_cipher", Severity.MEDIUM, f"negotiated {IMG_TEXT}", False),
            ],
        ),
        view(
            "127.0.0.3",
            "old.example.test",
            expired,
            [
                ("expired", Severity.CRITICAL, "expired 2026-02-27 (3 days ago)", True),
                ("long_validity", Severity.LOW, "-97 days of validity", True),
            ],
        ),
        view(
            "127.0.0.4",
            "soon.example.test",
            expiring,
            [
                ("expiring", Severity.CRITICAL, "expires 2026-03-07 (in 5 days)", True),
            ],
        ),
        view(
            "127.0.0.5",
            None,
            selfsigned,
            [
                ("self_signed", Severity.HIGH, "the leaf is self-signed", True),
                ("long_validity", Severity.LOW, "valid 800 days (more than 398)", True),
                ("certificate_changed", Severity.INFO, "a different leaf than the last scan", True),
            ],
        ),
        view(
            "127.0.0.6",
            "down.example.test",
            None,
            [],
            status="refused",
            error="@SUM(1+1)*cmd|' /C calc'!A0",
        ),
    )


@functools.cache
def sample_report(now: datetime = NOW) -> Report:
    """The report of :func:`sample_views`, built once per ``now`` (keys are random)."""
    scan = ScanInfo(
        id=7, started_at=now - timedelta(minutes=6), finished_at=now - timedelta(minutes=4)
    )
    return build_report(sample_views(now), generated_at=now, scan=scan)


def synthetic_views(count: int, now: datetime = NOW) -> tuple[EndpointView, ...]:
    """``count`` endpoints with distinct leaves under two intermediates, without crypto.

    CertInfo objects are constructed directly (parsing 10,000 real certificates would only
    measure the parser); sizes and fields are those of typical public certificates.
    """
    roots = [
        CertInfo(
            der=b"",
            sha256=hashlib.sha256(f"root{i}".encode()).hexdigest(),
            subject=f"CN=Example Root R{i},O=Example Trust Services,C=US",
            subject_cn=f"Example Root R{i}",
            issuer=f"CN=Example Root R{i},O=Example Trust Services,C=US",
            issuer_cn=f"Example Root R{i}",
            serial="5ec3b7a6437fa4e0",
            not_before=now - timedelta(days=3000),
            not_after=now + timedelta(days=4000),
            key_type="RSA",
            key_bits=4096,
            signature_algorithm="sha384WithRSAEncryption",
            signature_hash="sha384",
            is_ca=True,
            spki_sha256=hashlib.sha256(f"rk{i}".encode()).hexdigest(),
        )
        for i in range(2)
    ]
    inters = [
        CertInfo(
            der=b"",
            sha256=hashlib.sha256(f"inter{i}".encode()).hexdigest(),
            subject=f"CN=Example TLS Issuing CA {i},O=Example Trust Services,C=US",
            subject_cn=f"Example TLS Issuing CA {i}",
            issuer=roots[i].subject,
            issuer_cn=roots[i].subject_cn,
            serial="0a0e3c5d7f4b2c1e9d8a7b6c5d4e3f21",
            not_before=now - timedelta(days=700),
            not_after=now + timedelta(days=1100),
            key_type="EC",
            key_bits=384,
            key_curve="secp384r1",
            signature_algorithm="sha384WithRSAEncryption",
            signature_hash="sha384",
            is_ca=True,
            path_length=0,
            key_usage=("digital_signature", "key_cert_sign", "crl_sign"),
            ocsp_urls=("http://ocsp.example.test",),
            spki_sha256=hashlib.sha256(f"ik{i}".encode()).hexdigest(),
        )
        for i in range(2)
    ]
    views = []
    for n in range(count):
        host = f"service-{n:05d}.internal.example.test"
        address = f"127.{n // 65536}.{(n // 256) % 256}.{n % 256}"  # data only, never contacted
        i = n % 2
        left = (n * 37) % 420 - 30
        leaf = CertInfo(
            der=b"",
            sha256=hashlib.sha256(f"leaf{n}".encode()).hexdigest(),
            subject=f"CN={host}",
            subject_cn=host,
            issuer=inters[i].subject,
            issuer_cn=inters[i].subject_cn,
            serial=f"{n:032x}",
            not_before=now - timedelta(days=60),
            not_after=now + timedelta(days=left, hours=3),
            san_dns=(host, f"www.{host}"),
            key_type="EC",
            key_bits=256,
            key_curve="secp256r1",
            signature_algorithm="ecdsa-with-SHA384",
            signature_hash="sha384",
            is_ca=False,
            key_usage=("digital_signature",),
            extended_key_usage=("serverAuth",),
            ocsp_urls=("http://ocsp.example.test",),
            sct_count=2,
            spki_sha256=hashlib.sha256(f"lk{n}".encode()).hexdigest(),
        )
        findings = []
        if left < 30:
            sev = Severity.CRITICAL if left < 7 else Severity.HIGH
            kind = "expired" if left < 0 else "expiring"
            findings.append(
                Finding(
                    kind=kind,
                    severity=sev,
                    message=f"{kind}: {left} days left",
                    address=address,
                    port=443,
                    sni=host,
                    sha256=leaf.sha256,
                )
            )
        if n % 5 == 0:
            findings.append(
                Finding(
                    kind="weak_cipher",
                    severity=Severity.MEDIUM,
                    message="negotiated ECDHE-RSA-AES128-SHA (CBC with SHA-1)",
                    address=address,
                    port=443,
                    sni=host,
                )
            )
        views.append(
            EndpointView(
                address=address,
                port=443,
                sni=host,
                status="ok",
                error=None,
                tls_version="TLSv1.3",
                cipher="TLS_AES_256_GCM_SHA384",
                observed_at=now,
                scan_id=1,
                chain=(leaf, inters[i], roots[i]),
                findings=tuple(findings),
            )
        )
    return tuple(views)


# --- a tiny HTML reader ----------------------------------------------------------------------


class _Page(HTMLParser):
    """Elements by tag with their attributes, the text of <script>/<style>, and all text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self.text: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.raw:
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.raw[self._in].append(data)
        else:
            self.text.append(data)


def _parse(page: bytes) -> _Page:
    parser = _Page()
    parser.feed(page.decode("utf-8"))
    parser.close()
    return parser


@pytest.fixture(scope="module")
def rendered() -> bytes:
    return HtmlRenderer().render(sample_report())


def test_hostile_text_is_escaped_never_markup(rendered: bytes) -> None:
    page = _parse(rendered)
    text = "".join(page.text)
    for hostile in (SCRIPT_CN, IMG_TEXT, TEMPLATE_TEXT):
        assert hostile in text  # shown to the reader, as text
    assert [t for t, _ in page.tags].count("script") == 1  # only ours
    assert not any(t == "img" for t, _ in page.tags)
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert b"<script>alert" not in rendered
    assert html.escape(SCRIPT_CN).encode() in rendered


def test_template_syntax_in_data_is_not_evaluated(rendered: bytes) -> None:
    text = "".join(_parse(rendered).text)
    assert TEMPLATE_TEXT in text
    assert "DNS:{{7*7}}" in text
    assert "DNS:49" not in text


def test_bidi_and_control_characters_are_shown_as_markers(rendered: bytes) -> None:
    text = "".join(_parse(rendered).text)
    assert "evil⟨U+202E⟩gnp.exe" in text
    assert "\u202e" not in rendered.decode("utf-8")


def test_csp_allows_exactly_the_shipped_style_and_script(rendered: bytes) -> None:
    page = _parse(rendered)
    metas = [
        a for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert len(metas) == 1
    policy = metas[0]["content"] or ""
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    for element in ("script", "style"):
        (body,) = page.raw[element]
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert directives[f"{element}-src"] == f"'sha256-{digest}'"
    assert "unsafe-inline" not in policy


def test_page_is_self_contained(rendered: bytes) -> None:
    page = _parse(rendered)
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "srcset", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    assert not any(t == "link" for t, _ in page.tags)
    assert b"@import" not in rendered
    assert b"url(" not in rendered


def test_tables_hold_every_finding_and_endpoint(rendered: bytes) -> None:
    report = sample_report()
    text = rendered.decode()
    findings_body = text.split('id="findings-table"')[1].split("</tbody>")[0]
    inventory_body = text.split('id="inventory-table"')[1].split("</tbody>")[0]
    assert findings_body.count("<tr data-r=") == report.summary.findings == 8
    assert inventory_body.count("<tr data-r=") == len(report.endpoints) == 6
    # findings are listed most severe first
    ranks = [int(r) for r in re.findall(r'<tr data-r="(-?\d)"', findings_body)]
    assert ranks == sorted(ranks, reverse=True)
    assert ranks[0] == Severity.CRITICAL


def test_every_certificate_has_details_with_its_chain(rendered: bytes) -> None:
    report = sample_report()
    page = _parse(rendered)
    details = [a["id"] for t, a in page.tags if t == "details"]
    assert details == [f"c{n}" for n in range(1, len(report.certificates) + 1)]
    text = "".join(page.text)
    for use in report.certificates:
        assert use.cert.sha256 in text
    links = {
        a["href"] for t, a in page.tags if t == "a" and re.fullmatch(r"#c\d+", a["href"] or "")
    }
    assert links <= {f"#{d}" for d in details}


def test_summary_cards_and_timeline(rendered: bytes) -> None:
    text = "".join(_parse(rendered).text)
    assert "2026-03-07" in text  # next expiry: the expiring leaf
    assert "127.0.0.4:443 (soon.example.test)" in text
    bars = re.findall(rb'<g class="bar t-(\w+)"><title>([^<]*)</title>', rendered)
    assert len(bars) == 28
    assert bars[0] == (b"crit", b"1 certificate already expired")
    assert bars[1][1].startswith(b"1 certificate expiring 2 Mar")
    assert bars[-1][1].startswith(b"4 certificates expiring after")  # CAs, 200- and 800-day leaves


@pytest.mark.parametrize(
    ("offset", "slot"),
    [
        (timedelta(seconds=-1), 0),  # expired
        (timedelta(0), 1),  # expires now: the first week
        (timedelta(days=6, hours=23), 1),
        (timedelta(days=7), 2),
        (timedelta(weeks=TIMELINE_WEEKS) - timedelta(seconds=1), TIMELINE_WEEKS),
        (timedelta(weeks=TIMELINE_WEEKS), TIMELINE_WEEKS + 1),  # later
        (timedelta(days=5000), TIMELINE_WEEKS + 1),
    ],
)
def test_timeline_buckets(offset: timedelta, slot: int) -> None:
    cert = CertInfo(der=b"", sha256="ef" * 32, not_after=NOW + offset)
    undated = CertInfo(der=b"", sha256="01" * 32, error="unreadable")
    view = EndpointView(
        address="127.0.0.1",
        port=443,
        sni=None,
        status="ok",
        error=None,
        tls_version="TLSv1.3",
        cipher=None,
        observed_at=None,
        scan_id=None,
        chain=(cert, undated),
        findings=(),
    )
    chart = timeline(build_report([view], generated_at=NOW, scan=None))
    assert [bar.count for bar in chart.bars] == [int(i == slot) for i in range(TIMELINE_WEEKS + 2)]
    assert chart.undated == 1
    tallest = chart.bars[slot]
    assert tallest.height == chart.base - chart.top  # the peak fills the plot
    assert all(bar.height == 0 for i, bar in enumerate(chart.bars) if i != slot)


def test_empty_report_renders() -> None:
    report = build_report((), generated_at=NOW, scan=None)
    text = HtmlRenderer().render(report).decode()
    assert "No findings." in text
    assert "latest observation of every endpoint" in text


def test_registry_and_media_type() -> None:
    renderer = get_renderer("html")
    assert isinstance(renderer, HtmlRenderer)
    assert renderer.media_type.startswith("text/html")


def test_ten_thousand_endpoints_render_fast_and_small() -> None:
    views = synthetic_views(10_000)
    start = time.perf_counter()
    report = build_report(views, generated_at=NOW, scan=None)
    page = HtmlRenderer().render(report)
    elapsed = time.perf_counter() - start
    assert elapsed < 15, elapsed  # about a second here; generous for slow CI machines
    assert len(page) < 8 * 1024 * 1024, len(page)
    assert page.count(b"<details ") == MAX_DETAILS
    assert f"{10_004 - MAX_DETAILS} more certificates".encode() in page
    inventory = page.split(b'id="inventory-table"')[1].split(b"</tbody>")[0]
    assert inventory.count(b"<tr data-r=") == 10_000


def test_details_list_the_most_urgent_certificates_first() -> None:
    report = sample_report()
    page = HtmlRenderer(max_details=2).render(report).decode()
    assert re.findall(r'<details id="(c\d+)"', page) == ["c1", "c2"]
    first, second = re.findall(
        r'<details id="c\d+" class="cert"><summary><span class="name">([^<]*)<', page
    )
    assert {html.unescape(first), second} == {FORMULA_CN, "soon.example.test"}  # the two criticals
    assert "5 more certificates" in page
    # undetailed certificates are named in the tables, never linked to a missing anchor
    anchors = set(re.findall(r'href="#(c\d+)"', page))
    assert anchors == {"c1", "c2"}


def test_served_at_lists_are_bounded() -> None:
    report = build_report(synthetic_views(100), generated_at=NOW, scan=None)
    page = HtmlRenderer(max_details=None).render(report).decode()
    assert page.count("<details ") == 104
    # each CA is served by 50 endpoints: the first MAX_PLACEMENTS are listed
    assert page.count(f"and {50 - MAX_PLACEMENTS} more endpoints") == 4


def test_write_atomic_replaces_keeping_mode(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_write_atomic_leaves_target_untouched_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    with pytest.raises(ValueError, match="stdout"):
        write_atomic("-", b"x")


def test_the_key_exchange_column_shows_group_cipher_and_legacy_capture() -> None:
    def view(address: str, **extra: object) -> EndpointView:
        fields: dict[str, object] = {
            "address": address, "port": 443, "sni": None, "status": "ok", "error": None,
            "tls_version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256", "observed_at": None,
            "scan_id": None, "chain": (), "findings": (),
        }  # fmt: skip
        return EndpointView(**(fields | extra))  # type: ignore[arg-type]

    views = [
        view("127.0.0.1", group="X25519MLKEM768"),
        view(
            "127.0.0.2", tls_version="SSLv3", cipher="TLS_RSA_WITH_RC4_128_MD5", legacy_capture=True
        ),
        view("127.0.0.3", group="<b>x</b>"),  # a group name is OpenSSL's, but escape anyway
    ]
    text = HtmlRenderer().render(build_report(views, generated_at=NOW, scan=None)).decode()
    cells = re.findall(r'<td class="nw kx">(.*?)</td>', text)
    assert cells == [
        'X25519MLKEM768<span class="sub">TLS_AES_128_GCM_SHA256</span>',
        '<span class="sub">TLS_RSA_WITH_RC4_128_MD5</span><span class="sub">legacy capture</span>',
        '&lt;b&gt;x&lt;/b&gt;<span class="sub">TLS_AES_128_GCM_SHA256</span>',
    ]
    assert "Key exchange" in text
