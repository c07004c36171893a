"""scanner.parse: every CertInfo field against certificates built here, hostile and broken input,
the whole x509 corpus of ``cryptography_vectors``, and the fingerprint cache."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import threading
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, padding
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.lab import certgen
from scanner.models import CertInfo
from scanner.parse import CertCache, entry_cost, parse_certificate, sha256_hex

START = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
END = datetime(2026, 7, 8, 9, 10, 11, tzinfo=UTC)
SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


@pytest.fixture(scope="module")
def rsa_ca() -> certgen.Issued:
    return certgen.make_ca("Test RSA Root", org="Test Org", key=certgen.make_key("rsa", 2048))


@pytest.fixture(scope="module")
def ec_ca() -> certgen.Issued:
    return certgen.make_ca("Test EC Root", org=None)


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def spki_sha256(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def ski_hex(key: certgen.PrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest.hex()


def builder(
    subject: x509.Name | None = None, key: certgen.PrivateKey | None = None
) -> tuple[x509.CertificateBuilder, certgen.PrivateKey]:
    """A self-signed certificate under construction, with fixed serial and dates."""
    key = key or certgen.make_key("ec")
    name = subject if subject is not None else x509.Name([])
    cert_builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x7F1234)
        .not_valid_before(START)
        .not_valid_after(END)
    )
    return cert_builder, key


def sign(cert_builder: x509.CertificateBuilder, key: certgen.PrivateKey) -> bytes:
    return der_of(cert_builder.sign(key, hashes.SHA256()))


def assert_clean(info: CertInfo, der: bytes) -> None:
    assert info.der == der
    assert info.sha256 == hashlib.sha256(der).hexdigest()
    assert info.error is None
    assert info.field_errors == ()


# --- every field against what was generated --------------------------------------------------


def test_rsa_leaf_every_field(rsa_ca: certgen.Issued) -> None:
    key = certgen.make_key("rsa", 2048)
    leaf = certgen.make_leaf(
        rsa_ca,
        cn="www.example.test",
        org="Example, Inc.",
        dns_names=["www.example.test", "example.test"],
        ip_addresses=["127.0.0.1", "::1"],
        key=key,
        not_before=START,
        not_after=END,
    )
    info = parse_certificate(leaf.der)
    assert_clean(info, leaf.der)
    assert info.subject == r"O=Example\, Inc.,CN=www.example.test"
    assert (info.subject_cn, info.subject_o) == ("www.example.test", "Example, Inc.")
    assert info.issuer == "O=Test Org,CN=Test RSA Root"
    assert (info.issuer_cn, info.issuer_o) == ("Test RSA Root", "Test Org")
    assert info.serial == f"{leaf.cert.serial_number:x}"
    assert info.version == 3
    assert (info.not_before, info.not_after) == (START, END)
    assert info.not_after is not None
    assert info.not_after.tzinfo is not None
    assert info.san_dns == ("www.example.test", "example.test")
    assert info.san_ip == ("127.0.0.1", "::1")
    assert (info.san_email, info.san_uri) == ((), ())
    assert info.sans == ("DNS:www.example.test", "DNS:example.test", "IP:127.0.0.1", "IP:::1")
    assert (info.key_type, info.key_bits, info.key_curve) == ("RSA", 2048, None)
    assert info.signature_algorithm == "sha256WithRSAEncryption"
    assert info.signature_hash == "sha256"
    assert (info.is_ca, info.path_length) == (False, None)
    assert info.key_usage == ()
    assert info.extended_key_usage == ("serverAuth",)
    assert info.subject_key_id == ski_hex(key)
    assert info.authority_key_id == ski_hex(rsa_ca.key)
    assert (info.ocsp_urls, info.ca_issuer_urls, info.crl_urls) == ((), (), ())
    assert info.sct_count == 0
    assert info.spki_sha256 == spki_sha256(leaf.cert)
    assert info.self_issued is False


@pytest.mark.parametrize(
    ("kind", "bits", "key_bits", "curve", "algorithm"),
    [
        ("rsa", 1024, 1024, None, "sha256WithRSAEncryption"),
        ("rsa", 2048, 2048, None, "sha256WithRSAEncryption"),
        ("ec", 256, 256, "secp256r1", "ecdsa-with-SHA256"),
        ("ec", 384, 384, "secp384r1", "ecdsa-with-SHA256"),
    ],
)
def test_key_types_self_signed(
    kind: str, bits: int, key_bits: int, curve: str | None, algorithm: str
) -> None:
    leaf = certgen.make_leaf(None, key=certgen.make_key(kind, bits), cn="self", org=None)
    info = parse_certificate(leaf.der)
    assert_clean(info, leaf.der)
    assert (info.key_type, info.key_bits, info.key_curve) == (kind.upper(), key_bits, curve)
    assert (info.signature_algorithm, info.signature_hash) == (algorithm, "sha256")
    assert info.self_issued is True
    assert info.authority_key_id is None
    assert info.spki_sha256 == spki_sha256(leaf.cert)


@pytest.mark.parametrize(
    ("private_key", "key_type", "key_bits", "algorithm"),
    [
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519", 256, "ed25519"),
        (ed448.Ed448PrivateKey.generate(), "Ed448", 456, "ed448"),
    ],
)
def test_eddsa_keys_have_no_signature_hash(
    private_key: ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey,
    key_type: str,
    key_bits: int,
    algorithm: str,
) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eddsa")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(1)
        .not_valid_before(START)
        .not_valid_after(END)
        .sign(private_key, None)
    )
    info = parse_certificate(der_of(cert))
    assert_clean(info, der_of(cert))
    assert (info.key_type, info.key_bits, info.key_curve) == (key_type, key_bits, None)
    assert (info.signature_algorithm, info.signature_hash) == (algorithm, None)
    assert info.spki_sha256 == spki_sha256(cert)


def test_rsa_pss_and_sha384_signatures() -> None:
    cert_builder, key = builder(key=certgen.make_key("rsa", 1024))
    pss = padding.PSS(padding.MGF1(hashes.SHA384()), padding.PSS.DIGEST_LENGTH)
    info = parse_certificate(der_of(cert_builder.sign(key, hashes.SHA384(), rsa_padding=pss)))
    assert (info.signature_algorithm, info.signature_hash) == ("rsassaPss", "sha384")
    cert_builder, key = builder(key=certgen.make_key("ec", 384))
    info = parse_certificate(der_of(cert_builder.sign(key, hashes.SHA384())))
    assert (info.signature_algorithm, info.signature_hash) == ("ecdsa-with-SHA384", "sha384")
    assert info.field_errors == ()


def test_root_intermediate_and_leaf() -> None:
    root = certgen.make_ca("Root", org="Lab", not_before=START, not_after=END)
    intermediate = certgen.make_ca("Intermediate", org="Lab", issuer=root, path_length=0)
    leaf = certgen.make_leaf(intermediate)
    infos = [parse_certificate(issued.der) for issued in (root, intermediate, leaf)]
    for info, issued in zip(infos, (root, intermediate, leaf), strict=True):
        assert_clean(info, issued.der)
    root_info, mid_info, leaf_info = infos
    ca_usage = ("digital_signature", "key_cert_sign", "crl_sign")
    assert (root_info.is_ca, root_info.path_length, root_info.key_usage) == (True, None, ca_usage)
    assert (mid_info.is_ca, mid_info.path_length, mid_info.key_usage) == (True, 0, ca_usage)
    assert (leaf_info.is_ca, leaf_info.path_length) == (False, None)
    assert (root_info.self_issued, mid_info.self_issued, leaf_info.self_issued) == (
        True,
        False,
        False,
    )
    assert root_info.authority_key_id is None
    assert mid_info.authority_key_id == root_info.subject_key_id == ski_hex(root.key)
    assert leaf_info.authority_key_id == mid_info.subject_key_id == ski_hex(intermediate.key)
    assert mid_info.issuer == root_info.subject == "O=Lab,CN=Root"
    assert leaf_info.issuer == "O=Lab,CN=Intermediate"


def test_every_san_type_aia_crl_key_usage_eku_and_scts() -> None:
    cert_builder, key = builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "full")]))
    ocsp, issuers = "http://ocsp.example.test/", "http://ca.example.test/ca.der"
    cert_builder = (
        cert_builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("a.example.test"),
                    x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
                    x509.RFC822Name("ops@example.test"),
                    x509.UniformResourceIdentifier("https://example.test/x"),
                    x509.DNSName("*.example.test"),
                    x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
                    x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d")])),
                    x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
                    x509.OtherName(x509.ObjectIdentifier("1.2.3.5"), b"\x05\x00"),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp)
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(issuers),
                    ),
                    x509.AccessDescription(  # not a URI: ignored
                        AuthorityInformationAccessOID.OCSP, x509.DNSName("ocsp.example.test")
                    ),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [
                            x509.UniformResourceIdentifier("http://crl.example.test/1.crl"),
                            x509.UniformResourceIdentifier("ldap://crl.example.test/x"),
                        ],
                        None,
                        None,
                        None,
                    ),
                    x509.DistributionPoint(
                        None,
                        x509.RelativeDistinguishedName(
                            [x509.NameAttribute(NameOID.COMMON_NAME, "relative")]
                        ),
                        None,
                        None,
                    ),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=True,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [
                    ExtendedKeyUsageOID.SERVER_AUTH,
                    ExtendedKeyUsageOID.CLIENT_AUTH,
                    ExtendedKeyUsageOID.CODE_SIGNING,
                    ExtendedKeyUsageOID.OCSP_SIGNING,
                    x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.UnrecognizedExtension(SCT_OID, sct_list(3)), critical=False)
    )
    der = sign(cert_builder, key)
    info = parse_certificate(der)
    assert_clean(info, der)
    assert info.san_dns == ("a.example.test", "*.example.test")
    assert info.san_ip == ("10.1.2.3", "2001:db8::1")
    assert info.san_email == ("ops@example.test",)
    assert info.san_uri == ("https://example.test/x",)
    assert info.ocsp_urls == (ocsp,)
    assert info.ca_issuer_urls == (issuers,)
    assert info.crl_urls == ("http://crl.example.test/1.crl", "ldap://crl.example.test/x")
    assert info.key_usage == (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "decipher_only",
    )
    assert info.extended_key_usage == (
        "serverAuth",
        "clientAuth",
        "codeSigning",
        "OCSPSigning",
        "1.3.6.1.4.1.99999.1",
    )
    assert info.sct_count == 3
    assert (info.is_ca, info.subject_key_id, info.authority_key_id) == (None, None, None)


def sct_list(count: int) -> bytes:
    """extnValue of a precertificate SCT list holding ``count`` well-formed (unverified) SCTs."""
    scts = b""
    for index in range(count):
        body = (
            b"\x00"  # v1
            + bytes([index]) * 32  # log id
            + (1_700_000_000_000 + index).to_bytes(8, "big")
            + b"\x00\x00"  # no extensions
            + b"\x04\x03"  # sha256, ecdsa
            + (6).to_bytes(2, "big")
            + b"\x30\x04\x02\x00\x02\x00"
        )
        scts += len(body).to_bytes(2, "big") + body
    listing = len(scts).to_bytes(2, "big") + scts
    assert 128 <= len(listing) < 256
    return b"\x04\x81" + bytes([len(listing)]) + listing  # DER OCTET STRING


def test_no_san_and_no_optional_extensions(ec_ca: certgen.Issued) -> None:
    leaf = certgen.make_leaf(ec_ca, san=False)
    info = parse_certificate(leaf.der)
    assert_clean(info, leaf.der)
    assert info.sans == ()
    assert (info.ocsp_urls, info.ca_issuer_urls, info.crl_urls, info.key_usage) == ((),) * 4
    assert info.sct_count == 0
    bare, key = builder()
    info = parse_certificate(sign(bare, key))
    assert info.field_errors == ()
    assert (info.is_ca, info.subject_key_id, info.extended_key_usage) == (None, None, ())


def test_empty_subject(ec_ca: certgen.Issued) -> None:
    leaf = certgen.make_leaf(ec_ca, cn=None, dns_names=["nameless.test"])
    info = parse_certificate(leaf.der)
    assert_clean(info, leaf.der)
    assert (info.subject, info.subject_cn, info.subject_o) == ("", None, None)
    assert info.issuer == "CN=Test EC Root"
    assert info.san_dns == ("nameless.test",)


@pytest.mark.parametrize(
    "cn",
    [
        "Zürich – 証明書 🔐",
        "<script>alert(1)</script>",
        "\x1b[31mred\x1b[0m\x07\x08 [bold]markup[/bold]",
        'a,b+c="d"\\e;f',
        " leading and trailing ",
    ],
)
def test_hostile_text_is_kept_verbatim(cn: str) -> None:
    cert_builder, key = builder(
        x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, cn),
            ]
        )
    )
    ascii_part = cn.encode("ascii", "ignore").decode()
    dns = ascii_part or "x"
    cert_builder = cert_builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(dns), x509.RFC822Name(dns)]), critical=False
    )
    der = sign(cert_builder, key)
    info = parse_certificate(der)
    assert_clean(info, der)
    assert info.subject_cn == info.subject_o == info.issuer_cn == cn
    assert info.san_dns == info.san_email == (dns,)
    assert info.subject == x509.load_der_x509_certificate(der).subject.rfc4514_string()
    assert info.subject is not None
    assert all(char in info.subject for char in cn if not char.isprintable() or ord(char) > 127)


@pytest.mark.parametrize(
    ("asn1_type", "value"),
    [
        (_ASN1Type.BMPString, "BMP Ünïcode 証"),
        (_ASN1Type.UniversalString, "Universal 🔐"),
        (_ASN1Type.T61String, "Teletex café"),
        (_ASN1Type.IA5String, "IA5 \x1b[0m"),
        (_ASN1Type.PrintableString, "Printable"),
    ],
)
def test_common_name_in_odd_string_types(asn1_type: _ASN1Type, value: str) -> None:
    attribute = x509.NameAttribute(NameOID.COMMON_NAME, value, _type=asn1_type)
    cert_builder, key = builder(x509.Name([attribute]))
    info = parse_certificate(sign(cert_builder, key))
    assert info.field_errors == ()
    assert info.subject_cn == value


def test_bit_string_name_values() -> None:
    unique_id = x509.NameAttribute(
        NameOID.X500_UNIQUE_IDENTIFIER, b"\x00\xab", _type=_ASN1Type.BitString
    )
    cert_builder, key = builder(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "named"), unique_id])
    )
    der = sign(cert_builder, key)
    info = parse_certificate(der)
    assert_clean(info, der)
    assert info.subject == "2.5.4.45=#00ab,CN=named"
    # Rewrite the attribute type to commonName: a CN whose value is a BIT STRING, which
    # cryptography refuses to represent. The names become unreadable; nothing else does.
    assert der.count(bytes.fromhex("060355042d")) == 2  # once in subject, once in issuer
    bytes_cn = der.replace(bytes.fromhex("060355042d"), bytes.fromhex("0603550403"))
    info = parse_certificate(bytes_cn)
    assert info.der == bytes_cn
    assert info.error is None
    assert (info.subject, info.subject_cn, info.issuer_cn) == (None, None, None)
    assert [line.split(":")[0] for line in info.field_errors] == ["subject", "issuer"]
    assert (info.serial, info.key_type, info.not_after) == ("7f1234", "EC", END)
    assert info.self_issued is True


# --- broken and hostile certificates -----------------------------------------------------------


def good_der() -> bytes:
    return certgen.make_leaf(None, dns_names=["a.test"]).der


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x00",
        b"\x30",
        b"\x30\x80\x00\x00",
        b"\x30\x84\xff\xff\xff\xff",
        b"-----BEGIN CERTIFICATE-----\n",
        bytes(range(256)) * 4,
        b"\xff" * 10_000,
    ],
)
def test_garbage_is_kept_with_an_error(der: bytes) -> None:
    info = parse_certificate(der)
    assert info.der == der
    assert info.sha256 == hashlib.sha256(der).hexdigest()
    assert info.error
    assert info.subject is None
    assert info.serial is None
    assert info.field_errors == ()


def test_truncated_and_padded_der() -> None:
    der = good_der()
    failures = []
    for cut in [*range(0, len(der), 7), len(der) - 1]:
        info = parse_certificate(der[:cut])
        if info.der != der[:cut] or not info.error:
            failures.append(cut)
    assert failures == []
    padded = parse_certificate(der + b"\x00")
    assert padded.error
    assert padded.der == der + b"\x00"


def test_negative_serial_is_read_with_a_warning_noted() -> None:
    cert_builder, key = builder()
    der = sign(cert_builder, key)
    assert der.count(b"\x02\x03\x7f\x12\x34") == 1
    negative = der.replace(b"\x02\x03\x7f\x12\x34", b"\x02\x03\xff\x12\x34")
    info = parse_certificate(negative)  # filterwarnings=error: a leaked warning would raise
    assert info.error is None
    assert info.serial == "-edcc"
    assert len(info.field_errors) == 1
    assert "warning" in info.field_errors[0]


def test_one_bad_extension_does_not_hide_the_others() -> None:
    cert_builder, key = builder()
    cert_builder = (
        cert_builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("kept.test")]), critical=False
        )
        .add_extension(x509.UnrecognizedExtension(SCT_OID, b"\x04\x03\x00\x01\x00"), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier("http://ocsp.test"),
                    )
                ]
            ),
            critical=False,
        )
    )
    info = parse_certificate(sign(cert_builder, key))
    assert info.field_errors == ("extension signedCertificateTimestampList: Invalid SCT length",)
    assert info.san_dns == ("kept.test",)
    assert (info.is_ca, info.path_length, info.ocsp_urls) == (True, 1, ("http://ocsp.test",))
    assert info.sct_count == 0


def test_duplicate_extension_first_one_counts() -> None:
    cert_builder, key = builder()
    stand_in = x509.ObjectIdentifier("2.5.29.99")  # same encoded length as SAN's 2.5.29.17
    second_san = x509.SubjectAlternativeName([x509.DNSName("second.test")])
    cert_builder = cert_builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName("first.test")]), critical=False
    ).add_extension(x509.UnrecognizedExtension(stand_in, second_san.public_bytes()), critical=False)
    der = sign(cert_builder, key).replace(b"\x06\x03\x55\x1d\x63", b"\x06\x03\x55\x1d\x11")
    info = parse_certificate(der)
    assert info.error is None
    assert info.san_dns == ("first.test",)
    assert len(info.field_errors) == 1
    assert info.field_errors[0].startswith("extensions: DuplicateExtension:")


def test_salvage_is_capped_for_crafted_extension_lists() -> None:
    cert_builder, key = builder()
    for index in range(300):
        oid = x509.ObjectIdentifier(f"1.3.6.1.4.1.55555.{index}")
        cert_builder = cert_builder.add_extension(x509.UnrecognizedExtension(oid, b""), False)
    cert_builder = cert_builder.add_extension(
        x509.UnrecognizedExtension(SCT_OID, b"\x04\x00"), critical=False
    )
    info = parse_certificate(sign(cert_builder, key))
    assert info.field_errors == (
        "extensions: 301 extensions, only the first 256 read",
        "extensions: Invalid SCT length",
    )


def test_large_certificates_parse_completely() -> None:
    names = [x509.DNSName(f"host{i}.example.test") for i in range(5000)]
    rdns = [
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "u")])
        for _ in range(2000)
    ]
    cert_builder, key = builder(x509.Name(rdns))
    cert_builder = cert_builder.add_extension(x509.SubjectAlternativeName(names), False)
    der = sign(cert_builder, key)
    info = parse_certificate(der)
    assert_clean(info, der)
    assert len(info.san_dns) == 5000
    assert info.san_dns[-1] == "host4999.example.test"
    assert info.subject == ",".join(["OU=u"] * 2000)


_MUTATION_SEED = certgen.make_leaf(
    certgen.make_ca(),
    org="Mutants",
    dns_names=["a.test", "b.test"],
    ip_addresses=["127.0.0.1"],
).der


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.integers(0, 10_000),
)
def test_mutated_certificates_never_raise(edits: list[tuple[int, int]], cut: int) -> None:
    der = bytearray(_MUTATION_SEED)
    for position, value in edits:
        der[position % len(der)] = value
    mutated = bytes(der[: max(cut, len(der) // 2)])
    info = parse_certificate(mutated)
    assert info.der == mutated
    assert info.sha256 == sha256_hex(mutated)


# --- the cryptography_vectors x509 corpus -------------------------------------------------------

VECTORS = Path(cryptography_vectors.__file__).parent / "x509"
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)
CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
NOT_CERT_SUFFIXES = {".p12", ".cp", ".eml", ".crl", ".ldif", ".schema", ".txt"}
NOT_CERT_DIRS = {"ocsp", "requests", "crls", "pkcs12", "smime", "certpairs"}


def corpus() -> tuple[list[tuple[str, bytes, bool]], Counter[str]]:
    """(name, DER, is_certificate) for every DER blob, and a count of what was skipped."""
    blobs: list[tuple[str, bytes, bool]] = []
    skipped: Counter[str] = Counter()
    for path in sorted(VECTORS.rglob("*")):
        if not path.is_file():
            continue
        name = str(path.relative_to(VECTORS))
        if path.suffix in NOT_CERT_SUFFIXES:
            skipped[path.suffix] += 1
            continue
        data = path.read_bytes()
        if b"-----BEGIN" in data:
            for index, match in enumerate(PEM_BLOCK.finditer(data)):
                if match.group(1) not in CERT_LABELS:
                    skipped[match.group(1).decode()] += 1
                    continue
                body = b"".join(ln for ln in match.group(2).splitlines() if b":" not in ln)
                blobs.append((f"{name}#{index}", base64.b64decode(body), True))
        else:
            not_cert = path.parent.name in NOT_CERT_DIRS or path.name.startswith("crl_")
            blobs.append((name, data, not not_cert))
    return blobs, skipped


def fails_later(der: bytes) -> str | None:
    """Why cryptography, used directly, cannot read some field of a loadable certificate."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning counts as a problem, as in parse
        try:
            cert = x509.load_der_x509_certificate(der)
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
            list(cert.extensions)
            cert.public_key()
            _ = (cert.signature_hash_algorithm, cert.serial_number, cert.version)
            _ = (cert.not_valid_before_utc, cert.not_valid_after_utc)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


