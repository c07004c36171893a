"""Which verification failures are the certificate's own encoding, and the rule each breaks.

``cryptography``'s verifier refuses some certificates for how they are encoded rather than for
what they say about trust: the path to a trusted root is there, and validation stops at a
field no conforming CA may write. Those are reported as ``malformed_certificate`` (naming the
RFC 5280 rule) instead of ``untrusted_root``, so the owner learns that the CA (or the device
that minted the certificate) is at fault, not the trust store.

:data:`ENCODING_RULES` is the one table: a fragment of the verifier's message, the rule, and
how to find the certificate at fault in the path (``None``: the leaf). Each line is backed by a
test that builds such a certificate (``tests/reports/test_malformed.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from scanner.models import CertInfo

__all__ = ["ENCODING_RULES", "EncodingFault", "encoding_fault"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EncodingFault:
    """A verification failure caused by a certificate's encoding.

    ``rule`` names the RFC 5280 requirement broken; ``position`` is the certificate's index in
    the presented chain (0: the leaf)."""

    rule: str
    position: int


def _negative_serial(cert: CertInfo) -> bool:
    return (cert.serial or "").startswith("-")


#: (fragment of the verifier's message, RFC 5280 rule, which certificate is at fault).
ENCODING_RULES: Final[tuple[tuple[str, str, Callable[[CertInfo], bool] | None], ...]] = (
    (
        "serial number cannot be negative",
        "RFC 5280 4.1.2.2: the serial number MUST be a positive integer",
        _negative_serial,
    ),
)


def encoding_fault(message: str, chain: Sequence[CertInfo]) -> EncodingFault | None:
    """The encoding fault behind the verifier's ``message`` about ``chain`` (as presented,
    leaf first), or ``None`` when the failure is about trust, not encoding."""
    lowered = message.lower()
    for fragment, rule, at_fault in ENCODING_RULES:
        if fragment in lowered:
            position = 0
            if at_fault is not None:
                position = next((i for i, c in enumerate(chain) if at_fault(c)), 0)
            return EncodingFault(rule=rule, position=position)
    return None
