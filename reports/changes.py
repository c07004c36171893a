"""A different leaf than last time: routine renewal, material change, or regression. Pure.

Theory of operation
-------------------
:func:`judge_change` compares the leaf an endpoint presents now with the one it presented at
its previous observation, knowing both chains and how each stands against the trust store, and
proposes exactly one finding:

* ``certificate_regressed`` (high): the new leaf is *older* than the one it replaced (it begins
  and ends earlier). This is a failover to a stale replica or a rolled-back deployment; the
  message says when the endpoint last served it, when the leaf history shows it.
* ``material_change`` (medium or high): not a renewal. High when SANs were removed (clients of
  those names break), or a self-signed or untrusted certificate replaced one that chained to a
  trusted root; medium when the issuer moved to another CA family or the key is weaker. Every
  reason found is listed, the severity is the worst of them.
* ``certificate_changed`` (info): anything else, a routine renewal (the message says whether
  the subject and SAN set are the same, as renewals keep them).

Without the previous chain (a leaf known only by its SHA-256) it is ``certificate_changed``, as
before: nothing can be compared.

A CA *family* is the issuer's organisation (``O=``) when it has one, so Let's Encrypt R10 to R11
is a renewal, and the issuer's whole name otherwise. Key strength is compared in security bits
(NIST SP 800-57 Part 1, table 2): RSA 2048 is 112 bits, RSA 3072 and EC P-256 are 128.
"Trusted" means the path reaches a trust anchor (or the certificate is a pinned one), judged
apart from the clock: an expired predecessor was still a trusted one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from reports.model import Proposal
from reports.names import clean, quote
from reports.trust import ChainVerdict
from scanner.inventory.history import LeafRun
from scanner.models import CertInfo, Severity

__all__ = ["anchored", "ca_family", "judge_change", "security_bits"]

_SHOWN = 5  # SANs listed before "+N more"


def security_bits(cert: CertInfo) -> int | None:
    """The key's strength in bits of security, ``None`` when the key type is unknown."""
    kind, bits = cert.key_type, cert.key_bits
    if kind in ("RSA", "DSA") and bits is not None:
        for floor, strength in ((15360, 256), (7680, 192), (3072, 128), (2048, 112), (1024, 80)):
            if bits >= floor:
                return strength
        return bits // 16  # far below any standard: still ordered
    if kind == "EC" and bits is not None:
        return bits // 2
    return {"Ed25519": 128, "Ed448": 224}.get(kind or "")


def ca_family(cert: CertInfo) -> str:
    """The issuer's organisation, else its whole name (see the module docstring)."""
    return cert.issuer_o or cert.issuer or ""


def anchored(verdict: ChainVerdict) -> bool:
    """Whether the chain reaches a trust anchor, whatever the clock says."""
    return verdict.anchor is not None or (verdict.self_signed and verdict.pinned)


def _short(sha256: str) -> str:
    return f"{clean(sha256[:16])}…"


def _key(cert: CertInfo) -> str:
    return f"{clean(cert.key_type or '?')} {cert.key_bits or '?'}"


def _regressed(previous: CertInfo, current: CertInfo, runs: Sequence[LeafRun]) -> Proposal | None:
    if None in (previous.not_before, previous.not_after, current.not_before, current.not_after):
        return None
    assert previous.not_before is not None
    assert previous.not_after is not None
    assert current.not_before is not None
    assert current.not_after is not None
    if not (current.not_before < previous.not_before and current.not_after < previous.not_after):
        return None
    served = ""
    for earlier, after in itertools.pairwise(runs):
        if earlier.leaf.sha256 == current.sha256:
            served = f", which this endpoint served until {after.first_seen:%Y-%m-%d %H:%M} UTC"
    message = (
        f"an older certificate came back: sha256 {_short(current.sha256)} (not after "
        f"{current.not_after:%Y-%m-%d}){served} replaced the newer sha256 "
        f"{_short(previous.sha256)} (not after {previous.not_after:%Y-%m-%d}); a stale replica "
        "or a rolled-back deployment?"
    )
    return Proposal(
        kind="certificate_regressed", severity=Severity.HIGH, message=message, sha256=current.sha256
    )


