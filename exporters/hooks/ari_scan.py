"""ARI for every discovered certificate whose issuer runs it (``[ari]`` in the config).

Theory of operation
-------------------
:func:`scan_windows` takes the latest observations, keeps the leaves (key proven) whose issuer
CN -- or ``aki:HEX`` authority key identifier -- the ``[ari.directories]`` map names, and for
each whose stored window is due (never fetched, or past the CA's ``Retry-After``) asks that CA's
``renewalInfo`` without an account (:func:`exporters.hooks.ari.fetch_window`). The window is
stored (``ari_window``, exported as
``certscan_certificate_renewal_window_start_timestamp_seconds``), and when it starts before the
policy's own renewal point -- :func:`policy_point`: where the config file's ``[policy]`` turns
``expiring`` high (30 days before ``not_after`` by default, a third of the lifetime for
short-lived certificates, or ``expiring_high_fraction`` of it) -- every endpoint presenting the
certificate gets ``ca_requests_early_renewal`` (high): the CA wants it replaced early, usually
because it will be revoked. A window back at or after the policy point resolves it. One CA
failing never stops the others; at most :data:`MAX_LOOKUPS` certificates are asked about per
pass, with :data:`CONCURRENCY` requests at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import trio

from exporters.hooks.ari import AriError, fetch_window
from exporters.hooks.ari_id import cert_id_from_hex
from exporters.hooks.config import AriConfig
from reports.expiry import high_lead
from reports.policy import Policy
from scanner.inventory import renewals
from scanner.inventory.read import EndpointRecord
from scanner.inventory.store import Inventory
from scanner.models import CertInfo

__all__ = ["AriLookup", "directory_for", "policy_point", "scan_windows"]

log = logging.getLogger("certscan.hooks")
MAX_LOOKUPS: Final = 1000
CONCURRENCY: Final = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class AriLookup:
    """What one lookup found."""

    sha256: str
    early: bool | None  # None when the lookup failed or the CA runs no ARI
    error: str | None = None


def directory_for(config: AriConfig, cert: CertInfo) -> str | None:
    """The directory the map names for ``cert``'s issuer, or None (pure)."""
    if cert.authority_key_id and f"aki:{cert.authority_key_id}" in config.directories:
        return config.directories[f"aki:{cert.authority_key_id}"]
    if cert.issuer_cn is not None:
        return config.directories.get(cert.issuer_cn)
    return None


def policy_point(cert: CertInfo, policy: Policy) -> datetime | None:
    """When ``policy`` would renew ``cert``: where its ``expiring`` finding turns high
    (:func:`reports.expiry.high_lead`; with the defaults 30 days before ``not_after``, a third
    of the lifetime under 90 days). None without validity dates (pure)."""
    if cert.not_after is None or cert.not_before is None:
        return None
    return cert.not_after - high_lead(cert.not_before, cert.not_after, policy)


def _candidates(
    records: Sequence[EndpointRecord], config: AriConfig
) -> dict[str, tuple[CertInfo, str, list[tuple[str, int, str | None]]]]:
    found: dict[str, tuple[CertInfo, str, list[tuple[str, int, str | None]]]] = {}
    for r in records:
        if r.key_unproven or not r.chain:
            continue
        leaf = r.chain[0]
        directory = directory_for(config, leaf)
        if directory is None or leaf.error is not None:
            continue
        found.setdefault(leaf.sha256, (leaf, directory, []))[2].append((r.address, r.port, r.sni))
    return found


async def scan_windows(inventory: Inventory, config: AriConfig, now: datetime) -> list[AriLookup]:
    """Look up, store and judge the windows that are due (module docstring)."""
    records = await trio.to_thread.run_sync(inventory.latest_endpoints)
    candidates = _candidates(records, config)
    due = await trio.to_thread.run_sync(
        renewals.windows_due, inventory.engine, list(candidates), now
    )
    chosen = [sha for sha in candidates if sha in due][:MAX_LOOKUPS]
    verify: str | bool = config.ca_bundle or True
    limiter = trio.CapacityLimiter(CONCURRENCY)
    out: list[AriLookup] = []

    async def one(sha256: str) -> None:
        leaf, directory, endpoints = candidates[sha256]
        ident = cert_id_from_hex(leaf.authority_key_id, leaf.serial)
        point = policy_point(leaf, config.policy)
        if ident is None or point is None:
            out.append(AriLookup(sha256=sha256, early=None, error="no AKI, serial or not_after"))
            return
        try:
            async with limiter:
                with trio.fail_after(30):
                    window = await fetch_window(directory, ident, now=now, verify=verify)
        except (AriError, trio.TooSlowError) as exc:
            out.append(AriLookup(sha256=sha256, early=None, error=str(exc) or "timed out"))
            return
        if window is None:
            out.append(AriLookup(sha256=sha256, early=None, error="the CA runs no ARI"))
            return
        early = window.start < point
        message = (
            f"the CA asks for renewal from {window.start:%Y-%m-%d %H:%M} UTC, before the "
            f"policy's {point:%Y-%m-%d}"
            + (f" (explanation: {window.explanation_url})" if window.explanation_url else "")
        )

        def store() -> None:
            renewals.store_window(
                inventory.engine,
                sha256=sha256,
                directory=directory,
                cert_id=ident,
                start=window.start,
                end=window.end,
                explanation_url=window.explanation_url,
                next_fetch_at=window.next_fetch_at,
                now=now,
                early=early,
                endpoints=endpoints,
                message=message,
            )

        await trio.to_thread.run_sync(store)
        out.append(AriLookup(sha256=sha256, early=early))

    async with trio.open_nursery() as nursery:
        for sha256 in chosen:
            nursery.start_soon(one, sha256)
    for lookup in out:
        if lookup.error is not None:
            log.info("ARI lookup for %s: %s", lookup.sha256[:16], lookup.error)
    return out
