"""The rules behind :func:`reports.findings.evaluate`, one method per group of finding kinds.

======================  ===================  ====================================================
kind                    default severity     when
======================  ===================  ====================================================
unparsable_certificate  high                 a presented certificate cannot be loaded at all
expired                 critical             now is after ``not_after``
expiring                high / critical      within ``expiring_high_days`` (30) / ``_critical_``
                                             (7) of ``not_after``; short-lived certificates use
                                             windows scaled to their lifetime (see below)
not_yet_valid           high                 now is before ``not_before``
self_signed             high (low if pinned) the leaf is signed by its own key; low when that very
                                             certificate is a trust anchor (``--ca-bundle``)
malformed_certificate   high                 validation of a path to a trusted root stopped at
                                             the encoding of a certificate (a negative serial):
                                             the message names the RFC 5280 rule
untrusted_root          high                 the path ends at a self-signed root that is not
                                             trusted, or validation rejects the path to a trusted
                                             root for a reason no other finding explains
incomplete_chain        high                 the issuer of the last certificate on the path was
                                             not sent and is not a trusted root
chain_order             low                  the path's certificates are not sent leaf first, each
                                             followed by its issuer
extra_certificate       low                  a certificate off the path: unrelated, or a duplicate
weak_key                high                 RSA/DSA below ``min_rsa_bits``, EC below
                                             ``min_ec_bits``
weak_signature          high                 signed with MD2/MD4/MD5/SHA-1, except the signature of
                                             a self-signed certificate (it protects nothing)
long_validity           low                  the leaf is valid longer than the CA/B Forum limit
                                             at its notBefore (398, 200, 100, 47 days; see
                                             :mod:`reports.validity`) or
                                             ``max_leaf_validity_days`` when set
no_san                  high                 the leaf has no DNS or IP SAN (clients ignore the CN);
                                             ``hostname_mismatch`` is then not reported
hostname_mismatch       high (low by IP)     the SANs do not cover the SNI name; low when the scan
                                             sent no name and the address is not an IP SAN, since
                                             clients of a discovered address normally use a name
key_reuse               medium               the leaf key is served by other endpoints presenting
                                             different certificates (each leaf, alternative ones
                                             too)
legacy_protocol         medium / high        the probe found TLS 1.0/1.1 (or SSL) accepted; high
                                             when even certscan's modern offer got a legacy version
weak_cipher             medium .. critical   as :mod:`reports.ciphers` grades the negotiated suite
revoked, ocsp_staple_*  medium .. critical   the stapled OCSP response, as :mod:`reports.revocation`
must_staple_missing                          tables them
certificate_changed     info                 the leaf differs from the previous observation: a
                                             renewal (``reports.changes``)
material_change         medium / high        a different leaf that is no renewal: SANs removed,
                                             issuer to another CA, weaker key, untrusted or
                                             self-signed replacing trusted
certificate_regressed   high                 an older certificate replaced a newer one
fleet_inconsistent      medium / high        the same name and port serve different leaves on
                                             different addresses (``reports.fleet``)
renews_late             medium               the last renewals came inside the critical window
                                             (``reports.renewal``)
renewal_not_observed    medium               past its usual renewal point, in its last third,
                                             and no successor seen
no_pq_key_exchange      info                 the key exchange has no post-quantum component
                                             (:mod:`reports.kex`): TLS 1.2 or older, or a
                                             classical TLS 1.3 group; a policy may raise it
======================  ===================  ====================================================

``expiring`` and short-lived certificates: with lifetime ``L``, the windows are
``expiring_high_days`` and ``expiring_critical_days`` scaled by
``min(1, L * short_lived_fraction / expiring_high_days)``. Certificates living 90 days or more
(with the defaults) keep the fixed 30 / 7 days; a 47-day certificate is high from 15.7 days and
critical from 3.7 days before expiry, a 6-day certificate high from 2 days and critical from 11
hours. There is no medium stage: for long-lived certificates "the last third" is months, which is
not actionable, and for short-lived ones fixed day counts would keep them high all their life.
With ``expiring_high_fraction`` set, ``expiring`` is high once less than that fraction of the
lifetime is left, whatever the lifetime (the critical window is unchanged).

Alternative chains (``EndpointInput.alt_chains``) go through :meth:`Rules.certificates` as the
main chain does, with :attr:`Rules.alt` set to their number: :meth:`Rules.add` then prefixes the
message with ``alternative chain N:``, names the alternative leaf when a finding names no
certificate, and drops a finding whose (kind, certificate) was already raised, which is also the
identity under which the inventory stores findings.

Messages are one line and carry the evidence; certificate text in them passes through
:func:`reports.names.quote` (control and bidi characters escaped, length bounded) but is still
attacker-controlled: renderers escape it for their format.
"""