def test_cryptography_vectors_corpus() -> None:
    blobs, skipped = corpus()
    problems: list[str] = []
    counts: Counter[str] = Counter()
    for name, der, is_cert in blobs:
        try:
            info = parse_certificate(der)
        except Exception as exc:  # collect them all rather than stop at the first
            problems.append(f"{name}: raised {exc!r}")
            continue
        if info.der != der or info.sha256 != hashlib.sha256(der).hexdigest():
            problems.append(f"{name}: DER or fingerprint not kept")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a negative serial: loads, with a warning
            try:
                x509.load_der_x509_certificate(der)
                loads = True
            except Exception:
                loads = False
        if not is_cert:
            counts["not a certificate"] += 1
            if info.error is None:
                problems.append(f"{name}: a non-certificate parsed as one")
            continue
        if not loads:
            counts["does not load"] += 1
            if info.error is None:
                problems.append(f"{name}: no error although it does not load")
            continue
        if info.error is not None:
            problems.append(f"{name}: loads, but parse says {info.error}")
        reason = fails_later(der)
        counts["loads, fails later" if reason else "clean"] += 1
        if reason and not info.field_errors:
            problems.append(f"{name}: {reason}, yet no field_errors")
        if not reason and info.field_errors:
            problems.append(f"{name}: spurious field_errors {info.field_errors}")
        if info.subject is not None and info.spki_sha256 is None:
            problems.append(f"{name}: no SPKI hash")
    print(f"\ncryptography_vectors x509: {dict(counts)}; skipped {dict(skipped)}")
    assert problems == []
    assert counts["clean"] > 450  # the corpus was found and walked
    assert 15 <= counts["loads, fails later"] <= 60  # the issue counts about 25 (+ warnings)
    assert counts["does not load"] >= 5
    assert counts["not a certificate"] >= 30


