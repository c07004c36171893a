"""JUnit XML: findings as failed test cases, the shape GitLab's test reports and Jenkins' JUnit
plugin read.

``<testsuites>`` holds one ``<testsuite>`` per endpoint (``name`` = ``address:port (sni)``) with
the counts both tools read (``tests``, ``failures``, ``errors``, ``skipped``, ``time``). Each
finding is one ``<testcase>`` (``classname`` = ``certscan.<kind>``, ``name`` = the endpoint and
the kind) holding one ``<failure>`` whose ``type`` is the severity and whose ``message`` is the
finding's one line; the text repeats it with the certificate's sha256. An endpoint without
findings has one passing test case, ``certscan.endpoint``, so a green endpoint shows as a pass
rather than as nothing. An endpoint that presented no certificate is a passing case too, with
its status in ``<system-out>``: whether that is a problem is the ``CertscanEndpoint...`` alert's
business, not a finding.

Every text from a certificate or a server has the code points :func:`scanner.text.hostile`
names escaped before the XML writer escapes markup, so the file never holds a character XML 1.0
forbids (control characters, U+FFFE) and always parses. Pure.
"""

from __future__ import annotations

from typing import ClassVar
from xml.etree import ElementTree as ET

from reports.model import EndpointView
from reports.output import Report, endpoint_label
from reports.render.interface import Renderer
from scanner.text import escape

__all__ = ["JunitRenderer"]


class JunitRenderer(Renderer):
    """JUnit XML (``certscan report --format junit``)."""

    format_name: ClassVar[str] = "junit"
    media_type: ClassVar[str] = "application/xml"
    extension: ClassVar[str] = "xml"

    def render(self, report: Report) -> bytes:
        root = ET.Element("testsuites", name="certscan")
        total = failures = 0
        for view in report.endpoints:
            suite = _suite(view)
            root.append(suite)
            total += int(suite.get("tests", "0"))
            failures += int(suite.get("failures", "0"))
        root.set("tests", str(total))
        root.set("failures", str(failures))
        root.set("errors", "0")
        root.set("time", "0")
        ET.indent(root)
        body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return body + b"\n"


def _suite(view: EndpointView) -> ET.Element:
    label = escape(endpoint_label(view.address, view.port, view.sni))
    suite = ET.Element("testsuite", name=label)
    if view.observed_at is not None:
        suite.set("timestamp", view.observed_at.strftime("%Y-%m-%dT%H:%M:%S"))
    for finding in view.findings:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"certscan.{finding.kind}",
            name=f"{label} {finding.kind}",
            time="0",
        )
        failure = ET.SubElement(
            case, "failure", type=finding.severity.label, message=escape(finding.message)
        )
        lines = [f"{finding.severity.label}: {escape(finding.message)}"]
        if finding.sha256:
            lines.append(f"certificate sha256 {finding.sha256}")
        failure.text = "\n".join(lines)
    if not view.findings:
        case = ET.SubElement(
            suite, "testcase", classname="certscan.endpoint", name=f"{label} no findings", time="0"
        )
        out = ET.SubElement(case, "system-out")
        out.text = f"status {escape(view.status)}" + (
            f": {escape(view.error)}" if view.error else ""
        )
    count = len(view.findings) or 1
    suite.set("tests", str(count))
    suite.set("failures", str(len(view.findings)))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    suite.set("time", "0")
    return suite
