"""Throwaway certificate authorities and certificates, built in code.

Used by the built-in lab, the tests and the benchmark. Nothing here touches the network or the
disk; callers write PEM where a server needs files.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def make_key(kind: str = "ec", bits: int = 2048) -> PrivateKey:
    """``kind`` "rsa" (``bits`` long) or "ec" (P-256, or P-384 when ``bits`` is 384)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if kind == "ec":
        curve: ec.EllipticCurve = ec.SECP384R1() if bits == 384 else ec.SECP256R1()
        return ec.generate_private_key(curve)
    raise ValueError(f"unknown key kind {kind!r}")


def _name(cn: str, org: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _window(
    not_before: datetime | None, not_after: datetime | None, days: float
) -> tuple[datetime, datetime]:
    start = not_before or datetime.now(UTC) - timedelta(days=1)
    return start, not_after or start + timedelta(days=days)


def make_ca(
    cn: str = "certscan test root",
    *,
    org: str | None = "certscan lab",
    issuer: Issued | None = None,
    key: PrivateKey | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    path_length: int | None = None,
) -> Issued:
    """A self-signed root, or an intermediate when ``issuer`` is given."""
    key = key or make_key("ec")
    start, end = _window(not_before, not_after, 3650)
    subject = _name(cn, org)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
    )
    signer = issuer.key if issuer else key
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def make_leaf(
    issuer: Issued | None,
    *,
    cn: str | None = "localhost",
    org: str | None = None,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = (),
    key: PrivateKey | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    days: float = 90,
    san: bool = True,
    must_staple: bool = False,
) -> Issued:
    """A server certificate signed by ``issuer`` (self-signed when ``issuer`` is None);
    ``must_staple`` adds the TLS Feature extension ``status_request`` (RFC 7633)."""
    key = key or make_key("ec")
    start, end = _window(not_before, not_after, days)
    subject = _name(cn, org) if cn is not None else x509.Name([])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if san and names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if must_staple:
        feature = x509.TLSFeature([x509.TLSFeatureType.status_request])
        builder = builder.add_extension(feature, critical=False)
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def chain_pem(*certs: Issued) -> bytes:
    """The PEM concatenation a server's certificate-chain file holds, in the given order."""
    return b"".join(c.cert_pem for c in certs)


# --- SHA-1 signatures -------------------------------------------------------------------------
# cryptography's CertificateBuilder refuses SHA-1, but old servers still present such
# certificates and the scanner must recognise them. We let the builder sign with SHA-256, swap
# the TBS's signature AlgorithmIdentifier for sha1WithRSAEncryption (same encoded length), sign
# the new TBS with the low-level RSA primitive and assemble the Certificate SEQUENCE by hand.

_SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")
_SHA1_WITH_RSA = bytes.fromhex("300d06092a864886f70d0101050500")


def _der_header(data: bytes, offset: int, tag: int) -> tuple[int, int]:
    """(content start, element end) of the DER element with ``tag`` at ``offset``."""
    if data[offset] != tag:
        raise ValueError(f"expected DER tag {tag:#04x} at {offset}, found {data[offset]:#04x}")
    first = data[offset + 1]
    if first < 0x80:
        return offset + 2, offset + 2 + first
    width = first & 0x7F
    start = offset + 2 + width
    return start, start + int.from_bytes(data[offset + 2 : start], "big")


def _der_tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def resign_with_sha1(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """``cert`` (signed sha256WithRSAEncryption by ``issuer_key``) re-signed with SHA-1."""
    tbs = cert.tbs_certificate_bytes
    pos, _ = _der_header(tbs, 0, 0x30)
    if tbs[pos] == 0xA0:  # [0] EXPLICIT version
        _, pos = _der_header(tbs, pos, 0xA0)
    _, pos = _der_header(tbs, pos, 0x02)  # serialNumber
    if tbs[pos : pos + len(_SHA256_WITH_RSA)] != _SHA256_WITH_RSA:
        raise ValueError("certificate is not signed sha256WithRSAEncryption")
    new_tbs = tbs[:pos] + _SHA1_WITH_RSA + tbs[pos + len(_SHA256_WITH_RSA) :]
    signature = issuer_key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    der = _der_tlv(0x30, new_tbs + _SHA1_WITH_RSA + _der_tlv(0x03, b"\x00" + signature))
    result = x509.load_der_x509_certificate(der)
    if not isinstance(result.signature_hash_algorithm, hashes.SHA1):
        raise AssertionError("re-signed certificate does not report SHA-1")
    issuer_key.public_key().verify(
        result.signature,
        result.tbs_certificate_bytes,
        padding.PKCS1v15(),
        hashes.SHA1(),  # noqa: S303
    )
    return result


def make_sha1_leaf(
    issuer: Issued,
    *,
    cn: str | None = "localhost",
    org: str | None = None,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = (),
    key: PrivateKey | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    days: float = 90,
) -> Issued:
    """Like :func:`make_leaf`, but signed sha1WithRSAEncryption; ``issuer`` needs an RSA key."""
    if not isinstance(issuer.key, rsa.RSAPrivateKey):
        raise ValueError("a SHA-1 signature needs an RSA issuer key")
    leaf = make_leaf(
        issuer,
        cn=cn,
        org=org,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        key=key,
        not_before=not_before,
        not_after=not_after,
        days=days,
    )
    return Issued(resign_with_sha1(leaf.cert, issuer.key), leaf.key)


_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def with_serial_content(
    cert: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, content: bytes
) -> bytes:
    """The DER of ``cert`` with its serialNumber's INTEGER content replaced by ``content``
    (``b"\\xff\\x12\\x34"`` is a negative serial, which ``CertificateBuilder`` refuses) and
    re-signed ecdsa-with-SHA256 by ``issuer_key``: an encoding no conforming CA writes."""
    tbs = cert.tbs_certificate_bytes
    body, _ = _der_header(tbs, 0, 0x30)
    pos = body
    if tbs[pos] == 0xA0:  # [0] EXPLICIT version
        _, pos = _der_header(tbs, pos, 0xA0)
    _, end = _der_header(tbs, pos, 0x02)
    new_tbs = _der_tlv(0x30, tbs[body:pos] + _der_tlv(0x02, content) + tbs[end:])
    signature = issuer_key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    return _der_tlv(0x30, new_tbs + _ECDSA_WITH_SHA256 + _der_tlv(0x03, b"\x00" + signature))