def vector(name: str) -> CertInfo:
    data = (VECTORS / name).read_bytes()
    match = PEM_BLOCK.search(data)
    return parse_certificate(base64.b64decode(match.group(2)) if match else data)


def test_selected_vectors() -> None:
    sct = vector("badssl-sct-none-hash.der")  # broken SCT list, everything else intact
    assert sct.san_dns == ("invalid-expected-sct.badssl.com",)
    assert sct.ocsp_urls
    assert sct.key_usage
    assert sct.sct_count == 0
    gost = vector("e-trust.ru.der")  # key type cryptography cannot load
    assert gost.key_type is None
    assert gost.spki_sha256 is not None
    assert gost.is_ca is True
    assert gost.field_errors[0].startswith("public_key: ")
    md2 = vector("verisign_md2_root.pem")
    assert (md2.signature_algorithm, md2.signature_hash) == ("1.2.840.113549.1.1.2", None)
    assert md2.version == 1
    assert md2.self_issued is True
    scts = vector("cryptography-scts.pem")
    assert scts.sct_count > 0
    assert scts.field_errors == ()
    two_bc = vector("custom/two_basic_constraints.pem")
    assert two_bc.is_ca is True
    assert "DuplicateExtension" in two_bc.field_errors[0]


# --- the fingerprint cache ----------------------------------------------------------------------


