"""SARIF 2.1.0 reports, validated against the published schema (vendored in reports/schema/)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

from reports.model import EndpointView
from reports.output import build_report
from reports.render import format_for_path, get_renderer
from reports.render.sarif import SarifRenderer
from scanner.models import Finding, Severity
from tests.hostile import HOSTILE
from tests.reports.render.test_html import NOW, SCRIPT_CN, sample_report


def _schema() -> dict[str, Any]:
    text = resources.files("reports").joinpath("schema/sarif/sarif-schema-2.1.0.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    schema = _schema()
    jsonschema.Draft4Validator.check_schema(schema)
    assert schema["id"].endswith("/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def log() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SarifRenderer().render(sample_report()))
    return data


def test_valid_against_the_published_schema(
    log: dict[str, Any], validator: jsonschema.Draft4Validator
) -> None:
    errors = sorted(validator.iter_errors(log), key=str)
    assert errors == []


def test_the_schema_check_can_fail(
    log: dict[str, Any], validator: jsonschema.Draft4Validator
) -> None:
    broken = copy.deepcopy(log)
    broken["runs"][0]["results"][0]["level"] = "fatal"
    assert not validator.is_valid(broken)
    del broken["version"]
    assert not validator.is_valid(broken)


def test_one_result_per_finding_with_rules_and_levels(log: dict[str, Any]) -> None:
    report = sample_report()
    findings = [f for v in report.endpoints for f in v.findings]
    (run,) = log["runs"]
    assert run["tool"]["driver"]["name"] == "certscan"
    results = run["results"]
    assert len(results) == len(findings)
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted({f.kind for f in findings})
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    levels = {(r["ruleId"], r["properties"]["severity"], r["level"]) for r in results}
    assert ("expired", "critical", "error") in levels
    assert any(sev == "low" and level == "note" for _, sev, level in levels)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    assert all(u.startswith("tls://") for u in uris)
    prints = [r["partialFingerprints"]["certscanFinding/v1"] for r in results]
    assert len(set(prints)) == len(prints)


def test_hostile_text_is_escaped(validator: jsonschema.Draft4Validator) -> None:
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
        chain=(),
        findings=(
            Finding(
                kind="hostname_mismatch",
                severity=Severity.HIGH,
                message=f"does not cover {name} {SCRIPT_CN}",
                address="127.0.0.1",
                port=443,
                sni=name,
            ),
        ),
    )
    data = json.loads(SarifRenderer().render(build_report([view], generated_at=NOW, scan=None)))
    validator.validate(data)
    text = json.dumps(data, ensure_ascii=False)
    for ch, why in HOSTILE:
        assert ch not in text, why
    (result,) = data["runs"][0]["results"]
    assert "\\u202e" in result["message"]["text"]
    assert SCRIPT_CN in result["message"]["text"]  # JSON data, not markup: kept as text


def test_registry_path_and_empty_report() -> None:
    assert isinstance(get_renderer("sarif"), SarifRenderer)
    assert format_for_path("out.sarif") == "sarif"
    empty = json.loads(SarifRenderer().render(build_report((), generated_at=NOW, scan=None)))
    assert empty["runs"][0]["results"] == []
    jsonschema.Draft4Validator(_schema()).validate(empty)
