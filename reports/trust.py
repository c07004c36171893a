"""Trust evaluation of presented certificate chains, independent of host name and clock.

Theory of operation
-------------------
The engine collects every chain with verification off; here it is judged afterwards ("collect,
then judge"), apart from the name scanned (``hostname_mismatch`` is a finding of its own) and
from the clock (so is ``expired``).

1. **Structure** (:mod:`reports.chain`): the path from the leaf up through the presented
   certificates to a trust anchor, or to the dead end where it stops; whether the chain is sent
   in order; which certificates are extra.
2. **Validation.** A path that reaches a trusted root is then validated by
   ``cryptography.x509.verification`` (RFC 5280 and the CA/Browser Forum profile: basic
   constraints, key usage, name constraints, path length, signature algorithms). A *client*
   verifier is used so that no host name is involved; its end-entity policy is the web PKI
   default with the SAN extension optional and an EKU, when present, required to allow
   ``serverAuth``. The validation time is "now" clamped into the validity windows of every
   certificate on the path, so an expired or not-yet-valid certificate does not also read as
   untrusted. A refusal is kept in ``ChainVerdict.rejection``.
3. **Pinning.** A leaf that is itself a trust anchor (a self-signed certificate passed with
   ``--ca-bundle``) is trusted as is.

Trust anchors are Mozilla's roots as shipped by ``certifi`` plus any PEM bundles the user names.
Verdicts are cached per (chain, time) inside the store, bounded.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID

from reports.chain import MAX_DEPTH, MAX_PRESENTED, Anchors, build_path, quiet
from reports.chain import Path as ChainPath
from reports.malformed import encoding_fault
from reports.names import clean, hostname_matches, quote
from scanner.errors import UsageError
from scanner.models import CertInfo

__all__ = ["ChainVerdict", "TrustStore", "evaluate_chain", "hostname_matches"]

_CACHE_ENTRIES = 20_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainVerdict:
    """How a presented chain stands, independent of host name and clock.

    ``path`` lists the SHA-256 of the *presented* certificates on the path, leaf first, in path
    order (a trust anchor taken from the store is not in it). ``anchor`` is the subject of the
    trusted root the path reaches, ``None`` when it reaches none. At most one of ``anchor``,
    ``untrusted_root`` (subject of the self-signed root the path ends at) and ``missing_issuer``
    (issuer name of the last path certificate, neither sent nor trusted) is set; for a
    self-signed leaf that is not pinned all three are ``None``. ``rejection`` says why validation
    refused a path that reaches a trusted root. ``reason`` is a one-line summary when not
    ``trusted``. Names are RFC 4514 strings taken from the certificates: attacker-controlled.
    """

    trusted: bool
    reason: str | None
    self_signed: bool
    pinned: bool
    path: tuple[str, ...]
    anchor: str | None
    untrusted_root: str | None
    missing_issuer: str | None
    ordered: bool
    extra_certificates: tuple[str, ...]  # SHA-256 of each, in presented order
    extra_positions: tuple[int, ...]  # their positions in the presented chain
    duplicate_positions: tuple[int, ...]  # those extras that repeat a path certificate
    rejection: str | None
    #: The RFC 5280 rule a certificate's own encoding breaks, when that (not trust) is why
    #: validation refused a path reaching a trusted root (``reports.malformed``); ``reason``
    #: then says the chain would be trusted otherwise. ``malformed_position``: which
    #: certificate, by presented position.
    malformed: str | None = None
    malformed_position: int | None = None

    @property
    def missing_intermediate(self) -> bool:
        return self.missing_issuer is not None


def _eku_allows_server(
    policy: xv.Policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None
) -> None:
    del policy, cert
    allowed = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if eku is not None and not allowed & set(eku):
        raise ValueError("the extended key usage does not allow serverAuth")


class TrustStore:
    """Trust anchors (Mozilla's roots and/or private roots) and the caches judging uses.

    Build it once per command with :meth:`load` (reads files) or :meth:`from_pem`.
    """

    def __init__(self, anchors: Iterable[x509.Certificate]) -> None:
        self._anchors = Anchors(anchors)
        roots = self._anchors.certificates
        self._store = xv.Store(roots) if roots else None
        self._verdicts: dict[tuple[tuple[str, ...], datetime], ChainVerdict] = {}

    @classmethod
    def from_pem(cls, *bundles: bytes, mozilla: bool = True) -> TrustStore:
        """Anchors from PEM ``bundles``, plus Mozilla's roots unless ``mozilla`` is false."""
        anchors = list(_mozilla_roots()) if mozilla else []
        for bundle in bundles:
            with quiet():
                anchors += x509.load_pem_x509_certificates(bundle)
        return cls(anchors)

    @classmethod
    def load(cls, bundles: Sequence[Path] = (), *, mozilla: bool = True) -> TrustStore:
        """Anchors from the PEM files ``bundles`` (``--ca-bundle``), plus Mozilla's roots."""
        anchors = list(_mozilla_roots()) if mozilla else []
        for path in bundles:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise UsageError(f"{path}: cannot read CA bundle: {exc.strerror or exc}") from None
            try:
                with quiet():
                    anchors += x509.load_pem_x509_certificates(data)
            except ValueError as exc:
                raise UsageError(f"{path}: not a PEM certificate bundle: {exc}") from None
        return cls(anchors)

    def __len__(self) -> int:
        return len(self._anchors)

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._anchors

    def evaluate(self, chain: Sequence[CertInfo], *, now: datetime) -> ChainVerdict:
        """The verdict on ``chain`` (as presented, leaf first) at time ``now``."""
        key = (tuple(c.sha256 for c in chain), now)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._judge(chain, now)
            if len(self._verdicts) >= _CACHE_ENTRIES:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def _judge(self, chain: Sequence[CertInfo], now: datetime) -> ChainVerdict:
        path = build_path(self._anchors, chain)
        if path is None:
            return _unparsable_leaf()
        end = path.certs[-1]
        untrusted_root = end.name if path.dead_end_is_root and not path.self_signed else None
        missing_issuer = None
        if path.anchor is None and not path.self_signed and untrusted_root is None:
            missing_issuer = end.issuer_name
        rejection = None
        if path.pinned:
            reason = None
        elif path.self_signed and path.anchor is None:
            reason = "the leaf is self-signed and not a trusted root"
        elif untrusted_root is not None:
            reason = f"the chain ends at {quote(untrusted_root)}, which is not a trusted root"
        elif missing_issuer is not None:
            reason = f"the issuer {quote(missing_issuer)} was not sent and is not trusted"
        else:
            rejection = reason = self._validate(path, now)
        fault = None if rejection is None else encoding_fault(rejection, chain)
        if fault is not None:
            anchor = quote(path.anchor.name) if path.anchor is not None else "a trusted root"
            reason = (
                f"malformed: {fault.rule} (validation stopped there); apart from that its path"
                f" reaches the trusted root {anchor}, so it would be trusted"
            )
        return ChainVerdict(
            trusted=reason is None,
            reason=reason,
            self_signed=path.self_signed,
            pinned=path.pinned,
            path=tuple(c.sha256 for c in path.on_path),
            anchor=None if path.anchor is None else path.anchor.name,
            untrusted_root=untrusted_root,
            missing_issuer=missing_issuer,
            ordered=path.ordered,
            extra_certificates=tuple(chain[i].sha256 for i in path.extras),
            extra_positions=path.extras,
            duplicate_positions=path.duplicates,
            rejection=rejection,
            malformed=None if fault is None else fault.rule,
            malformed_position=None if fault is None else fault.position,
        )

    def _validate(self, path: ChainPath, now: datetime) -> str | None:
        """Why validation refuses ``path`` (which reaches an anchor); ``None`` if it accepts."""
        anchor = path.anchor
        assert anchor is not None
        try:
            starts = [c.cert.not_valid_before_utc for c in [*path.certs, anchor]]
            ends = [c.cert.not_valid_after_utc for c in [*path.certs, anchor]]
        except ValueError as exc:
            return f"unreadable validity period: {quote(str(exc))}"
        low, high = max(starts), min(ends)
        if low > high:
            return "no moment at which every certificate on the path is valid"
        if self._store is None:
            return "no trust anchors"
        extensions = (
            xv.ExtensionPolicy.webpki_defaults_ee()
            .may_be_present(x509.SubjectAlternativeName, xv.Criticality.AGNOSTIC, None)
            .may_be_present(x509.ExtendedKeyUsage, xv.Criticality.AGNOSTIC, _eku_allows_server)
        )
        verifier = (
            xv.PolicyBuilder()
            .store(self._store)
            .time(min(max(now, low), high))
            .max_chain_depth(MAX_DEPTH)
            .extension_policies(
                ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(), ee_policy=extensions
            )
            .build_client_verifier()
        )
        intermediates = [c.cert for c in path.presented[1 : MAX_PRESENTED + 1] if c is not None]
        try:
            with quiet():
                verifier.verify(path.leaf.cert, intermediates)
        except xv.VerificationError as exc:
            text = str(exc).removeprefix("validation failed: ")
            return f"validation against {quote(anchor.name)} failed: {clean(text, limit=200)}"
        return None


def evaluate_chain(chain: Sequence[CertInfo], *, store: TrustStore, now: datetime) -> ChainVerdict:
    """The verdict on the presented ``chain`` (leaf first) against ``store`` at ``now``."""
    return store.evaluate(chain, now=now)


def _unparsable_leaf() -> ChainVerdict:
    return ChainVerdict(
        trusted=False,
        reason="the leaf certificate cannot be parsed",
        self_signed=False,
        pinned=False,
        path=(),
        anchor=None,
        untrusted_root=None,
        missing_issuer=None,
        ordered=True,
        extra_certificates=(),
        extra_positions=(),
        duplicate_positions=(),
        rejection=None,
    )


@functools.cache
def _mozilla_roots() -> tuple[x509.Certificate, ...]:
    with open(certifi.where(), "rb") as handle, quiet():
        return tuple(x509.load_pem_x509_certificates(handle.read()))