def test_cache_parses_once_per_fingerprint() -> None:
    cache = CertCache()
    der = good_der()
    first = cache.get(der)
    again = cache.get(bytes(bytearray(der)))  # equal bytes, another object
    assert again is first  # parse_certificate builds a new CertInfo each time: no re-parse
    assert first == parse_certificate(der)
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
    other = cache.get(b"not a certificate")
    assert other.error
    assert other is cache.get(b"not a certificate")
    assert (cache.hits, cache.misses, len(cache)) == (2, 2, 2)


def test_cache_evicts_least_recently_used() -> None:
    cache = CertCache(max_entries=3)
    a, b, c, d = (bytes([n]) * 8 for n in range(4))
    info_a, info_b, info_c = cache.get(a), cache.get(b), cache.get(c)
    assert cache.get(a) is info_a  # a is now the most recent; b the least
    cache.get(d)
    assert len(cache) == 3
    assert cache.get(a) is info_a
    assert cache.get(c) is info_c
    assert cache.misses == 4
    assert cache.get(b) is not info_b  # evicted, so parsed again
    assert (cache.misses, len(cache)) == (5, 3)


def test_cache_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        CertCache(max_entries=0)


def test_cache_is_bounded_by_bytes_not_count() -> None:
    # A hostile host's 5,000-SAN certificates: each costs more than 100 KB in the cache.
    huge = [
        certgen.make_leaf(None, dns_names=[f"n{i}-{j}.example.test" for j in range(5000)]).der
        for i in range(4)
    ]
    budget = 3 * entry_cost(parse_certificate(huge[0]))
    cache = CertCache(max_entries=10_000, max_bytes=budget, max_entry_bytes=budget)
    for der in huge:
        assert len(cache.get(der).san_dns) == 5000
    assert entry_cost(cache.get(huge[-1])) > 100_000
    assert len(cache) < len(huge)  # the byte budget, not the 10,000 entries, evicted
    assert 0 < cache.size <= budget
    assert cache.size == sum(entry_cost(cache.get(d)) for d in huge[-len(cache) :])


def test_cache_never_keeps_a_certificate_above_the_entry_limit() -> None:
    big = certgen.make_leaf(None, dns_names=[f"n{j}.example.test" for j in range(2000)]).der
    cache = CertCache(max_entry_bytes=len(big))  # its parsed names push it over the limit
    first = cache.get(big)
    assert cache.get(big) is not first  # parsed again: never cached
    assert (len(cache), cache.size, cache.misses) == (0, 0, 2)
    small = good_der()
    assert cache.get(small) is cache.get(small)
    assert len(cache) == 1


def test_cache_shared_between_threads() -> None:
    cache = CertCache(max_entries=5)
    blobs = [bytes([n]) * 4 for n in range(12)]
    errors: list[BaseException] = []

    def hammer(offset: int) -> None:
        try:
            for step in range(300):
                info = cache.get(blobs[(step + offset) % len(blobs)])
                assert info.der == blobs[(step + offset) % len(blobs)]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 5
    assert cache.hits + cache.misses == 1200
