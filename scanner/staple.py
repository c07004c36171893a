"""A stapled OCSP response -> :class:`Staple`, and which of its answers is about the leaf.

Theory of operation
-------------------
A server may staple an OCSP response to its handshake (``status_request``); the engine keeps
its bytes (``Handshake.ocsp_staple``, bounded by the read limit). Those bytes are as hostile
as the certificates: :func:`parse_staple` loads them with ``cryptography.x509.ocsp`` once and
reads every field under one guard, so a crafted response yields ``Staple.error`` and nothing
else, never an exception. A response that is not ``successful`` (``tryLater``,
``unauthorized``...) carries no answers and is an error too.

A response holds one or more single answers, each naming a certificate by its CertID: the
serial number, a hash of the issuer's name and a hash of the issuer's public key, under the
response's hash algorithm. :func:`answer_for` finds the answer about a leaf: same serial, same
issuer-name hash, and, when the leaf's issuer is among the certificates presented, the same
issuer-key hash (with the issuer absent, serial and name are all that can be compared). None
means the staple speaks of another certificate. At most :data:`MAX_ANSWERS` answers are read.

:func:`signature_problem` checks who signed the response (RFC 6960 section 4.2.2.2): the leaf's
issuer itself, or a delegated responder whose certificate travels in the response, was issued
directly by that issuer, carries the ``OCSPSigning`` extended key usage and was valid when the
response was produced; the signer must match the response's responder ID and its key must
verify the signature over the response data. Without the issuer among the certificates
presented there is no key to check against, and the staple is taken as it is (as the CertID
match is). At most :data:`MAX_RESPONDER_CERTS` certificates of a response are looked at.
``reports.revocation`` judges what a staple says. :func:`must_staple` reads the
leaf's TLS Feature extension (RFC 7633), :func:`next_update_for` the time the inventory stores
for the ``certscan_ocsp_next_update_timestamp_seconds`` metric. Pure; no I/O.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from scanner.parse import WARNINGS_LOCK

#: Single answers read from one response; a staple about one certificate holds one.
MAX_ANSWERS: Final = 16
#: Certificates of one response tried as its delegated signer; a responder sends one.
MAX_RESPONDER_CERTS: Final = 4

_ERRORS = (ValueError, TypeError, KeyError, UnsupportedAlgorithm)
_STATUS = {
    ocsp.OCSPCertStatus.GOOD: "good",
    ocsp.OCSPCertStatus.REVOKED: "revoked",
    ocsp.OCSPCertStatus.UNKNOWN: "unknown",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """One single answer of an OCSP response: the CertID it is about and what it says."""

    serial: int
    hash_algorithm: str  # "sha1", "sha256"...: how the issuer hashes were made
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    cert_status: str  # "good", "revoked" or "unknown"
    this_update: datetime  # UTC
    next_update: datetime | None  # UTC; None: the responder gives no expiry
    revocation_time: datetime | None  # UTC; set only when revoked
    revocation_reason: str | None  # RFC 5280 reason name ("keyCompromise"); None when not given


@dataclass(frozen=True, slots=True, kw_only=True)
class Staple:
    """A parsed staple. ``error`` is set (and ``answers`` empty) when it is no usable response."""

    error: str | None = None
    answers: tuple[Answer, ...] = ()
    produced_at: datetime | None = None  # UTC
    signed: Signed | None = None  # what the signature check needs; None with ``error``


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """The signed part of a response: the bytes signed, the signature, how it was made, who
    claims to have made it, and the certificates sent along (DER, at most
    :data:`MAX_RESPONDER_CERTS`)."""

    tbs: bytes
    signature: bytes
    hash_algorithm: hashes.HashAlgorithm | None  # None for Ed25519 and Ed448
    pss: bool  # RSASSA-PSS rather than PKCS #1 v1.5
    responder_name: bytes | None  # DER of the responder's name, when identified by name
    responder_key_hash: bytes | None  # SHA-1 of its public key, when identified by key
    certificates: tuple[bytes, ...]


def _answer(single: ocsp.OCSPSingleResponse) -> Answer:
    reason = single.revocation_reason
    return Answer(
        serial=single.serial_number,
        hash_algorithm=single.hash_algorithm.name,
        issuer_name_hash=single.issuer_name_hash,
        issuer_key_hash=single.issuer_key_hash,
        cert_status=_STATUS[single.certificate_status],
        this_update=single.this_update_utc,
        next_update=single.next_update_utc,
        revocation_time=single.revocation_time_utc,
        revocation_reason=None if reason is None else reason.value,
    )


def parse_staple(der: bytes) -> Staple:
    """``der`` (a stapled OCSP response) as a :class:`Staple`; never raises."""
    try:
        response = ocsp.load_der_ocsp_response(der)
    except _ERRORS as exc:
        return Staple(error=f"not an OCSP response: {exc}")
    try:
        status = response.response_status
        if status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            return Staple(error=f"the responder answered {status.name.lower()}, not successful")
        answers: list[Answer] = []
        for single in response.responses:
            if len(answers) >= MAX_ANSWERS:
                break
            answers.append(_answer(single))
        return Staple(
            answers=tuple(answers), produced_at=response.produced_at_utc, signed=_signed(response)
        )
    except _ERRORS as exc:
        return Staple(error=f"unreadable OCSP response: {exc}")


def _signed(response: ocsp.OCSPResponse) -> Signed:
    name = response.responder_name
    return Signed(
        tbs=response.tbs_response_bytes,
        signature=response.signature,
        hash_algorithm=response.signature_hash_algorithm,
        pss=response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS,
        responder_name=None if name is None else name.public_bytes(),
        responder_key_hash=response.responder_key_hash,
        certificates=tuple(
            c.public_bytes(serialization.Encoding.DER)
            for c in response.certificates[:MAX_RESPONDER_CERTS]
        ),
    )


#: The hashes a CertID may use; SHA-1 is what most responders still put there.
_HASHES: Final = {
    h.name: h
    for h in (
        hashes.SHA1(),  # noqa: S303 - identifies a certificate; protects nothing
        hashes.SHA224(),
        hashes.SHA256(),
        hashes.SHA384(),
        hashes.SHA512(),
    )
}


def _load(der: bytes) -> x509.Certificate | None:
    # Quietly: cryptography warns about non-conforming certificates (a negative serial), which
    # are judged elsewhere; under ``-W error`` a warning would become an exception.
    with WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return x509.load_der_x509_certificate(der)
        except _ERRORS:
            return None


def _issuer_of(leaf: x509.Certificate, others: Sequence[bytes]) -> x509.Certificate | None:
    for der in others:
        cert = _load(der)
        try:
            if cert is not None and cert.subject.public_bytes() == leaf.issuer.public_bytes():
                return cert
        except _ERRORS:
            continue
    return None


def _cert_id(
    leaf: x509.Certificate, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> tuple[bytes, bytes] | None:
    """(issuer name hash, issuer key hash) of the leaf's CertID, as cryptography computes it."""
    try:
        request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, algorithm).build()
    except _ERRORS:
        return None
    return request.issuer_name_hash, request.issuer_key_hash


