"""Revocation findings from the stapled OCSP response: what the staple says about the leaf.

======================  ===================  ====================================================
kind                    default severity     when
======================  ===================  ====================================================
revoked                 critical             the staple's answer about the leaf says ``revoked``
                                             (the message gives the time and the reason)
ocsp_staple_stale       medium               that answer's ``next_update`` has passed: clients
                                             ignore it (and a must-staple leaf fails)
ocsp_staple_mismatch    medium               the staple vouches for no certificate presented: it
                                             answers for another certificate, says ``unknown``,
                                             is not ``successful``, cannot be parsed, or its
                                             signature is not the issuer's or its delegated
                                             responder's
must_staple_missing     high                 the leaf carries the TLS Feature ``status_request``
                                             (must staple) and the server stapled nothing:
                                             browsers that honour it refuse the connection
======================  ===================  ====================================================

Only the main chain is judged: the engine records the staple of the first handshake, and an
alternative chain (``--all-certs``) comes with none. Parsing and CertID matching are in
:mod:`scanner.staple`; this module only decides, from plain values, so it is pure. A staple
whose signature does not check out (:func:`scanner.staple.signature_problem`) is judged as a
mismatch and nothing else: clients discard it, so what it says (``revoked``, a ``next_update``)
is not reported as the leaf's status. With the issuer absent from the chain the signature cannot
be checked and the staple is judged as it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from scanner.models import CertInfo, Severity
from scanner.staple import answer_for, must_staple, parse_staple, signature_problem

__all__ = ["KINDS", "Verdict", "judge"]

KINDS: tuple[str, ...] = (
    "revoked",
    "ocsp_staple_stale",
    "ocsp_staple_mismatch",
    "must_staple_missing",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """One revocation finding about the leaf: its kind, severity and one-line message."""

    kind: str
    severity: Severity
    message: str


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def judge(chain: tuple[CertInfo, ...], staple: bytes | None, now: datetime) -> tuple[Verdict, ...]:
    """The revocation findings on a presented ``chain`` (leaf first) with its ``staple`` at
    ``now`` (UTC); empty for an empty chain or an unparsable leaf."""
    if not chain or chain[0].error is not None:
        return ()
    ders = [c.der for c in chain]
    if not staple:
        if must_staple(ders[0]):
            return (
                Verdict(
                    kind="must_staple_missing",
                    severity=Severity.HIGH,
                    message="the leaf requires an OCSP staple (TLS Feature status_request, "
                    "RFC 7633) but the server sent none",
                ),
            )
        return ()
    parsed = parse_staple(staple)
    if parsed.error is not None:
        return (_mismatch(f"the stapled OCSP response is unusable: {parsed.error}"),)
    answer = answer_for(parsed, ders)
    if answer is None:
        serials = ", ".join(f"{a.serial:x}" for a in parsed.answers[:3]) or "none"
        return (
            _mismatch(
                "the stapled OCSP response is for another certificate "
                f"(serial {serials}; the leaf's is {chain[0].serial or '?'})"
            ),
        )
    problem = signature_problem(parsed, ders)
    if problem is not None:
        return (
            _mismatch(f"the stapled OCSP response's signature does not vouch for it: {problem}"),
        )
    out: list[Verdict] = []
    if answer.cert_status == "revoked":
        when = _iso(answer.revocation_time) if answer.revocation_time else "an unstated time"
        reason = answer.revocation_reason or "unspecified"
        out.append(
            Verdict(
                kind="revoked",
                severity=Severity.CRITICAL,
                message=f"revoked at {when} (reason: {reason}) per the stapled OCSP response",
            )
        )
    elif answer.cert_status == "unknown":
        out.append(_mismatch("the stapled OCSP response says the responder does not know the leaf"))
    if answer.next_update is not None and answer.next_update < now:
        out.append(
            Verdict(
                kind="ocsp_staple_stale",
                severity=Severity.MEDIUM,
                message=f"the stapled OCSP response expired at {_iso(answer.next_update)} "
                f"(next_update; this_update {_iso(answer.this_update)})",
            )
        )
    return tuple(out)


def _mismatch(message: str) -> Verdict:
    return Verdict(kind="ocsp_staple_mismatch", severity=Severity.MEDIUM, message=message)
