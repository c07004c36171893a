"""Chain building and trust (reports.trust) and host-name matching (reports.names).

Certificates are built in code with scanner.lab.certgen; nothing touches the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reports.names import clean, hostname_matches, quote
from reports.trust import ChainVerdict, TrustStore, evaluate_chain
from scanner.errors import UsageError
from scanner.lab import certgen
from scanner.lab.certgen import Issued
from scanner.models import CertInfo
from scanner.parse import parse_certificate

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=1000)


@dataclass(frozen=True)
class Pki:
    root: Issued
    inter: Issued
    leaf: Issued
    other_root: Issued
    rsa_root: Issued
    cross_root: Issued  # root's subject and key, issued by other_root


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = certgen.make_ca("Test Root", not_before=LONG_AGO, not_after=NOW + timedelta(3650))
    inter = certgen.make_ca(
        "Test Issuing CA", issuer=root, not_before=LONG_AGO, not_after=NOW + timedelta(1000)
    )
    leaf = certgen.make_leaf(inter, dns_names=["a.example"], not_before=NOW - timedelta(10))
    other = certgen.make_ca("Other Root", not_before=LONG_AGO)
    rsa_root = certgen.make_ca("RSA Root", key=certgen.make_key("rsa"), not_before=LONG_AGO)
    cross = certgen.make_ca("Test Root", issuer=other, key=root.key, not_before=LONG_AGO)
    return Pki(root, inter, leaf, other, rsa_root, cross)


def infos(*certs: Issued) -> list[CertInfo]:
    return [parse_certificate(c.der) for c in certs]


@pytest.fixture(scope="module")
def private(pki: Pki) -> TrustStore:
    """Mozilla's roots plus the test root, as ``--ca-bundle`` would give."""
    return TrustStore.from_pem(pki.root.cert_pem)


@pytest.fixture(scope="module")
def public() -> TrustStore:
    return TrustStore.from_pem()


# --- structure: one row per chain shape --------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    chain: Callable[[Pki], list[Issued]]
    trusted: bool
    ordered: bool = True
    extras: tuple[int, ...] = ()
    duplicates: tuple[int, ...] = ()
    missing: str | None = None  # the missing issuer's name
    path: int = 2  # presented certificates on the path


