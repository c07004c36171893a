"""Material change versus routine renewal (reports.changes), through the findings rules: every
case builds the previous and the current chain in code and judges them as a sweep would."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from reports.changes import ca_family, judge_change, security_bits
from reports.findings import evaluate
from reports.model import Context, EndpointInput
from reports.policy import Policy
from reports.trust import TrustStore
from scanner.inventory.history import LeafRun
from scanner.lab import certgen
from scanner.lab.certgen import Issued
from scanner.models import CertInfo, Finding, Severity
from scanner.parse import parse_certificate

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NAMES = ["www.example.test", "api.example.test"]
CHANGE_KINDS = {"certificate_changed", "material_change", "certificate_regressed"}


@dataclass(frozen=True)
class Pki:
    root: Issued
    inter: Issued
    other_root: Issued
    other_inter: Issued
    store: TrustStore


@pytest.fixture(scope="module")
def pki() -> Pki:
    start = NOW - 1000 * DAY
    root = certgen.make_ca("Change Root", not_before=start)
    inter = certgen.make_ca("Change CA R10", issuer=root, not_before=start)
    other_root = certgen.make_ca("Other Root", org="Other CA Inc", not_before=start)
    other_inter = certgen.make_ca(
        "Other CA", org="Other CA Inc", issuer=other_root, not_before=start
    )
    store = TrustStore.from_pem(root.cert_pem, other_root.cert_pem)
    return Pki(root, inter, other_root, other_inter, store)


def leaf(issuer: Issued | None, *, start_days_ago: float = 10, **kwargs: object) -> Issued:
    options: dict[str, object] = {"dns_names": NAMES, "not_before": NOW - start_days_ago * DAY}
    options.update(kwargs)
    return certgen.make_leaf(issuer, **options)  # type: ignore[arg-type]


def chain(*certs: Issued) -> tuple[CertInfo, ...]:
    return tuple(parse_certificate(c.der) for c in certs)


def judged(pki: Pki, before: tuple[CertInfo, ...], now: tuple[CertInfo, ...]) -> list[Finding]:
    runs = (
        LeafRun(first_seen=NOW - 30 * DAY, observation_id=1, scan_id=1, leaf=before[0]),
        LeafRun(first_seen=NOW - DAY, observation_id=2, scan_id=2, leaf=now[0]),
    )
    ctx = Context(previous_leaf=before[0].sha256, previous_chain=before, runs=runs)
    target = EndpointInput(
        address="127.0.0.1", port=443, sni="www.example.test", status="ok", chain=now
    )
    found = evaluate(target, policy=Policy(), trust=pki.store, now=NOW, context=ctx)
    return [f for f in found if f.kind in CHANGE_KINDS]


def only(found: list[Finding]) -> Finding:
    assert len(found) == 1, found
    return found[0]


def test_renewal_under_the_same_ca_stays_info(pki: Pki) -> None:
    before = chain(leaf(pki.inter, start_days_ago=80), pki.inter)
    finding = only(judged(pki, before, chain(leaf(pki.inter), pki.inter)))
    assert (finding.kind, finding.severity) == ("certificate_changed", Severity.INFO)
    assert "a renewal (same subject and SANs)" in finding.message


def test_another_intermediate_of_the_same_ca_family_is_a_renewal(pki: Pki) -> None:
    r11 = certgen.make_ca("Change CA R11", issuer=pki.root, not_before=NOW - 100 * DAY)
    before = chain(leaf(pki.inter, start_days_ago=80), pki.inter)
    finding = only(judged(pki, before, chain(leaf(r11), r11)))
    assert finding.kind == "certificate_changed"


def test_added_names_are_a_compatible_replacement(pki: Pki) -> None:
    before = chain(leaf(pki.inter, start_days_ago=80), pki.inter)
    now = chain(leaf(pki.inter, dns_names=[*NAMES, "new.example.test"]), pki.inter)
    finding = only(judged(pki, before, now))
    assert finding.kind == "certificate_changed"
    assert "compatible replacement" in finding.message


@pytest.mark.parametrize(
    ("case", "severity", "evidence"),
    [
        ("sans_removed", Severity.HIGH, "SANs removed: 'DNS:api.example.test'"),
        ("other_ca", Severity.MEDIUM, "issuer changed from 'certscan lab' to 'Other CA Inc'"),
        ("weaker_key", Severity.MEDIUM, "weaker key: RSA 3072 (128-bit security) became"),
        ("self_signed", Severity.HIGH, "a self-signed certificate replaced a trusted one"),
        ("untrusted", Severity.HIGH, "an untrusted certificate replaced a trusted one"),
    ],
)
def test_material_changes(pki: Pki, case: str, severity: Severity, evidence: str) -> None:
    before = chain(leaf(pki.inter, start_days_ago=80), pki.inter)
    if case == "sans_removed":
        now = chain(leaf(pki.inter, dns_names=["www.example.test"]), pki.inter)
    elif case == "other_ca":
        now = chain(leaf(pki.other_inter), pki.other_inter)
    elif case == "weaker_key":
        before = chain(
            leaf(pki.inter, start_days_ago=80, key=rsa.generate_private_key(65537, 3072)),
            pki.inter,
        )
        now = chain(leaf(pki.inter, key=rsa.generate_private_key(65537, 2048)), pki.inter)
    elif case == "self_signed":
        now = chain(leaf(None))
    else:
        rogue_root = certgen.make_ca("Rogue Root", not_before=NOW - 100 * DAY)
        rogue = certgen.make_ca("Change CA R10", issuer=rogue_root, not_before=NOW - 100 * DAY)
        now = chain(leaf(rogue), rogue, rogue_root)
    finding = only(judged(pki, before, now))
    assert (finding.kind, finding.severity) == ("material_change", severity)
    assert evidence in finding.message
    assert finding.sha256 == now[0].sha256


def test_every_reason_is_listed_and_the_worst_wins(pki: Pki) -> None:
    before = chain(leaf(pki.inter, start_days_ago=80), pki.inter)
    now = chain(leaf(pki.other_inter, dns_names=["www.example.test"]), pki.other_inter)
    finding = only(judged(pki, before, now))
    assert finding.severity is Severity.HIGH
    assert "SANs removed" in finding.message
    assert "issuer changed" in finding.message


def test_an_older_certificate_coming_back_is_a_regression(pki: Pki) -> None:
    old = chain(leaf(pki.inter, start_days_ago=80), pki.inter)
    new = chain(leaf(pki.inter, start_days_ago=20), pki.inter)
    runs = (
        LeafRun(first_seen=NOW - 80 * DAY, observation_id=1, scan_id=1, leaf=old[0]),
        LeafRun(first_seen=NOW - 20 * DAY, observation_id=5, scan_id=5, leaf=new[0]),
        LeafRun(first_seen=NOW - DAY, observation_id=9, scan_id=9, leaf=old[0]),
    )
    ctx = Context(previous_leaf=new[0].sha256, previous_chain=new, runs=runs)
    target = EndpointInput(address="127.0.0.1", port=443, sni="www.example.test", status="ok")
    target = EndpointInput(**{**_fields(target), "chain": old})
    found = evaluate(target, policy=Policy(), trust=pki.store, now=NOW, context=ctx)
    finding = only([f for f in found if f.kind in CHANGE_KINDS])
    assert (finding.kind, finding.severity) == ("certificate_regressed", Severity.HIGH)
    until = (NOW - 20 * DAY).strftime("%Y-%m-%d")
    assert f"which this endpoint served until {until}" in finding.message


def _fields(target: EndpointInput) -> dict[str, object]:
    return {name: getattr(target, name) for name in target.__dataclass_fields__}


def test_unknown_previous_chain_is_a_plain_change(pki: Pki) -> None:
    current = chain(leaf(pki.inter))[0]
    found = judge_change("ab" * 32, current)
    assert found is not None
    assert (found.kind, found.severity) == ("certificate_changed", Severity.INFO)
    assert judge_change(current.sha256, current) is None
    assert judge_change(None, current) is None


def test_security_bits_and_families(pki: Pki) -> None:
    ec256 = chain(leaf(pki.inter, key=ec.generate_private_key(ec.SECP256R1())))[0]
    rsa2048 = chain(leaf(pki.inter, key=rsa.generate_private_key(65537, 2048)))[0]
    assert security_bits(ec256) == 128
    assert security_bits(rsa2048) == 112
    assert ca_family(ec256) == "certscan lab"
    assert ca_family(chain(leaf(None, org=None))[0]).startswith("CN=")
