"""What the rules judge and what a report shows: an observation as the rules take it
(:class:`EndpointInput` with its :class:`Context`), and an endpoint as a report shows it
(:class:`EndpointView`). Plain frozen data, no I/O. ``Finding`` and ``Severity`` live one floor
down, in :mod:`scanner.models`, because the inventory stores them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from scanner.models import CertInfo, Finding, Severity

if TYPE_CHECKING:
    from scanner.inventory.history import LeafRun


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointView:
    """An endpoint as a report shows it: its latest observation, chain and findings.

    ``alt_chains`` are the other chains the endpoint presented (``--all-certs``: a server holding
    an RSA and an ECDSA certificate), each leaf first; the findings cover them too.
    ``automation`` says how the endpoint renews, from its leaf history (``automated``,
    ``irregular``, ``one renewal``, ``no renewal seen``; ``None``: no history read), and
    ``lead_days`` are its renewals' lead times in days, oldest first (:mod:`reports.renewal`).
    """

    address: str
    port: int
    sni: str | None
    status: str
    error: str | None
    tls_version: str | None
    cipher: str | None
    observed_at: datetime | None
    scan_id: int | None
    chain: tuple[CertInfo, ...]
    findings: tuple[Finding, ...]
    alt_chains: tuple[tuple[CertInfo, ...], ...] = ()
    automation: str | None = None
    lead_days: tuple[float, ...] = ()
    #: The ``[owners]`` assignment (``reports.owners``); ``None``: no rule matched.
    owner: str | None = None
    environment: str | None = None
    tags: tuple[str, ...] = ()
    #: The chain came from a legacy capture (``Handshake.legacy_capture``); the key exchange
    #: group. None for failures and observations stored before they were recorded.
    legacy_capture: bool | None = None
    group: str | None = None


EndpointKey = tuple[str, int, str | None]  # (address, port, sni)


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointInput:
    """One observation of an endpoint. ``chain`` is as presented (leaf first), possibly empty;
    ``tls_version`` and ``cipher`` are ``None`` when no handshake completed. ``alt_chains`` are
    the other chains the endpoint presented (``--all-certs``), each leaf first."""

    address: str
    port: int
    sni: str | None
    status: str
    tls_version: str | None = None
    cipher: str | None = None
    chain: tuple[CertInfo, ...] = ()
    alt_chains: tuple[tuple[CertInfo, ...], ...] = ()
    ocsp_staple: bytes | None = None  # the stapled OCSP response, as received; None: none
    group: str | None = None  # the key exchange group; None when none or not recorded
    key_proven: bool = True  # False: a chain the server never proved it holds the key of

    @property
    def key(self) -> EndpointKey:
        return (self.address, self.port, self.sni)


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """A finding a rule over several endpoints or over history proposes for one endpoint; the
    rules then apply the policy to it as to their own. ``sha256`` names the certificate
    concerned (``None``: the endpoint as a whole)."""

    kind: str
    severity: Severity
    message: str
    sha256: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What the rules know beyond the observation itself.

    ``previous_leaf`` is the leaf SHA-256 of the previous observation of the same endpoint
    (``None``: none, or it had no chain). ``key_shared_with`` holds the other endpoints serving the
    same leaf key with a different certificate (see :func:`shared_key_peers`).
    ``accepted_versions`` is the protocol probe's result (``None``: not probed).
    ``alt_key_shared_with`` maps the SHA-256 of an alternative chain's leaf to the same for that
    leaf's key.

    ``previous_chain`` is the whole chain of the previous observation when its leaf differs from
    this one (``()``: unknown or unchanged), for ``material_change`` and ``certificate_regressed``.
    ``runs`` are the endpoint's leaf runs up to this observation, oldest first (``()``: no
    history read), for the renewal rules. ``extra`` are findings computed across endpoints
    (``fleet_inconsistent``).
    """

    previous_leaf: str | None = None
    key_shared_with: frozenset[EndpointKey] = field(default_factory=frozenset)
    alt_key_shared_with: Mapping[str, frozenset[EndpointKey]] = field(default_factory=dict)
    accepted_versions: frozenset[str] | None = None
    previous_chain: tuple[CertInfo, ...] = ()
    runs: tuple[LeafRun, ...] = ()
    extra: tuple[Proposal, ...] = ()