def _reasons(
    previous: CertInfo,
    current: CertInfo,
    was: ChainVerdict | None,
    now_verdict: ChainVerdict | None,
) -> list[tuple[Severity, str]]:
    reasons: list[tuple[Severity, str]] = []
    removed = [name for name in previous.sans if name not in set(current.sans)]
    if removed:
        listed = ", ".join(removed[:_SHOWN]) + (
            f" (+{len(removed) - _SHOWN} more)" if len(removed) > _SHOWN else ""
        )
        reasons.append((Severity.HIGH, f"SANs removed: {quote(listed, limit=300)}"))
    if was is not None and now_verdict is not None and anchored(was):
        if now_verdict.self_signed and not now_verdict.pinned:
            reasons.append((Severity.HIGH, "a self-signed certificate replaced a trusted one"))
        elif not anchored(now_verdict):
            reasons.append((Severity.HIGH, "an untrusted certificate replaced a trusted one"))
    if ca_family(previous) != ca_family(current) and not current.self_issued:
        reasons.append(
            (
                Severity.MEDIUM,
                f"issuer changed from {quote(ca_family(previous))} to {quote(ca_family(current))}",
            )
        )
    before, after = security_bits(previous), security_bits(current)
    if before is not None and after is not None and after < before:
        reasons.append(
            (
                Severity.MEDIUM,
                f"weaker key: {_key(previous)} ({before}-bit security) became {_key(current)} "
                f"({after}-bit)",
            )
        )
    return reasons


def judge_change(
    previous_sha256: str | None,
    current: CertInfo,
    *,
    previous_chain: Sequence[CertInfo] = (),
    previous_verdict: ChainVerdict | None = None,
    current_verdict: ChainVerdict | None = None,
    runs: Sequence[LeafRun] = (),
) -> Proposal | None:
    """The one finding about the leaf having changed (module docstring), ``None`` if it has
    not. ``previous_chain`` is the previous observation's chain (leaf first), the verdicts are
    :func:`reports.trust.evaluate_chain` of each chain (``None``: not judged)."""
    if previous_sha256 is None or previous_sha256 == current.sha256:
        return None
    previous = previous_chain[0] if previous_chain else None
    comparable = previous is not None and previous.error is None and current.error is None
    if previous is not None and comparable and previous.sha256 == previous_sha256:
        return _compared(previous, current, previous_verdict, current_verdict, runs)
    message = (
        f"the leaf changed since the previous scan: sha256 {_short(previous_sha256)} "
        f"is now {current.sha256[:16]}…"
    )
    return Proposal(
        kind="certificate_changed", severity=Severity.INFO, message=message, sha256=current.sha256
    )


def _compared(
    previous: CertInfo,
    current: CertInfo,
    was: ChainVerdict | None,
    now_verdict: ChainVerdict | None,
    runs: Sequence[LeafRun],
) -> Proposal:
    regressed = _regressed(previous, current, runs)
    if regressed is not None:
        return regressed
    reasons = _reasons(previous, current, was, now_verdict)
    if reasons:
        worst = max(severity for severity, _ in reasons)
        message = (
            f"the leaf changed materially since the previous scan (sha256 "
            f"{_short(previous.sha256)} is now {_short(current.sha256)}): "
            + "; ".join(text for _, text in reasons)
        )
        return Proposal(
            kind="material_change", severity=worst, message=message, sha256=current.sha256
        )
    same = previous.subject == current.subject and set(previous.sans) == set(current.sans)
    kind_of = "a renewal (same subject and SANs)" if same else "a compatible replacement"
    message = (
        f"the leaf changed since the previous scan: sha256 {_short(previous.sha256)} is "
        f"now {_short(current.sha256)}, {kind_of}"
    )
    return Proposal(
        kind="certificate_changed", severity=Severity.INFO, message=message, sha256=current.sha256
    )