def answer_for(staple: Staple, chain: Sequence[bytes]) -> Answer | None:
    """The answer of ``staple`` about the leaf of ``chain`` (DER, leaf first), or None when it
    holds none (module docstring)."""
    leaf = _load(chain[0]) if chain else None
    if leaf is None:
        return None
    issuer = _issuer_of(leaf, chain[1:])
    try:
        serial = leaf.serial_number
        issuer_name = leaf.issuer.public_bytes()
    except _ERRORS:
        return None
    for answer in staple.answers:
        algorithm = _HASHES.get(answer.hash_algorithm)
        if algorithm is None or answer.serial != serial:
            continue
        digest = hashes.Hash(algorithm)
        digest.update(issuer_name)
        if digest.finalize() != answer.issuer_name_hash:
            continue
        if issuer is not None:
            ids = _cert_id(leaf, issuer, algorithm)
            if ids is None or ids[1] != answer.issuer_key_hash:
                continue
        return answer
    return None


def signature_problem(staple: Staple, chain: Sequence[bytes]) -> str | None:
    """Why the signature of ``staple`` does not vouch for it, as a phrase; None when the leaf's
    issuer or its delegated responder signed it, or when the issuer is not among ``chain``
    (DER, leaf first) and nothing can be checked (module docstring)."""
    signed = staple.signed
    leaf = _load(chain[0]) if chain else None
    if signed is None or leaf is None:
        return None
    issuer = _issuer_of(leaf, chain[1:])
    if issuer is None:
        return None
    if _names(signed, issuer):
        return None if _verifies(issuer, signed) else "it was not made with the issuer's key"
    for der in signed.certificates:
        delegate = _load(der)
        if delegate is None or not _names(signed, delegate):
            continue
        problem = _delegation_problem(delegate, issuer, staple.produced_at)
        if problem is not None:
            return problem
        return None if _verifies(delegate, signed) else "it was not made with the responder's key"
    return "its responder ID names neither the issuer nor a responder certificate it carries"


