"""Which negotiated cipher suites are weak, by name.

The engine reports the cipher the server chose as OpenSSL names it (``ECDHE-RSA-AES128-GCM-SHA256``,
``DES-CBC3-SHA``, ``TLS_AES_128_GCM_SHA256`` for TLS 1.3); an IANA name
(``TLS_RSA_WITH_3DES_EDE_CBC_SHA``) is understood as well. A name is split into its ``-`` / ``_``
separated tokens and judged on them, worst first:

========================================  ==========  ===========================================
tokens                                     severity    why
========================================  ==========  ===========================================
``NULL``                                   critical    no encryption at all
``EXP``, ``EXP1024``, ``EXPORT``...        critical    export-grade keys (40/56 bits)
``ADH``, ``AECDH``, ``ANON``               critical    anonymous key exchange: no server
                                                       authentication, trivially intercepted
``RC4``                                    high        RC4 keystream biases (RFC 7465)
``DES`` with ``CBC3``/``3DES``/``EDE``     high        3DES: 64-bit blocks (Sweet32)
``DES`` alone                              high        single DES: 56-bit key
``RC2``, ``IDEA``                          high        obsolete ciphers (IDEA has 64-bit blocks)
a final ``MD5``                            high        MD5 record MAC
a final ``SHA`` (SHA-1 MAC), no AEAD       medium      CBC mode with a SHA-1 MAC (padding-oracle
                                                       history, usually no forward secrecy)
========================================  ==========  ===========================================

Everything else (AES-GCM, ChaCha20-Poly1305, CCM, CBC with SHA-256/384 MACs, every TLS 1.3 suite)
is not reported. The name comes from the server's handshake via OpenSSL, so it is one of OpenSSL's
known names; an unknown name simply matches no rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scanner.models import Severity

__all__ = ["CipherWeakness", "cipher_weakness"]

_AEAD = frozenset({"GCM", "CCM", "CCM8", "CHACHA20", "POLY1305"})
_TRIPLE = frozenset({"CBC3", "3DES", "EDE"})
_ANONYMOUS = frozenset({"ADH", "AECDH", "ANON"})


@dataclass(frozen=True, slots=True, kw_only=True)
class CipherWeakness:
    """Why a cipher suite is weak: ``reason`` is a short phrase such as ``"3DES"``."""

    severity: Severity
    reason: str


def cipher_weakness(name: str) -> CipherWeakness | None:
    """The weakness of the cipher suite ``name``, or ``None`` when it is not considered weak."""
    tokens = [t for t in re.split(r"[-_]", name.upper()) if t]
    if not tokens:
        return None
    found = set(tokens)
    if "NULL" in found:
        return CipherWeakness(severity=Severity.CRITICAL, reason="NULL: no encryption")
    if any(t.startswith("EXP") for t in tokens):
        return CipherWeakness(severity=Severity.CRITICAL, reason="EXPORT-grade")
    if found & _ANONYMOUS:
        return CipherWeakness(
            severity=Severity.CRITICAL, reason="anonymous: no server authentication"
        )
    if "RC4" in found:
        return CipherWeakness(severity=Severity.HIGH, reason="RC4")
    if found & _TRIPLE:
        return CipherWeakness(severity=Severity.HIGH, reason="3DES")
    if "DES" in found:
        return CipherWeakness(severity=Severity.HIGH, reason="single DES")
    if found & {"RC2", "IDEA"}:
        return CipherWeakness(severity=Severity.HIGH, reason="obsolete cipher")
    if tokens[-1] == "MD5":
        return CipherWeakness(severity=Severity.HIGH, reason="MD5 MAC")
    if tokens[-1] == "SHA" and not found & _AEAD:
        return CipherWeakness(severity=Severity.MEDIUM, reason="CBC with a SHA-1 MAC")
    return None
