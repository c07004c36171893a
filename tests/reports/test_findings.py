"""The findings rules (reports.findings) and cipher grading (reports.ciphers).

Every kind is provoked by a certificate (or handshake fact) built in code and is absent on a
healthy endpoint. No network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp

from reports.ciphers import cipher_weakness
from reports.deployed import undeployed
from reports.findings import (
    at_or_above,
    evaluate,
    evaluate_all,
    expiry_severity,
    key_reuse,
    shared_key_peers,
)
from reports.model import Context, EndpointInput, Proposal
from reports.owners import parse_owners, unowned
from reports.policy import KINDS, Policy
from reports.trust import TrustStore
from scanner.inventory.history import LeafRun
from scanner.lab import certgen
from scanner.lab.certgen import Issued
from scanner.models import CertInfo, Finding, Severity
from scanner.parse import parse_certificate

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=1000)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Pki:
    root: Issued
    inter: Issued
    rsa_root: Issued
    rsa_inter: Issued
    store: TrustStore


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = certgen.make_ca("Findings Root", not_before=LONG_AGO, not_after=NOW + 3650 * DAY)
    inter = certgen.make_ca("Findings CA", issuer=root, not_before=LONG_AGO)
    rsa_root = certgen.make_ca("RSA Root", key=certgen.make_key("rsa"), not_before=LONG_AGO)
    rsa_inter = certgen.make_ca(
        "RSA CA", issuer=rsa_root, key=certgen.make_key("rsa"), not_before=LONG_AGO
    )
    store = TrustStore.from_pem(root.cert_pem, rsa_root.cert_pem)
    return Pki(root, inter, rsa_root, rsa_inter, store)


def leaf(pki: Pki, **kwargs: object) -> Issued:
    options: dict[str, object] = {
        "dns_names": ["www.example.test"],
        "not_before": NOW - 10 * DAY,
        "days": 90,
    }
    options.update(kwargs)
    return certgen.make_leaf(pki.inter, **options)  # type: ignore[arg-type]


def endpoint(*certs: Issued, **kwargs: object) -> EndpointInput:
    fields: dict[str, object] = {
        "address": "127.0.0.1",
        "port": 443,
        "sni": "www.example.test",
        "status": "ok",
        "tls_version": "TLSv1.3",
        "cipher": "TLS_AES_128_GCM_SHA256",
        "chain": tuple(parse_certificate(c.der) for c in certs),
    }
    fields.update(kwargs)
    return EndpointInput(**fields)  # type: ignore[arg-type]


def run(
    pki: Pki, target: EndpointInput, *, policy: Policy | None = None, context: Context | None = None
) -> tuple[Finding, ...]:
    return evaluate(target, policy=policy or Policy(), trust=pki.store, now=NOW, context=context)


def healthy(pki: Pki) -> EndpointInput:
    return endpoint(leaf(pki), pki.inter)


def test_healthy_endpoint_has_no_findings(pki: Pki) -> None:
    target = healthy(pki)
    assert run(pki, target) == ()
    # the same leaf seen before, probed with modern versions only, unique key
    ctx = Context(previous_leaf=target.chain[0].sha256, accepted_versions=frozenset({"TLSv1.2"}))
    assert run(pki, target, context=ctx) == ()


# --- one row per kind: how to provoke it, and the expected severity ----------------------------


@dataclass(frozen=True)
class Provoke:
    kind: str
    severity: Severity
    build: Callable[[Pki], EndpointInput]
    #: The context, or how to build it for the target (history rules need the target's leaf).
    context: Context | Callable[[Pki, EndpointInput], Context] = field(default_factory=Context)
    evidence: str = ""  # a fragment the message must contain


def rsa_key(issued: Issued) -> rsa.RSAPrivateKey:
    assert isinstance(issued.key, rsa.RSAPrivateKey)
    return issued.key


def self_signed(p: Pki) -> EndpointInput:
    return endpoint(certgen.make_leaf(None, dns_names=["www.example.test"], not_before=NOW - DAY))


def rogue_root(p: Pki) -> EndpointInput:
    rogue = certgen.make_ca("Rogue Root", not_before=LONG_AGO)
    sub = certgen.make_leaf(rogue, dns_names=["www.example.test"], not_before=NOW - DAY)
    return endpoint(sub, rogue)


def leaf_as_ca(p: Pki) -> EndpointInput:
    """Reaches a trusted root, but through a certificate that is not a CA."""
    mid = leaf(p)
    sub = certgen.make_leaf(mid, dns_names=["www.example.test"], not_before=NOW - DAY)
    return endpoint(sub, mid, p.inter)


def sha1_leaf(p: Pki) -> EndpointInput:
    sub = certgen.make_sha1_leaf(p.rsa_inter, dns_names=["www.example.test"], not_before=NOW - DAY)
    return endpoint(sub, p.rsa_inter)


def sha1_intermediate(p: Pki) -> EndpointInput:
    resigned = certgen.resign_with_sha1(p.rsa_inter.cert, rsa_key(p.rsa_root))
    sha1_ca = Issued(resigned, p.rsa_inter.key)
    sub = certgen.make_leaf(sha1_ca, dns_names=["www.example.test"], not_before=NOW - DAY)
    return endpoint(sub, sha1_ca)


def negative_serial(p: Pki) -> EndpointInput:
    issued = leaf(p)
    assert isinstance(p.inter.key, ec.EllipticCurvePrivateKey)
    der = certgen.with_serial_content(issued.cert, p.inter.key, b"\xff\x12\x34")
    return replace(
        endpoint(p.inter), chain=(parse_certificate(der), parse_certificate(p.inter.der))
    )


def stray_extra(p: Pki) -> EndpointInput:
    return endpoint(leaf(p), p.inter, certgen.make_ca("Stray CA", not_before=LONG_AGO))


PROVOKE = [
    Provoke(
        "unparsable_certificate",
        Severity.HIGH,
        lambda p: replace(healthy(p), chain=(parse_certificate(b"\x30\x00"),)),
        evidence="cannot be parsed",
    ),
    Provoke(
        "expired",
        Severity.CRITICAL,
        lambda p: endpoint(leaf(p, not_before=NOW - 100 * DAY, not_after=NOW - 3 * DAY), p.inter),
        evidence="expired 2026-05-29T12:00:00Z, 3 days ago",
    ),
    Provoke(
        "expiring",
        Severity.HIGH,
        lambda p: endpoint(leaf(p, not_before=NOW - 300 * DAY, not_after=NOW + 20 * DAY), p.inter),
        evidence="in 20 days",
    ),
    Provoke(
        "expiring",
        Severity.CRITICAL,
        lambda p: endpoint(leaf(p, not_before=NOW - 80 * DAY, not_after=NOW + 5 * DAY), p.inter),
        evidence="2026-06-06T12:00:00Z",
    ),
    Provoke(
        "not_yet_valid",
        Severity.HIGH,
        lambda p: endpoint(leaf(p, not_before=NOW + 2 * DAY), p.inter),
        evidence="not valid before 2026-06-03T12:00:00Z",
    ),
    Provoke("self_signed", Severity.HIGH, self_signed, evidence="self-signed"),
    Provoke("untrusted_root", Severity.HIGH, rogue_root, evidence="self-signed certificate #1"),
    Provoke("untrusted_root", Severity.HIGH, leaf_as_ca, evidence="validation against"),
    Provoke("malformed_certificate", Severity.HIGH, negative_serial, evidence="RFC 5280 4.1.2.2"),
    Provoke(
        "incomplete_chain",
        Severity.HIGH,
        lambda p: endpoint(leaf(p)),
        evidence="'O=certscan lab,CN=Findings CA'",
    ),
    Provoke(
        "chain_order",
        Severity.LOW,
        lambda p: endpoint(leaf(p), p.root, p.inter),
        evidence="#0, #2",
    ),
    Provoke("extra_certificate", Severity.LOW, stray_extra, evidence="#2 'Stray CA' is not part"),
    Provoke(
        "weak_key",
        Severity.HIGH,
        lambda p: endpoint(leaf(p, key=rsa.generate_private_key(65537, 1024)), p.inter),
        evidence="1024-bit RSA key, minimum 2048",
    ),
    Provoke(
        "weak_key",
        Severity.HIGH,
        lambda p: endpoint(leaf(p, key=ec.generate_private_key(ec.SECP224R1())), p.inter),
        evidence="224-bit EC key ('secp224r1'), minimum 256",
    ),
    Provoke("weak_signature", Severity.HIGH, sha1_leaf, evidence="leaf 'localhost' is signed"),
    Provoke("weak_signature", Severity.HIGH, sha1_intermediate, evidence="#1 'RSA CA' is signed"),
    Provoke(
        "long_validity",
        Severity.LOW,
        lambda p: endpoint(leaf(p, days=400), p.inter),
        evidence="valid for 400 days",
    ),
    Provoke(
        "no_san",
        Severity.HIGH,
        lambda p: endpoint(leaf(p, san=False, cn="www.example.test"), p.inter),
        evidence="clients ignore the CN 'www.example.test'",
    ),
    Provoke(
        "hostname_mismatch",
        Severity.HIGH,
        lambda p: replace(healthy(p), sni="other.example.test"),
        evidence="'other.example.test' is not covered",
    ),
    Provoke(
        "hostname_mismatch",
        Severity.LOW,
        lambda p: replace(healthy(p), sni=None),
        evidence="'127.0.0.1' is not covered",
    ),
    Provoke(
        "key_reuse",
        Severity.MEDIUM,
        healthy,
        Context(key_shared_with=frozenset({("127.0.0.2", 443, None)})),
        evidence="127.0.0.2:443",
    ),
    Provoke(
        "legacy_protocol",
        Severity.MEDIUM,
        healthy,
        Context(accepted_versions=frozenset({"TLSv1.2", "TLSv1", "TLSv1.1"})),
        evidence="accepts TLSv1, TLSv1.1",
    ),
    Provoke(
        "legacy_protocol",
        Severity.HIGH,
        lambda p: replace(healthy(p), tls_version="TLSv1", cipher="ECDHE-RSA-AES256-GCM-SHA384"),
        evidence="negotiated TLSv1",
    ),
    Provoke(
        "weak_cipher",
        Severity.HIGH,
        lambda p: replace(healthy(p), tls_version="TLSv1.2", cipher="DES-CBC3-SHA"),
        evidence="'DES-CBC3-SHA': 3DES",
    ),
    Provoke(
        "revoked",
        Severity.CRITICAL,
        lambda p: stapled(p, ocsp.OCSPCertStatus.REVOKED),
        evidence="reason: keyCompromise",
    ),
    Provoke(
        "ocsp_staple_stale",
        Severity.MEDIUM,
        lambda p: stapled(p, next_update=NOW - DAY),
        evidence="expired at",
    ),
    Provoke(
        "ocsp_staple_mismatch",
        Severity.MEDIUM,
        lambda p: replace(healthy(p), ocsp_staple=stapled(p).ocsp_staple),
        evidence="for another certificate",
    ),
    Provoke(
        "must_staple_missing",
        Severity.HIGH,
        lambda p: endpoint(leaf(p, must_staple=True), p.inter),
        evidence="TLS Feature",
    ),
    Provoke(
        "no_pq_key_exchange",
        Severity.INFO,
        lambda p: replace(healthy(p), group="x25519"),
        evidence="the key exchange group is x25519, a classical group only",
    ),
    Provoke(
        "no_pq_key_exchange",
        Severity.INFO,
        lambda p: replace(
            healthy(p), tls_version="TLSv1.2", cipher="ECDHE-ECDSA-AES128-GCM-SHA256"
        ),
        evidence="TLSv1.2 has no post-quantum key exchange",
    ),
    Provoke(
        "certificate_changed",
        Severity.INFO,
        healthy,
        Context(previous_leaf="ab" * 32),
        evidence="abababababababab",
    ),
]


def stapled(
    p: Pki,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    next_update: datetime = NOW + DAY,
) -> EndpointInput:
    """A healthy endpoint stapling an OCSP response about its leaf with ``status``."""
    issued = leaf(p)
    revoked = status is ocsp.OCSPCertStatus.REVOKED
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=issued.cert,
            issuer=p.inter.cert,
            algorithm=hashes.SHA256(),
            cert_status=status,
            this_update=NOW - 2 * DAY,
            next_update=next_update,
            revocation_time=NOW - DAY if revoked else None,
            revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, p.inter.cert)
        .sign(p.inter.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    return endpoint(issued, p.inter, ocsp_staple=response)


def run_of(cert: Issued | CertInfo, first_seen: datetime, obs: int = 1) -> LeafRun:
    info = cert if isinstance(cert, CertInfo) else parse_certificate(cert.der)
    return LeafRun(first_seen=first_seen, observation_id=obs, scan_id=obs, leaf=info)


def after(pki: Pki, previous: Issued) -> Callable[[Pki, EndpointInput], Context]:
    """A context where ``previous`` (served with the intermediate) was the last leaf."""

    def build(p: Pki, target: EndpointInput) -> Context:
        chain = (parse_certificate(previous.der), parse_certificate(p.inter.der))
        runs = (run_of(chain[0], NOW - 30 * DAY, 1), run_of(target.chain[0], NOW - DAY, 2))
        return Context(previous_leaf=chain[0].sha256, previous_chain=chain, runs=runs)

    return build


def renewed_late(p: Pki, target: EndpointInput) -> Context:
    older = leaf(p, not_before=NOW - 190 * DAY)  # ends NOW - 100 days, renewed after expiry
    old = leaf(p, not_before=NOW - 100 * DAY)  # ends NOW - 10 days, renewed 1 day before
    runs = (
        run_of(older, NOW - 190 * DAY, 1),
        run_of(old, NOW - 98 * DAY, 2),
        run_of(target.chain[0], NOW - 11 * DAY, 3),
    )
    return Context(previous_leaf=runs[1].leaf.sha256, runs=runs)


def overdue(p: Pki) -> EndpointInput:
    return endpoint(leaf(p, not_before=NOW - 85 * DAY), p.inter)  # 5 days left of 90


def used_to_renew_early(p: Pki, target: EndpointInput) -> Context:
    old = leaf(p, not_before=NOW - 160 * DAY)  # ends NOW - 70 days; renewed 14 days ahead
    runs = (run_of(old, NOW - 160 * DAY, 1), run_of(target.chain[0], NOW - 84 * DAY, 2))
    return Context(previous_leaf=runs[0].leaf.sha256, runs=runs)


HISTORY_ROWS = [
    Provoke(
        "material_change",
        Severity.HIGH,
        healthy,
        lambda p, t: after(p, leaf(p, dns_names=["www.example.test", "api.example.test"]))(p, t),
        evidence="SANs removed: 'DNS:api.example.test'",
    ),
    Provoke(
        "certificate_regressed",
        Severity.HIGH,
        healthy,
        lambda p, t: after(p, leaf(p, not_before=NOW - 5 * DAY))(p, t),
        evidence="an older certificate came back",
    ),
    Provoke(
        "fleet_inconsistent",
        Severity.MEDIUM,
        healthy,
        lambda p, t: Context(
            extra=(
                Proposal(
                    kind="fleet_inconsistent",
                    severity=Severity.MEDIUM,
                    message="www.example.test:443 presents 2 certificates on 3 addresses",
                    sha256=t.chain[0].sha256,
                ),
            )
        ),
        evidence="presents 2 certificates",
    ),
    Provoke(
        "renews_late",
        Severity.MEDIUM,
        healthy,
        renewed_late,
        evidence="came 2 days after and 1 day before",
    ),
    Provoke(
        "renewal_not_observed",
        Severity.MEDIUM,
        overdue,
        used_to_renew_early,
        evidence="no successor has been seen",
    ),
]
HISTORY_ROWS.append(
    Provoke(
        "unowned",
        Severity.LOW,
        healthy,
        Context(
            extra=(
                unowned(parse_owners({"rule": [{"owner": "x", "ports": [1]}]}, source="t"), None)
                or Proposal(kind="?", severity=Severity.INFO, message="?"),
            )
        ),
        evidence="no [owners] rule matches",
    )
)
HISTORY_ROWS.append(
    Provoke(
        "file_not_deployed",
        Severity.MEDIUM,
        healthy,
        lambda p, t: Context(
            extra=(
                undeployed(
                    [t, replace(endpoint(leaf(p, days=200), p.inter), address="file:/x.pem")]
                )[t.key],
            )
        ),
        evidence="certificate on disk in file:/x.pem",
    )
)
PROVOKE += HISTORY_ROWS


def test_every_kind_is_provoked() -> None:
    assert {row.kind for row in PROVOKE} == set(KINDS)


@pytest.mark.parametrize("row", PROVOKE, ids=lambda r: f"{r.kind}-{r.severity.label}")
def test_kind_is_provoked(row: Provoke, pki: Pki) -> None:
    target = row.build(pki)
    context = row.context if isinstance(row.context, Context) else row.context(pki, target)
    found = [f for f in run(pki, target, context=context) if f.kind == row.kind]
    assert len(found) == 1, found
    finding = found[0]
    assert finding.severity is row.severity
    assert row.evidence in finding.message
    assert "\n" not in finding.message
    assert (finding.address, finding.port, finding.sni) == (target.address, 443, target.sni)
    endpoint_wide = {
        "chain_order",
        "legacy_protocol",
        "weak_cipher",
        "unowned",
        "no_pq_key_exchange",
    }
    assert (finding.sha256 is None) == (row.kind in endpoint_wide)
    if finding.sha256 is not None:
        assert finding.sha256 in {c.sha256 for c in target.chain}


@pytest.mark.parametrize(
    ("version", "group"),
    [
        ("TLSv1.3", "X25519MLKEM768"),
        ("TLSv1.3", "SecP256r1MLKEM768"),
        ("TLSv1.3", "X25519Kyber768Draft00"),
        ("TLSv1.3", None),  # stored before groups were recorded: unknown, not judged
    ],
)
def test_post_quantum_or_unknown_groups_are_not_reported(
    pki: Pki, version: str, group: str | None
) -> None:
    target = replace(healthy(pki), tls_version=version, group=group)
    assert [f for f in run(pki, target) if f.kind == "no_pq_key_exchange"] == []


def test_a_policy_raises_no_pq_key_exchange(pki: Pki) -> None:
    policy = Policy(severities={"no_pq_key_exchange": Severity.HIGH})
    found = run(pki, replace(healthy(pki), group="secp256r1"), policy=policy)
    assert [(f.kind, f.severity) for f in found] == [("no_pq_key_exchange", Severity.HIGH)]


def test_rejection_explained_by_weak_signature_is_not_untrusted(pki: Pki) -> None:
    findings = run(pki, sha1_leaf(pki))
    kinds = {f.kind for f in findings}
    assert "weak_signature" in kinds
    assert "untrusted_root" not in kinds


def test_sha1_self_signed_root_signature_does_not_count(pki: Pki) -> None:
    sha1_root = certgen.resign_with_sha1(pki.rsa_root.cert, rsa_key(pki.rsa_root))
    sub = certgen.make_leaf(pki.rsa_root, dns_names=["www.example.test"], not_before=NOW - DAY)
    findings = run(pki, endpoint(sub, Issued(sha1_root, pki.rsa_root.key)))
    assert [f.kind for f in findings] == []


def test_pinned_self_signed_leaf_is_low(pki: Pki) -> None:
    own = certgen.make_leaf(None, dns_names=["www.example.test"], not_before=NOW - DAY)
    store = TrustStore.from_pem(own.cert_pem, mozilla=False)
    findings = evaluate(endpoint(own), policy=Policy(), trust=store, now=NOW)
    assert [(f.kind, f.severity) for f in findings] == [("self_signed", Severity.LOW)]


def test_hostile_certificate_text_stays_on_one_line(pki: Pki) -> None:
    nasty = "<script>alert(1)</script>\n\u202eevil"
    cert = leaf(pki, cn=nasty, san=False)
    (finding,) = run(pki, endpoint(cert, pki.inter))
    assert finding.kind == "no_san"
    assert "\n" not in finding.message
    assert "\u202e" not in finding.message
    assert "<script>alert(1)</script>\\x0a\\u202eevil" in finding.message


def test_findings_are_sorted_most_severe_first(pki: Pki) -> None:
    target = replace(
        endpoint(leaf(pki, not_before=NOW - 100 * DAY, not_after=NOW - DAY)),
        cipher="AES128-SHA",
    )
    findings = run(pki, target, context=Context(previous_leaf="00" * 32))
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, reverse=True)
    assert severities[0] is Severity.CRITICAL
    assert severities[-1] is Severity.INFO


# --- policy application ------------------------------------------------------------------------


def test_policy_disables_overrides_and_restricts(pki: Pki) -> None:
    target = endpoint(leaf(pki, days=400))  # long_validity (low) + incomplete_chain (high)

    def kinds(findings: tuple[Finding, ...]) -> set[tuple[str, Severity]]:
        return {(f.kind, f.severity) for f in findings}

    assert kinds(run(pki, target)) == {
        ("long_validity", Severity.LOW),
        ("incomplete_chain", Severity.HIGH),
    }
    off = Policy(disabled=frozenset({"incomplete_chain"}))
    assert kinds(run(pki, target, policy=off)) == {("long_validity", Severity.LOW)}
    only = Policy(enabled=frozenset({"incomplete_chain", "expired"}))
    assert kinds(run(pki, target, policy=only)) == {("incomplete_chain", Severity.HIGH)}
    louder = Policy(severities={"long_validity": Severity.CRITICAL})
    assert ("long_validity", Severity.CRITICAL) in kinds(run(pki, target, policy=louder))
    relaxed = Policy(max_leaf_validity_days=500)
    assert kinds(run(pki, target, policy=relaxed)) == {("incomplete_chain", Severity.HIGH)}


def test_key_size_thresholds_follow_policy(pki: Pki) -> None:
    target = endpoint(leaf(pki, key=certgen.make_key("ec", 256)), pki.inter)
    assert run(pki, target) == ()
    strict = run(pki, target, policy=Policy(min_ec_bits=384))  # the leaf and the P-256 CA
    assert [(f.kind, f.sha256) for f in strict] == [
        ("weak_key", target.chain[0].sha256),
        ("weak_key", target.chain[1].sha256),
    ]


# --- expiry: fixed windows and the short-lived rule -------------------------------------------


@pytest.mark.parametrize(
    ("lifetime_days", "left", "expected"),
    [
        (398, 31 * DAY, None),
        (398, 30 * DAY, Severity.HIGH),
        (398, 8 * DAY, Severity.HIGH),
        (398, 7 * DAY, Severity.CRITICAL),
        (398, timedelta(seconds=1), Severity.CRITICAL),
        (398, -timedelta(seconds=1), None),  # expired is its own kind
        (90, 30 * DAY, Severity.HIGH),  # 90 days: the last third is exactly 30 days
        (90, 31 * DAY, None),
        (47, 20 * DAY, None),  # 47 days: high from 15.67 days, critical from 3.66 days
        (47, 15 * DAY, Severity.HIGH),
        (47, 4 * DAY, Severity.HIGH),
        (47, 3 * DAY, Severity.CRITICAL),
        (6, 3 * DAY, None),  # 6 days: high from 2 days, critical from 11.2 hours
        (6, 2 * DAY, Severity.HIGH),
        (6, timedelta(hours=12), Severity.HIGH),
        (6, timedelta(hours=11), Severity.CRITICAL),
    ],
)
def test_expiry_severity(lifetime_days: int, left: timedelta, expected: Severity | None) -> None:
    not_after = NOW + left
    not_before = not_after - timedelta(days=lifetime_days)
    assert expiry_severity(not_before, not_after, NOW, Policy()) is expected


def test_short_lived_fraction_is_configurable() -> None:
    not_after = NOW + 10 * DAY
    not_before = not_after - 47 * DAY
    assert expiry_severity(not_before, not_after, NOW, Policy()) is Severity.HIGH
    assert expiry_severity(not_before, not_after, NOW, Policy(short_lived_fraction=0.1)) is None
    no_scaling = Policy(short_lived_fraction=1.0)
    assert expiry_severity(not_before, not_after, NOW, no_scaling) is Severity.HIGH


def test_expiring_intermediate_is_reported(pki: Pki) -> None:
    ca = certgen.make_ca("Short CA", issuer=pki.root, not_before=LONG_AGO, not_after=NOW + 3 * DAY)
    sub = certgen.make_leaf(ca, dns_names=["www.example.test"], not_before=NOW - DAY, days=2)
    findings = run(pki, endpoint(sub, ca))  # the 2-day leaf has a day left: not expiring yet
    assert [(f.kind, f.severity, f.sha256) for f in findings] == [
        ("expiring", Severity.CRITICAL, parse_certificate(ca.der).sha256)
    ]
    assert "certificate #1 'Short CA' expires" in findings[0].message


# --- key reuse across endpoints --------------------------------------------------------------


def test_key_reuse_across_three_endpoints(pki: Pki) -> None:
    key = certgen.make_key("ec")
    certs = [leaf(pki, key=key, dns_names=[f"n{i}.example.test"]) for i in range(3)]
    shared = [
        endpoint(cert, pki.inter, address=f"127.0.0.{i + 1}", sni=f"n{i}.example.test")
        for i, cert in enumerate(certs)
    ]
    twin = replace(shared[0], address="127.0.0.9")  # same certificate as #0: not reuse
    alone = endpoint(leaf(pki), pki.inter, address="127.0.0.20")
    everyone = [*shared, twin, alone]
    spki = shared[0].chain[0].spki_sha256
    assert spki is not None
    assert key_reuse(everyone) == {spki: frozenset(e.key for e in [*shared, twin])}
    peers = shared_key_peers(everyone)
    assert peers[shared[0].key] == frozenset({shared[1].key, shared[2].key})
    assert peers[twin.key] == frozenset({shared[1].key, shared[2].key})
    assert peers[shared[1].key] == frozenset({shared[0].key, shared[2].key, twin.key})
    assert alone.key not in peers
    results = evaluate_all(everyone, policy=Policy(), trust=pki.store, now=NOW)
    reuse = {k: [f for f in fs if f.kind == "key_reuse"] for k, fs in results.items()}
    assert all(len(reuse[e.key]) == 1 for e in [*shared, twin])
    assert reuse[alone.key] == []
    assert "3 other endpoint(s)" in reuse[shared[1].key][0].message


def test_key_reuse_needs_different_certificates(pki: Pki) -> None:
    cert = leaf(pki)
    same = [endpoint(cert, pki.inter, address=f"127.0.1.{i}") for i in range(3)]
    assert key_reuse(same) == {}


def test_evaluate_all_uses_previous_and_probes(pki: Pki) -> None:
    target = healthy(pki)
    results = evaluate_all(
        [target],
        policy=Policy(),
        trust=pki.store,
        now=NOW,
        previous={target.key: "cd" * 32},
        probes={target.key: frozenset({"TLSv1.1", "TLSv1.3"})},
    )
    assert sorted(f.kind for f in results[target.key]) == ["certificate_changed", "legacy_protocol"]


def test_failed_endpoint_has_no_certificate_findings(pki: Pki) -> None:
    failed = EndpointInput(address="127.0.0.1", port=443, sni=None, status="refused")
    assert run(pki, failed) == ()


def test_naive_now_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(healthy(pki), policy=Policy(), trust=pki.store, now=datetime(2026, 1, 1))


def test_at_or_above(pki: Pki) -> None:
    findings = run(pki, endpoint(leaf(pki, days=400), pki.inter))
    assert [f.severity for f in findings] == [Severity.LOW]
    assert at_or_above(findings, Severity.LOW)
    assert at_or_above(findings, Severity.INFO)
    assert not at_or_above(findings, Severity.MEDIUM)
    assert not at_or_above((), Severity.INFO)


# --- ciphers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "severity"),
    [
        ("TLS_AES_128_GCM_SHA256", None),
        ("TLS_CHACHA20_POLY1305_SHA256", None),
        ("ECDHE-RSA-AES128-GCM-SHA256", None),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", None),
        ("ECDHE-RSA-AES128-SHA256", None),  # CBC, but with a SHA-256 MAC
        ("AES128-CCM", None),
        ("ECDHE-RSA-AES256-SHA", Severity.MEDIUM),
        ("AES128-SHA", Severity.MEDIUM),
        ("DHE-RSA-CAMELLIA256-SHA", Severity.MEDIUM),
        ("TLS_RSA_WITH_AES_128_CBC_SHA", Severity.MEDIUM),
        ("DES-CBC3-SHA", Severity.HIGH),
        ("ECDHE-RSA-DES-CBC3-SHA", Severity.HIGH),
        ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", Severity.HIGH),
        ("DES-CBC-SHA", Severity.HIGH),
        ("RC4-MD5", Severity.HIGH),
        ("ECDHE-RSA-RC4-SHA", Severity.HIGH),
        ("IDEA-CBC-SHA", Severity.HIGH),
        ("NULL-SHA256", Severity.CRITICAL),
        ("ECDHE-RSA-NULL-SHA", Severity.CRITICAL),
        ("EXP-RC4-MD5", Severity.CRITICAL),
        ("EXP1024-DES-CBC-SHA", Severity.CRITICAL),
        ("TLS_RSA_EXPORT_WITH_RC4_40_MD5", Severity.CRITICAL),
        ("ADH-AES128-SHA", Severity.CRITICAL),
        ("AECDH-AES256-SHA", Severity.CRITICAL),
        ("TLS_DH_anon_WITH_AES_128_GCM_SHA256", Severity.CRITICAL),
        ("", None),
    ],
)
def test_cipher_weakness(name: str, severity: Severity | None) -> None:
    weakness = cipher_weakness(name)
    assert (None if weakness is None else weakness.severity) is severity