def _names(signed: Signed, cert: x509.Certificate) -> bool:
    """Whether the response's responder ID identifies ``cert`` (by name or by key hash)."""
    try:
        if signed.responder_name is not None:
            return cert.subject.public_bytes() == signed.responder_name
        if signed.responder_key_hash is not None:
            key_id = x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
            return key_id.digest == signed.responder_key_hash
    except _ERRORS:
        return False
    return False


def _delegation_problem(
    delegate: x509.Certificate, issuer: x509.Certificate, produced_at: datetime | None
) -> str | None:
    try:
        delegate.verify_directly_issued_by(issuer)
    except (*_ERRORS, InvalidSignature):
        return "its responder certificate was not issued by the leaf's issuer"
    try:
        usage = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.OCSP_SIGNING not in usage:
            return "its responder certificate lacks the OCSPSigning extended key usage"
        valid = produced_at is None or (
            delegate.not_valid_before_utc <= produced_at <= delegate.not_valid_after_utc
        )
    except x509.ExtensionNotFound:
        return "its responder certificate lacks the OCSPSigning extended key usage"
    except (*_ERRORS, x509.DuplicateExtension):
        return "its responder certificate cannot be read"
    return None if valid else "its responder certificate was not valid when the response was made"


def _verifies(signer: x509.Certificate, signed: Signed) -> bool:
    """Whether ``signer``'s public key verifies the signature over the response data."""
    algorithm = signed.hash_algorithm
    try:
        key = signer.public_key()
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO)
                if signed.pss
                else padding.PKCS1v15()
            )
            key.verify(signed.signature, signed.tbs, pad, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signed.signature, signed.tbs, ec.ECDSA(algorithm))
        elif isinstance(key, dsa.DSAPublicKey) and algorithm is not None:
            key.verify(signed.signature, signed.tbs, algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signed.signature, signed.tbs)
        else:
            return False
    except (*_ERRORS, InvalidSignature):
        return False
    return True


def must_staple(leaf_der: bytes) -> bool:
    """Whether the certificate demands a staple: a TLS Feature extension listing
    ``status_request`` (RFC 7633 "must staple"). False when it cannot be read."""
    cert = _load(leaf_der)
    if cert is None:
        return False
    try:
        feature = cert.extensions.get_extension_for_class(x509.TLSFeature).value
    except x509.ExtensionNotFound:
        return False
    except (*_ERRORS, x509.DuplicateExtension):
        return False
    return x509.TLSFeatureType.status_request in feature


def next_update_for(staple: bytes | None, chain: Sequence[bytes]) -> datetime | None:
    """The ``next_update`` of the staple's answer about the leaf of ``chain``; None without a
    staple, without such an answer, when its signature does not vouch for it, or when the
    answer gives none."""
    if not staple or not chain:
        return None
    parsed = parse_staple(staple)
    answer = answer_for(parsed, chain)
    if answer is None or signature_problem(parsed, chain) is not None:
        return None
    return answer.next_update