CASES = [
    Case("leaf and intermediate", lambda p: [p.leaf, p.inter], trusted=True),
    Case("root sent too", lambda p: [p.leaf, p.inter, p.root], trusted=True),
    Case(
        "leaf only", lambda p: [p.leaf], False, missing="O=certscan lab,CN=Test Issuing CA", path=1
    ),
    Case("out of order", lambda p: [p.leaf, p.root, p.inter], trusted=True, ordered=False),
    Case(
        "unrelated extra",
        lambda p: [p.leaf, p.other_root, p.inter],
        trusted=True,
        ordered=False,
        extras=(1,),
    ),
    Case("trailing extra", lambda p: [p.leaf, p.inter, p.other_root], trusted=True, extras=(2,)),
    Case(
        "duplicate",
        lambda p: [p.leaf, p.inter, p.inter],
        trusted=True,
        extras=(2,),
        duplicates=(2,),
    ),
    Case("cross-signed root is related", lambda p: [p.leaf, p.inter, p.cross_root], trusted=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_structure_with_private_root(case: Case, pki: Pki, private: TrustStore) -> None:
    chain = infos(*case.chain(pki))
    verdict = evaluate_chain(chain, store=private, now=NOW)
    assert verdict.trusted is case.trusted, verdict.reason
    assert verdict.ordered is case.ordered
    assert verdict.extra_positions == case.extras
    assert verdict.extra_certificates == tuple(chain[i].sha256 for i in case.extras)
    assert verdict.duplicate_positions == case.duplicates
    assert len(verdict.path) == case.path
    assert verdict.path[0] == chain[0].sha256
    assert verdict.missing_issuer == case.missing
    assert verdict.untrusted_root is None
    assert not verdict.self_signed
    if case.trusted:
        assert verdict.anchor == "O=certscan lab,CN=Test Root"
        assert verdict.reason is None


def test_ca_presented_as_leaf_is_rejected(pki: Pki, private: TrustStore) -> None:
    verdict = evaluate_chain(infos(pki.inter), store=private, now=NOW)
    assert verdict.anchor is not None
    assert not verdict.trusted
    assert "basicConstraints" in (verdict.rejection or "")


def test_private_root_is_untrusted_without_bundle(pki: Pki, public: TrustStore) -> None:
    sent_root = evaluate_chain(infos(pki.leaf, pki.inter, pki.root), store=public, now=NOW)
    assert not sent_root.trusted
    assert sent_root.untrusted_root == "O=certscan lab,CN=Test Root"
    assert sent_root.missing_issuer is None
    assert sent_root.anchor is None
    assert "not a trusted root" in (sent_root.reason or "")
    # without the root, the intermediate's issuer is simply unknown
    no_root = evaluate_chain(infos(pki.leaf, pki.inter), store=public, now=NOW)
    assert not no_root.trusted
    assert no_root.missing_issuer == "O=certscan lab,CN=Test Root"
    assert no_root.untrusted_root is None


def test_ca_bundle_file_makes_private_root_trusted(pki: Pki, tmp_path: Path) -> None:
    bundle = tmp_path / "private.pem"
    bundle.write_bytes(certgen.chain_pem(pki.other_root, pki.root))
    store = TrustStore.load([bundle])
    assert len(store) == len(TrustStore.from_pem()) + 2
    verdict = evaluate_chain(infos(pki.leaf, pki.inter), store=store, now=NOW)
    assert verdict.trusted, verdict.reason
    only_private = TrustStore.load([bundle], mozilla=False)
    assert len(only_private) == 2
    assert evaluate_chain(infos(pki.leaf, pki.inter), store=only_private, now=NOW).trusted


def test_mozilla_roots_are_loaded(public: TrustStore) -> None:
    assert len(public) > 100


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read CA bundle"),
        (b"not a certificate", "not a PEM certificate bundle"),
        (b"", "not a PEM certificate bundle"),
    ],
)
def test_bad_ca_bundle_is_a_usage_error(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    bundle = tmp_path / "bundle.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(UsageError, match=message) as info:
        TrustStore.load([bundle])
    assert str(bundle) in str(info.value)
    assert "\n" not in str(info.value)


def test_self_signed_leaf_untrusted_then_pinned(public: TrustStore) -> None:
    leaf = certgen.make_leaf(None, dns_names=["a.example"], not_before=NOW - timedelta(1))
    chain = infos(leaf)
    verdict = evaluate_chain(chain, store=public, now=NOW)
    assert verdict.self_signed
    assert not verdict.trusted
    assert not verdict.pinned
    assert (verdict.untrusted_root, verdict.missing_issuer, verdict.anchor) == (None, None, None)
    pinned = evaluate_chain(chain, store=TrustStore.from_pem(leaf.cert_pem), now=NOW)
    assert pinned.self_signed
    assert pinned.pinned
    assert pinned.trusted


def test_expired_leaf_is_still_trusted(pki: Pki, private: TrustStore) -> None:
    """Expiry is its own finding: trust is judged at a moment inside the validity window."""
    expired = certgen.make_leaf(
        pki.inter, not_before=NOW - timedelta(100), not_after=NOW - timedelta(5)
    )
    future = certgen.make_leaf(pki.inter, not_before=NOW + timedelta(5), days=90)
    for leaf in (expired, future):
        verdict = evaluate_chain(infos(leaf, pki.inter), store=private, now=NOW)
        assert verdict.trusted, verdict.reason


def test_validity_windows_that_never_overlap(pki: Pki, private: TrustStore) -> None:
    young_ca = certgen.make_ca("Young CA", issuer=pki.root, not_before=NOW - timedelta(1))
    old_leaf = certgen.make_leaf(
        young_ca, not_before=NOW - timedelta(100), not_after=NOW - timedelta(50)
    )
    verdict = evaluate_chain(infos(old_leaf, young_ca), store=private, now=NOW)
    assert not verdict.trusted
    assert verdict.anchor is not None
    assert "no moment" in (verdict.rejection or "")


def test_sha1_leaf_reaches_anchor_but_is_rejected(pki: Pki) -> None:
    store = TrustStore.from_pem(pki.rsa_root.cert_pem, mozilla=False)
    leaf = certgen.make_sha1_leaf(pki.rsa_root, not_before=NOW - timedelta(1))
    verdict = evaluate_chain(infos(leaf), store=store, now=NOW)
    assert verdict.anchor == "O=certscan lab,CN=RSA Root"
    assert not verdict.trusted
    assert verdict.rejection is not None
    assert "\n" not in verdict.rejection


def test_non_ca_issuer_is_rejected(pki: Pki, private: TrustStore) -> None:
    """A leaf used as a CA: the path exists by signature, validation refuses it."""
    sub = certgen.make_leaf(pki.leaf, dns_names=["b.example"], not_before=NOW - timedelta(1))
    verdict = evaluate_chain(infos(sub, pki.leaf, pki.inter), store=private, now=NOW)
    assert verdict.anchor is not None
    assert len(verdict.path) == 3
    assert not verdict.trusted
    assert verdict.rejection is not None


def test_forged_issuer_name_is_not_an_issuer(pki: Pki, private: TrustStore) -> None:
    """Same subject as the real intermediate, different key: the signature decides."""
    impostor = certgen.make_ca("Test Issuing CA", issuer=pki.root, not_before=LONG_AGO)
    verdict = evaluate_chain(infos(pki.leaf, impostor), store=private, now=NOW)
    assert not verdict.trusted
    assert verdict.missing_issuer == "O=certscan lab,CN=Test Issuing CA"
    assert verdict.extra_positions == ()  # it carries the issuer's name: related, not extra


def test_unparsable_certificates_are_skipped(pki: Pki, private: TrustStore) -> None:
    garbage = parse_certificate(b"\x30\x03\x02\x01\x00")
    assert garbage.error is not None
    chain = [*infos(pki.leaf), garbage, *infos(pki.inter)]
    verdict = evaluate_chain(chain, store=private, now=NOW)
    assert verdict.trusted
    assert verdict.extra_positions == ()
    unparsable_leaf = evaluate_chain([garbage, *infos(pki.inter)], store=private, now=NOW)
    assert not unparsable_leaf.trusted
    assert unparsable_leaf.path == ()


def test_crafted_chain_costs_bounded_time(private: TrustStore) -> None:
    """Thirty self-issued certificates that all verify each other, plus a leaf below them."""
    key = certgen.make_key("ec")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loop")])
    loop = []
    for serial in range(1, 31):
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(LONG_AGO)
            .not_valid_after(NOW + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        loop.append(cert)
    leaf = certgen.make_leaf(certgen.Issued(loop[0], key), not_before=NOW - timedelta(1))
    chain = [parse_certificate(leaf.der)] + [
        parse_certificate(certgen.Issued(c, key).der) for c in loop
    ]
    started = time.monotonic()
    verdict = evaluate_chain(chain, store=private, now=NOW)
    assert time.monotonic() - started < 2
    assert not verdict.trusted
    assert verdict.untrusted_root == "CN=loop"


def test_verdicts_are_cached_per_chain_and_time(pki: Pki, private: TrustStore) -> None:
    chain = infos(pki.leaf, pki.inter)
    first = evaluate_chain(chain, store=private, now=NOW)
    assert evaluate_chain(chain, store=private, now=NOW) is first
    assert isinstance(first, ChainVerdict)


# --- host names ------------------------------------------------------------------------------

DNS = ("*.example.com", "www.example.org", "xn--bcher-kva.example", "Mixed.Case.Example")

HOSTNAMES = [
    ("a.example.com", True),
    ("A.EXAMPLE.COM", True),
    ("a.example.com.", True),
    ("a.b.example.com", False),  # a wildcard is one label
    ("example.com", False),  # and never empty
    (".example.com", False),
    ("*.example.com", False),  # the scanned name is never a pattern
    ("www.example.org", True),
    ("wwwexample.org", False),
    ("bücher.example", True),  # U-label scanned, A-label SAN
    ("BÜCHER.example", True),
    ("xn--bcher-kva.example", True),
    ("bucher.example", False),
    ("mixed.case.example", True),
    ("", False),
    ("a..example.com", False),
    ("10.0.0.1", False),  # IP literals never match DNS SANs
]


@pytest.mark.parametrize(("name", "expected"), HOSTNAMES)
def test_hostname_matching(name: str, expected: bool) -> None:
    assert hostname_matches(name, DNS, ()) is expected


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.com", "example.com", False),  # at least two labels after the wildcard
        ("*", "localhost", False),
        ("f*.example.com", "foo.example.com", False),  # partial wildcards are not honoured
        ("*oo.example.com", "foo.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("a.*.example.com", "a.b.example.com", False),
        ("*.example.com", "xn--bcher-kva.example.com", True),
        ("*.example.com", "bücher.example.com", True),
        ("bücher.example", "bücher.example", False),  # a SAN must hold A-labels
        ("*.co.uk", "example.co.uk", True),  # no public-suffix list: two labels suffice
    ],
)
def test_wildcard_rules(pattern: str, name: str, expected: bool) -> None:
    assert hostname_matches(name, [pattern], []) is expected


@pytest.mark.parametrize(
    ("name", "ips", "expected"),
    [
        ("127.0.0.1", ["127.0.0.1"], True),
        ("127.0.0.1", ["127.0.0.2"], False),
        ("::1", ["0:0:0:0:0:0:0:1"], True),
        ("[::1]", ["::1"], True),
        ("127.0.0.1", [], False),
        ("localhost", ["127.0.0.1"], False),
    ],
)
def test_ip_matching(name: str, ips: list[str], expected: bool) -> None:
    assert hostname_matches(name, ["127.0.0.1", "localhost.invalid"], ips) is expected


def test_ip_literal_is_not_matched_by_dns_san() -> None:
    assert not hostname_matches("127.0.0.1", ["127.0.0.1"], [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "'plain'"),
        ("two\nlines", "'two\\x0alines'"),
        ("cr\rtab\t", "'cr\\x0dtab\\x09'"),
        ("bidi\u202eevil", "'bidi\\u202eevil'"),
        ("sep\u2028x", "'sep\\u2028x'"),
        ("<script>", "'<script>'"),  # markup is the renderer's business
    ],
)
def test_quote_keeps_messages_on_one_line(text: str, expected: str) -> None:
    assert quote(text) == expected


