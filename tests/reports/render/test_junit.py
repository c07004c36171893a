"""JUnit XML reports: the elements and attributes GitLab's test reports and Jenkins' JUnit plugin
read, well-formed whatever the certificates hold."""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from lxml import etree

from reports.model import EndpointView
from reports.output import build_report
from reports.render import format_for_path, get_renderer
from reports.render.junit import JunitRenderer
from scanner.models import CertInfo, Finding, Severity
from tests.hostile import HOSTILE
from tests.reports.render.test_html import NOW, sample_report

#: Our own description of what GitLab and Jenkins read (see the comment at its top).
XSD = Path(__file__).with_name("junit.xsd")


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


def schema_errors(data: bytes) -> list[str]:
    """Every way ``data`` departs from tests/reports/render/junit.xsd, plus the count checks an
    XSD cannot state (a suite's tests/failures match its cases); [] when valid."""
    document = etree.fromstring(data)
    schema = _schema()
    if not schema.validate(document):
        return [f"line {e.line}: {e.message}" for e in schema.error_log]
    errors: list[str] = []
    suites = document.findall("testsuite")
    for suite in suites:
        cases = suite.findall("testcase")
        for attr, child in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
            counted = len(suite.findall(f"testcase/{child}"))
            if int(suite.get(attr, "0")) != counted:
                errors.append(f"suite {suite.get('name')}: {attr}={suite.get(attr)}, {counted}")
        if int(suite.get("tests", "-1")) != len(cases):
            errors.append(f"suite {suite.get('name')}: tests={suite.get('tests')}, {len(cases)}")
    for attr in ("tests", "failures", "errors"):
        total = sum(int(s.get(attr, "0")) for s in suites)
        if int(document.get(attr, "-1")) != total:
            errors.append(f"testsuites: {attr}={document.get(attr)}, suites add up to {total}")
    return errors


def _root(data: bytes) -> ET.Element:
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert schema_errors(data) == []
    return ET.fromstring(data)


def test_valid_against_our_schema() -> None:
    assert schema_errors(JunitRenderer().render(sample_report())) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'classname="certscan.expired"', b""),  # a case without a classname
        (b'tests="10"', b'tests="ten"'),  # not a count
        (b'skipped="0" time="0"', b'skipped="0" time="-1"'),  # a negative time
        (b'timestamp="2026-03-02T09:25:00"', b'timestamp="2026-03-02T09:25:00Z"'),  # zoned
        (b"</failure>", b"</failure><error />"),  # two outcomes in one case
        (b"<system-out>", b"<stdout>"),  # an element no reader knows
    ],
)
def test_the_schema_check_can_fail(old: bytes, new: bytes) -> None:
    data = JunitRenderer().render(sample_report())
    assert old in data
    broken = data.replace(old, new, 1)
    if old == b"<system-out>":
        broken = broken.replace(b"</system-out>", b"</stdout>", 1)
    assert schema_errors(broken) != []


def test_counts_that_do_not_add_up_are_refused() -> None:
    data = JunitRenderer().render(sample_report())
    first = ET.fromstring(data).find("testsuite")
    assert first is not None
    wrong = data.replace(
        f'failures="{first.get("failures")}" errors="0" skipped="0"'.encode(),
        f'failures="{int(first.get("failures", "0")) + 1}" errors="0" skipped="0"'.encode(),
        1,
    )
    assert wrong != data
    assert any("failures=" in e for e in schema_errors(wrong))


def test_suites_cases_and_failures_add_up() -> None:
    report = sample_report()
    root = _root(JunitRenderer().render(report))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == len(report.endpoints)
    findings = sum(len(v.findings) for v in report.endpoints)
    assert int(root.get("failures", "")) == findings
    assert int(root.get("tests", "")) == sum(max(1, len(v.findings)) for v in report.endpoints)
    for suite, view in zip(suites, report.endpoints, strict=True):
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "")) == len(cases)
        assert int(suite.get("failures", "")) == len(suite.findall("testcase/failure"))
        for attr in ("errors", "skipped", "time", "name"):
            assert suite.get(attr) is not None
        for case in cases:
            assert case.get("classname", "").startswith("certscan.")
            assert case.get("name")
            assert case.get("time") == "0"
        kinds = [c.get("classname") for c in cases if c.find("failure") is not None]
        assert kinds == [f"certscan.{f.kind}" for f in view.findings]
    failure = root.find(".//testcase[@classname='certscan.expired']/failure")
    assert failure is not None
    assert failure.get("type") == "critical"
    assert failure.get("message", "").startswith("expired ")
    assert failure.text is not None
    assert "sha256" in failure.text


def test_every_hostile_code_point_still_parses() -> None:
    name = "x" + "".join(ch for ch, _ in HOSTILE) + "y"
    view = EndpointView(
        address="127.0.0.1",
        port=443,
        sni=name,
        status="ok",
        error=None,
        tls_version="TLSv1.3",
        cipher=None,
        observed_at=NOW,
        scan_id=1,
        chain=(CertInfo(der=b"", sha256="ab" * 32, not_after=NOW + timedelta(days=1)),),
        findings=(
            Finding(
                kind="hostname_mismatch",
                severity=Severity.HIGH,
                message=f"does not cover {name}",
                address="127.0.0.1",
                port=443,
                sni=name,
            ),
        ),
    )
    data = JunitRenderer().render(build_report([view], generated_at=NOW, scan=None))
    root = _root(data)  # parses: no character XML 1.0 forbids
    text = data.decode("utf-8")
    for ch, why in HOSTILE:
        if ch != "\n":  # the writer's own indentation
            assert ch not in text, why
    case = root.find(".//testcase/failure")
    assert case is not None
    assert "\\u202e" in case.get("message", "")


def test_registry_and_path() -> None:
    assert isinstance(get_renderer("junit"), JunitRenderer)
    assert format_for_path("results.xml") == "junit"
    empty = _root(JunitRenderer().render(build_report((), generated_at=NOW, scan=None)))
    assert empty.get("tests") == "0"
