"""reports.chain's TBS walk: the issuer, subject and key it slices out are the DER the
certificate holds, and no input makes it raise."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from reports.chain import _tbs_elements
from scanner.lab import certgen


def test_elements_equal_cryptographys_encoding() -> None:
    ca = certgen.make_ca("Chain Root", key=certgen.make_key("rsa"))
    leaves = [
        certgen.make_leaf(ca, dns_names=["a.test"]),
        certgen.make_leaf(
            ca, dns_names=[f"n{i}.test" for i in range(300)], key=certgen.make_key("rsa")
        ),
        ca,
    ]
    for issued in leaves:
        cert = issued.cert
        elements = _tbs_elements(cert.tbs_certificate_bytes)
        assert elements is not None
        issuer, subject, spki = elements
        assert issuer == cert.issuer.public_bytes()
        assert subject == cert.subject.public_bytes()
        assert spki == cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def test_truncated_tbs_is_refused_not_raised() -> None:
    tbs = certgen.make_leaf(None, dns_names=["a.test"]).cert.tbs_certificate_bytes
    for cut in range(len(tbs)):
        assert _tbs_elements(tbs[:cut]) is None
    assert isinstance(x509.load_der_x509_certificate(certgen.make_leaf(None).der), x509.Certificate)


@given(st.binary(max_size=600))
def test_any_bytes_give_elements_or_none(data: bytes) -> None:
    result = _tbs_elements(data)
    assert result is None or all(isinstance(part, bytes) for part in result)


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=40))
def test_mutated_tbs_never_raises(noise: bytes, at: int) -> None:
    tbs = bytearray(certgen.make_leaf(None, dns_names=["m.test"]).cert.tbs_certificate_bytes)
    tbs[at : at + len(noise)] = noise
    result = _tbs_elements(bytes(tbs))
    assert result is None or len(result) == 3