def test_clean_bounds_length() -> None:
    assert clean("x" * 500, limit=10) == "x" * 9 + "…"


def test_leaf_for_clients_only_is_rejected(pki: Pki, private: TrustStore) -> None:
    key = certgen.make_key("ec")
    client_only = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
        .issuer_name(pki.inter.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(1))
        .not_valid_after(NOW + timedelta(30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.inter.key.public_key()),
            critical=False,
        )
        .sign(pki.inter.key, hashes.SHA256())
    )
    chain = [parse_certificate(Issued(client_only, key).der), *infos(pki.inter)]
    verdict = evaluate_chain(chain, store=private, now=NOW)
    assert verdict.anchor is not None
    assert not verdict.trusted
    assert "serverAuth" in (verdict.rejection or "")


def test_store_without_anchors_trusts_nothing(pki: Pki) -> None:
    empty = TrustStore.load([], mozilla=False)
    assert len(empty) == 0
    verdict = evaluate_chain(infos(pki.leaf, pki.inter), store=empty, now=NOW)
    assert not verdict.trusted
    assert verdict.missing_issuer == "O=certscan lab,CN=Test Root"


def test_non_conforming_names_do_not_warn(pki: Pki) -> None:
    """cryptography warns about a three-letter country; under -W error that must not escape."""
    with pytest.warns(UserWarning, match="length must be"):
        country = x509.NameAttribute(NameOID.COUNTRY_NAME, "USA", _validate=False)
    odd_name = x509.Name([country, x509.NameAttribute(NameOID.COMMON_NAME, "Odd Root")])
    key = certgen.make_key("ec")
    odd_root = (
        x509.CertificateBuilder()
        .subject_name(odd_name)
        .issuer_name(odd_name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(LONG_AGO)
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    root = Issued(odd_root, key)
    with pytest.warns(UserWarning, match="length must be"):  # reading the issuer's name warns
        sub = certgen.make_leaf(root, not_before=NOW - timedelta(1))
    chain = infos(sub, root)  # scanner.parse records the warning
    assert any("warning" in line for line in chain[1].field_errors)
    for store in (TrustStore.from_pem(), TrustStore.from_pem(root.cert_pem, mozilla=False)):
        verdict = evaluate_chain(chain, store=store, now=NOW)
        assert verdict.untrusted_root is not None or verdict.anchor is not None
