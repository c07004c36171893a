"""One file's bytes -> bundles of DER certificates, or the reason it cannot be read. Pure.

Formats are recognised by content, not by name: a PEM file holds ``CERTIFICATE`` and
``PKCS7`` blocks (other blocks, private keys included, are skipped and never kept); a Java
keystore starts with its magic number (JKS ``FEEDFEED``, JCEKS ``CECECECE``); anything else is
tried as one DER certificate, then DER PKCS#7, then PKCS#12. Each PKCS#12 file or keystore
entry with a certificate chain is one bundle (leaf first, as stored); a trusted-certificate
entry is a bundle of one. Private keys are decrypted by the libraries to reach the chains and
dropped at once: nothing here returns or stores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7, pkcs12

__all__ = ["Bundle", "Unreadable", "decode"]

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (CERTIFICATE|PKCS7|TRUSTED CERTIFICATE)-----\r?\n.*?-----END \1-----", re.DOTALL
)
_JKS_MAGIC = (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce")
MAX_BUNDLES = 1024  # entries taken from one keystore


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """Certificates stored together, in file order. ``label`` is the keystore alias or PKCS#12
    friendly name (``None`` for a plain file)."""

    label: str | None
    ders: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Unreadable:
    """Why a file yielded no certificate (one line, safe to show)."""

    reason: str


def _pem(data: bytes) -> list[Bundle] | Unreadable:
    ders: list[bytes] = []
    for match in _PEM_BLOCK.finditer(data):
        block, kind = match.group(0), match.group(1)
        try:
            if kind == b"PKCS7":
                ders += [
                    c.public_bytes(Encoding.DER) for c in pkcs7.load_pem_pkcs7_certificates(block)
                ]
            else:
                text = block.replace(b"TRUSTED CERTIFICATE", b"CERTIFICATE")
                ders.append(x509.load_pem_x509_certificate(text).public_bytes(Encoding.DER))
        except ValueError as exc:
            return Unreadable(reason=f"a PEM {kind.decode()} block cannot be read: {exc}"[:200])
    if not ders:
        return Unreadable(reason="PEM without any CERTIFICATE or PKCS7 block")
    return [Bundle(label=None, ders=tuple(ders))]


def _keystore(data: bytes, password: str | None) -> list[Bundle] | Unreadable:
    try:
        import jks  # type: ignore[import-untyped]  # pyjks ships no type information
    except ImportError:  # pragma: no cover - a dependency
        return Unreadable(reason="a Java keystore, and pyjks is not installed")
    try:
        store = jks.KeyStore.loads(data, password or "", try_decrypt_keys=False)
    except Exception as exc:
        name = type(exc).__name__
        if "Password" in name or "Signature" in name or "Decrypt" in name:
            return Unreadable(reason="Java keystore: wrong or missing password (--password-env)")
        return Unreadable(reason=f"Java keystore cannot be read: {name}")
    out: list[Bundle] = []
    for alias, entry in sorted(store.private_keys.items()):
        out.append(Bundle(label=str(alias), ders=tuple(bytes(der) for _, der in entry.cert_chain)))
    for alias, entry in sorted(store.certs.items()):
        out.append(Bundle(label=str(alias), ders=(bytes(entry.cert),)))
    if not out:
        return Unreadable(reason="Java keystore without certificates")
    return out[:MAX_BUNDLES]


def _pkcs12(data: bytes, password: str | None) -> list[Bundle] | Unreadable:
    try:
        loaded = pkcs12.load_pkcs12(data, password.encode() if password else None)
    except ValueError:
        return Unreadable(
            reason="not a certificate (PEM, DER, PKCS#7) and no readable PKCS#12: wrong or "
            "missing password (--password-env), or truncated"
        )
    certs = []
    if loaded.cert is not None:
        certs.append(loaded.cert)
    certs += list(loaded.additional_certs)
    if not certs:
        return Unreadable(reason="PKCS#12 without certificates")
    label = None
    if loaded.cert is not None and loaded.cert.friendly_name:
        label = loaded.cert.friendly_name.decode("utf-8", "replace")[:100]
    return [
        Bundle(label=label, ders=tuple(c.certificate.public_bytes(Encoding.DER) for c in certs))
    ]


def decode(data: bytes, *, password: str | None = None) -> list[Bundle] | Unreadable:
    """The bundles in ``data`` (module docstring); ``password`` opens PKCS#12 and keystores."""
    if not data:
        return Unreadable(reason="empty file")
    if b"-----BEGIN " in data[:65536] or data.lstrip()[:11] == b"-----BEGIN ":
        return _pem(data)
    if data[:4] in _JKS_MAGIC:
        return _keystore(data, password)
    try:
        return [
            Bundle(
                label=None, ders=(x509.load_der_x509_certificate(data).public_bytes(Encoding.DER),)
            )
        ]
    except ValueError:
        pass
    try:
        certs = pkcs7.load_der_pkcs7_certificates(data)
    except ValueError:
        certs = []
    if certs:
        return [Bundle(label=None, ders=tuple(c.public_bytes(Encoding.DER) for c in certs))]
    return _pkcs12(data, password)
