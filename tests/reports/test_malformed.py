"""Verification failures caused by a certificate's own encoding (reports.malformed): judged as
``malformed_certificate`` naming the RFC 5280 rule, never as ``untrusted_root``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from reports.findings import evaluate
from reports.malformed import encoding_fault
from reports.model import EndpointInput
from reports.policy import Policy
from reports.trust import TrustStore
from scanner.lab import certgen
from scanner.models import CertInfo, Severity
from scanner.parse import parse_certificate

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RULE = "RFC 5280 4.1.2.2: the serial number MUST be a positive integer"


@pytest.fixture(scope="module")
def chain() -> tuple[TrustStore, tuple[CertInfo, ...], tuple[CertInfo, ...]]:
    """A trusted store, a chain whose leaf has a negative serial, and the same chain sound."""
    long_ago = NOW - timedelta(days=1000)
    root = certgen.make_ca("Malformed Root", not_before=long_ago, not_after=NOW + timedelta(3650))
    inter = certgen.make_ca("Malformed CA", issuer=root, not_before=long_ago)
    leaf = certgen.make_leaf(inter, dns_names=["a.example"], not_before=NOW - timedelta(10))
    assert isinstance(inter.key, ec.EllipticCurvePrivateKey)
    negative = certgen.with_serial_content(leaf.cert, inter.key, b"\xff\x12\x34")
    bad = (parse_certificate(negative), parse_certificate(inter.der))
    good = (parse_certificate(leaf.der), parse_certificate(inter.der))
    return TrustStore.from_pem(root.cert_pem, mozilla=False), bad, good


def test_a_negative_serial_names_the_rule_and_what_trust_would_be(
    chain: tuple[TrustStore, tuple[CertInfo, ...], tuple[CertInfo, ...]],
) -> None:
    store, bad, good = chain
    assert bad[0].serial == "-edcc"
    assert store.evaluate(good, now=NOW).trusted  # the same issuer, soundly encoded
    verdict = store.evaluate(bad, now=NOW)
    assert not verdict.trusted
    assert verdict.untrusted_root is None
    assert (verdict.malformed, verdict.malformed_position) == (RULE, 0)
    assert verdict.reason == (
        f"malformed: {RULE} (validation stopped there); apart from that its path reaches the "
        "trusted root 'O=certscan lab,CN=Malformed Root', so it would be trusted"
    )


def test_the_finding_is_malformed_certificate_not_untrusted_root(
    chain: tuple[TrustStore, tuple[CertInfo, ...], tuple[CertInfo, ...]],
) -> None:
    store, bad, _good = chain
    target = EndpointInput(
        address="127.0.0.1", port=443, sni="a.example", status="ok",
        tls_version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256", chain=bad,
    )  # fmt: skip
    findings = evaluate(target, policy=Policy(), trust=store, now=NOW)
    kinds = {f.kind: f for f in findings}
    assert "untrusted_root" not in kinds
    found = kinds["malformed_certificate"]
    assert found.severity is Severity.HIGH
    assert found.sha256 == bad[0].sha256
    assert RULE in found.message
    assert found.message.startswith("leaf ")


@pytest.mark.parametrize(
    "message",
    ["certificate is not a CA", "basicConstraints.cA must be asserted", "", "candidates exhausted"],
)
def test_trust_failures_are_not_encoding_faults(message: str) -> None:
    assert encoding_fault(message, ()) is None