from __future__ import annotations

import heapq
import re
from datetime import datetime, timedelta

from reports import revocation
from reports.changes import judge_change
from reports.ciphers import cipher_weakness
from reports.expiry import expiry_severity
from reports.kex import pq_gap
from reports.model import Context, EndpointInput
from reports.names import clean, hostname_matches, quote
from reports.policy import Policy
from reports.renewal import renewal_not_observed, renews_late
from reports.trust import ChainVerdict, TrustStore, evaluate_chain
from reports.validity import max_validity_days
from scanner.models import CertInfo, Finding, Severity

__all__ = ["LEGACY_VERSIONS", "Rules", "expiry_severity"]

#: Protocol versions reported by ``legacy_protocol``, as OpenSSL names them.
LEGACY_VERSIONS: tuple[str, ...] = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1")

_WEAK_HASH = re.compile(r"md[245]|sha-?1(?!\d)")
_EXPLAINS_REJECTION = frozenset({"expired", "not_yet_valid", "weak_key", "weak_signature"})
_SHOWN_NAMES = 5  # SANs / endpoints listed in a message before "+N more"
FILE_PREFIX = "file:"  # the address of a certificate file's endpoint (``certscan import``)


# --- the rules -------------------------------------------------------------------------------


class Rules:
    """The rules applied to one observation; :meth:`run` returns the findings."""

    def __init__(
        self,
        endpoint: EndpointInput,
        policy: Policy,
        trust: TrustStore,
        now: datetime,
        ctx: Context,
    ) -> None:
        self.endpoint, self.policy, self.trust = endpoint, policy, trust
        self.now, self.ctx = now, ctx
        self.proposed: list[Finding] = []
        self.alt = 0  # the alternative chain being judged, 0 for the main chain
        self.alt_leaf: str | None = None  # its leaf's SHA-256
        self.verdict: ChainVerdict | None = None  # the main chain's, once judged

    def add(self, kind: str, severity: Severity, message: str, sha256: str | None) -> None:
        e = self.endpoint
        if self.alt:
            sha256 = sha256 or self.alt_leaf
            if any(f.kind == kind and f.sha256 == sha256 for f in self.proposed):
                return
            message = f"alternative chain {self.alt}: {message}"
        self.proposed.append(
            Finding(
                kind=kind,
                severity=severity,
                message=message,
                address=e.address,
                port=e.port,
                sni=e.sni,
                sha256=sha256,
            )
        )

    def run(self) -> tuple[Finding, ...]:
        for index, chain in enumerate((self.endpoint.chain, *self.endpoint.alt_chains)):
            if not chain:
                continue
            self.alt, self.alt_leaf = index, chain[0].sha256 if index else None
            for position, cert in enumerate(chain):
                if cert.error is not None:
                    self.add(
                        "unparsable_certificate",
                        Severity.HIGH,
                        f"{_who(position, cert)} cannot be parsed: {quote(cert.error)}",
                        cert.sha256,
                    )
            if chain[0].error is None:
                self.certificates(chain)
        self.alt, self.alt_leaf = 0, None
        if self.endpoint.chain:
            self.changed(self.endpoint.chain)
        self.protocol()
        self.cipher()
        if self.endpoint.chain:
            for verdict in revocation.judge(
                self.endpoint.chain, self.endpoint.ocsp_staple, self.now
            ):
                self.add(
                    verdict.kind, verdict.severity, verdict.message, self.endpoint.chain[0].sha256
                )
        self.key_exchange()
        kept = [
            Finding(
                kind=f.kind,
                severity=self.policy.severity_of(f.kind, f.severity),
                message=f.message,
                address=f.address,
                port=f.port,
                sni=f.sni,
                sha256=f.sha256,
            )
            for f in self.proposed
            if self.policy.is_enabled(f.kind)
        ]
        return tuple(sorted(kept, key=lambda f: -f.severity))

    def certificates(self, chain: tuple[CertInfo, ...]) -> None:
        verdict = evaluate_chain(chain, store=self.trust, now=self.now)
        if not self.alt:
            self.verdict = verdict
        on_path = set(verdict.path)
        seen: set[str] = set()
        for position, cert in enumerate(chain):
            if cert.error is not None or cert.sha256 in seen:
                continue
            seen.add(cert.sha256)
            if position == 0 or cert.sha256 in on_path:
                self.validity(position, cert)
            self.weak_key(position, cert)
            self.weak_signature(position, cert)
        self.chain_trust(chain, verdict)
        leaf = chain[0]
        self.leaf(leaf)
        shared = (
            self.ctx.alt_key_shared_with.get(leaf.sha256, frozenset())
            if self.alt
            else self.ctx.key_shared_with
        )
        if shared:
            # The first few in order and the count: no sort of hundreds of peers per endpoint.
            first = heapq.nsmallest(_SHOWN_NAMES, shared, key=lambda k: (k[0], k[1], k[2] or ""))
            shown = ", ".join(_endpoint(*k) for k in first)
            more = f" (+{len(shared) - _SHOWN_NAMES} more)" if len(shared) > _SHOWN_NAMES else ""
            self.add(
                "key_reuse",
                Severity.MEDIUM,
                f"the leaf key (SPKI sha256 {(leaf.spki_sha256 or '?')[:16]}…) is also served "
                f"with different certificates by {len(shared)} other endpoint(s): {shown}{more}",
                leaf.sha256,
            )

    def validity(self, position: int, cert: CertInfo) -> None:
        who, start, end = _who(position, cert), cert.not_before, cert.not_after
        if end is not None and self.now > end:
            ago = _span(self.now - end)
            self.add(
                "expired", Severity.CRITICAL, f"{who} expired {_iso(end)}, {ago} ago", cert.sha256
            )
        elif start is not None and self.now < start:
            wait = _span(start - self.now)
            msg = f"{who} is not valid before {_iso(start)}, {wait} from now"
            self.add("not_yet_valid", Severity.HIGH, msg, cert.sha256)
        elif start is not None and end is not None:
            severity = expiry_severity(start, end, self.now, self.policy)
            if severity is not None:
                msg = (
                    f"{who} expires {_iso(end)}, in {_span(end - self.now)} "
                    f"(lifetime {_span(end - start)})"
                )
                self.add("expiring", severity, msg, cert.sha256)

    def weak_key(self, position: int, cert: CertInfo) -> None:
        bits, kind = cert.key_bits, cert.key_type
        if bits is None or kind is None:
            return
        minimum = {
            "RSA": self.policy.min_rsa_bits,
            "DSA": self.policy.min_rsa_bits,
            "EC": self.policy.min_ec_bits,
        }.get(kind)
        if minimum is not None and bits < minimum:
            curve = f" ({quote(cert.key_curve)})" if cert.key_curve else ""
            msg = f"{_who(position, cert)} has a {bits}-bit {kind} key{curve}, minimum {minimum}"
            self.add("weak_key", Severity.HIGH, msg, cert.sha256)

    def weak_signature(self, position: int, cert: CertInfo) -> None:
        if cert.self_issued:
            return
        algorithm = cert.signature_algorithm or ""
        digest = cert.signature_hash or ""
        if _WEAK_HASH.fullmatch(digest.lower()) or _WEAK_HASH.search(algorithm.lower()):
            name = digest.upper() if digest else "a weak hash"
            msg = f"{_who(position, cert)} is signed with {name} ({quote(algorithm)})"
            self.add("weak_signature", Severity.HIGH, msg, cert.sha256)

    def chain_trust(self, chain: tuple[CertInfo, ...], verdict: ChainVerdict) -> None:
        leaf = chain[0]
        by_sha = {c.sha256: (i, c) for i, c in reversed(list(enumerate(chain)))}
        if verdict.self_signed:
            if verdict.pinned:
                msg = f"{_who(0, leaf)} is self-signed; trusted as a configured CA bundle entry"
                self.add("self_signed", Severity.LOW, msg, leaf.sha256)
            else:
                msg = f"{_who(0, leaf)} is self-signed and not a trusted root"
                self.add("self_signed", Severity.HIGH, msg, leaf.sha256)
        end_position, end = by_sha.get(verdict.path[-1], (0, leaf)) if verdict.path else (0, leaf)
        if verdict.untrusted_root is not None:
            msg = (
                f"the chain ends at self-signed {_who(end_position, end)}, which is not a "
                "trusted root (a private root needs --ca-bundle)"
            )
            self.add("untrusted_root", Severity.HIGH, msg, end.sha256)
        elif verdict.malformed is not None:
            position = verdict.malformed_position or 0
            cert = chain[position] if position < len(chain) else leaf
            msg = f"{_who(position, cert)} is {verdict.reason}"
            self.add("malformed_certificate", Severity.HIGH, msg, cert.sha256)
        elif verdict.rejection is not None and not self._explained(verdict):
            self.add("untrusted_root", Severity.HIGH, verdict.rejection, leaf.sha256)
        if verdict.missing_issuer is not None:
            msg = (
                f"the issuer {quote(verdict.missing_issuer)} of {_who(end_position, end)} was not "
                "sent and is not a trusted root (an intermediate is missing, or a private root "
                "needs --ca-bundle)"
            )
            self.add("incomplete_chain", Severity.HIGH, msg, end.sha256)
        if not verdict.ordered:
            order = ", ".join(f"#{by_sha[s][0]}" for s in verdict.path if s in by_sha)
            msg = (
                f"the chain is sent out of order: from the leaf up, the path is {order}; "
                "each certificate should be followed by its issuer"
            )
            self.add("chain_order", Severity.LOW, msg, None)
        for position in verdict.extra_positions:
            cert = chain[position]
            why = (
                "is sent more than once"
                if position in verdict.duplicate_positions
                else "is not part of the path to the root"
            )
            self.add(
                "extra_certificate", Severity.LOW, f"{_who(position, cert)} {why}", cert.sha256
            )

    def _explained(self, verdict: ChainVerdict) -> bool:
        on_path = set(verdict.path)
        return any(f.kind in _EXPLAINS_REJECTION and f.sha256 in on_path for f in self.proposed)

    def leaf(self, leaf: CertInfo) -> None:
        who = _who(0, leaf)
        if leaf.not_before is not None and leaf.not_after is not None:
            lifetime = leaf.not_after - leaf.not_before
            limit = self.policy.max_leaf_validity_days
            source = "max_leaf_validity_days"
            if limit is None:
                limit = max_validity_days(leaf.not_before)
                source = f"the CA/Browser Forum limit at {_iso(leaf.not_before)[:10]}"
            if lifetime > timedelta(days=limit):
                msg = (
                    f"{who} is valid for {_span(lifetime)} ({_iso(leaf.not_before)} to "
                    f"{_iso(leaf.not_after)}), more than {limit} days ({source})"
                )
                self.add("long_validity", Severity.LOW, msg, leaf.sha256)
        if not leaf.san_dns and not leaf.san_ip:
            cn = f" (clients ignore the CN {quote(leaf.subject_cn)})" if leaf.subject_cn else ""
            self.add("no_san", Severity.HIGH, f"{who} has no DNS or IP SAN{cn}", leaf.sha256)
            return
        if self.endpoint.address.startswith(FILE_PREFIX):
            return  # a certificate file is not reached by a name
        name = self.endpoint.sni or self.endpoint.address
        if not hostname_matches(name, leaf.san_dns, leaf.san_ip):
            sans = leaf.sans[:_SHOWN_NAMES]
            more = len(leaf.sans) - len(sans)
            listed = ", ".join(sans) + (f" (+{more} more)" if more else "")
            severity = Severity.HIGH if self.endpoint.sni else Severity.LOW
            msg = f"{quote(name)} is not covered by the SANs of {who}: {quote(listed, limit=300)}"
            self.add("hostname_mismatch", severity, msg, leaf.sha256)

    def changed(self, chain: tuple[CertInfo, ...]) -> None:
        """The history rules (:mod:`reports.changes`, :mod:`reports.renewal`) and the findings
        proposed across endpoints (``Context.extra``), on the main chain."""
        ctx, leaf = self.ctx, chain[0]
        was = None
        before = ctx.previous_chain
        if before and before[0].error is None and leaf.error is None:
            moment = self.now
            if before[0].not_before is not None and before[0].not_after is not None:
                moment = min(max(moment, before[0].not_before), before[0].not_after)
            was = evaluate_chain(before, store=self.trust, now=moment)
        proposals = [
            judge_change(
                ctx.previous_leaf,
                leaf,
                previous_chain=before,
                previous_verdict=was,
                current_verdict=self.verdict,
                runs=ctx.runs,
            )
        ]
        if ctx.runs and ctx.runs[-1].leaf.sha256 == leaf.sha256:
            proposals += [
                renews_late(ctx.runs, self.policy),
                renewal_not_observed(ctx.runs, self.now),
            ]
        for proposal in (*proposals, *ctx.extra):
            if proposal is not None:
                self.add(proposal.kind, proposal.severity, proposal.message, proposal.sha256)

    def protocol(self) -> None:
        accepted = {_version(v) for v in self.ctx.accepted_versions or ()}
        negotiated = _version(self.endpoint.tls_version or "")
        legacy = [v for v in LEGACY_VERSIONS if v in accepted or v == negotiated]
        if negotiated in LEGACY_VERSIONS:
            msg = f"negotiated {negotiated}, a legacy protocol version"
            if len(legacy) > 1:
                msg += f"; accepts {', '.join(legacy)}"
            self.add("legacy_protocol", Severity.HIGH, msg, None)
        elif legacy:
            self.add("legacy_protocol", Severity.MEDIUM, f"accepts {', '.join(legacy)}", None)

    def cipher(self) -> None:
        name = self.endpoint.cipher
        weakness = cipher_weakness(name) if name else None
        if name and weakness is not None:
            msg = f"negotiated cipher {quote(name)}: {weakness.reason}"
            self.add("weak_cipher", weakness.severity, msg, None)

    def key_exchange(self) -> None:
        gap = pq_gap(self.endpoint.tls_version, self.endpoint.group)
        if gap is not None and self.endpoint.chain:
            msg = f"no post-quantum key exchange: {clean(gap)}"
            self.add("no_pq_key_exchange", Severity.INFO, msg, None)


# --- message pieces --------------------------------------------------------------------------


def _who(position: int, cert: CertInfo) -> str:
    """``leaf 'a.example'`` / ``certificate #2 'Example CA'``: what a message is about."""
    label = cert.subject_cn or cert.subject or f"sha256 {cert.sha256[:16]}…"
    return f"{'leaf' if position == 0 else f'certificate #{position}'} {quote(label)}"


def _endpoint(address: str, port: int, sni: str | None) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}" + (f" ({quote(sni)})" if sni else "")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(delta: timedelta) -> str:
    """A duration for a person: ``398 days``, ``1 day``, ``11 hours``, ``5 minutes``."""
    seconds = delta.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{int(seconds)} seconds"


def _version(name: str) -> str:
    """OpenSSL's spelling: ``TLSv1.0`` and ``TLS 1.0`` become ``TLSv1``."""
    text = name.strip().replace(" ", "")
    text = text.replace("TLS1", "TLSv1").replace("SSL3", "SSLv3").replace("SSL2", "SSLv2")
    return text.removesuffix(".0")
