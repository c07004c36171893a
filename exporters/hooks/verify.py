"""Verify after renewal: re-probe every endpoint that served the old certificate or its key
until each serves the new one.

Theory of operation
-------------------
A renewal is done when the servers present it, not when a command exits 0. After a hook run
reports a renewal (the ``acme`` action's new certificate, or a ``command`` hook such as certbot
exiting 0), :func:`after_renewal` lists the endpoints to check -- those whose latest observation
presented the old certificate, and those presenting another certificate with the old key (both
with the key proven) -- records them (:mod:`scanner.inventory.renewals`) and re-probes them with
the engine directly: at once, then up to :data:`RETRIES` more times spread over the hook's
``verify_within`` (at most :data:`RETRY_SPACING_CAP` apart), stopping as soon as every endpoint
is deployed or none answers. Every probe that finds the old certificate opens (or keeps open)
``renewal_not_deployed`` on that endpoint, so a ``deploy`` that exits 0 without reloading the
server is caught by the first re-probe. :func:`verify_open` re-probes, once each, the endpoints
of every run still open (not all deployed, old certificate unexpired): the sweep, ``certscan
hooks run`` and the ``serve`` daemon call it after their hooks, so the run stays open until
every endpoint serves the new certificate or the old one expires.

"Deployed" means serving the new certificate when the action named it (``new_sha256``), else
no longer serving the old one. An endpoint that does not answer keeps its state. All traffic is
to the endpoints already in the inventory; each probe runs under the engine's own deadlines.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import trio

from scanner.engine.crew import probe
from scanner.inventory import hooks as store_hooks
from scanner.inventory import renewals
from scanner.inventory.read import EndpointRecord
from scanner.inventory.store import Inventory
from scanner.models import EngineLimits, Handshake, Target

__all__ = ["PROBE_LIMITS", "Verified", "after_renewal", "endpoints_to_check", "verify_open"]

log = logging.getLogger("certscan.hooks")
Address = tuple[str, int, str | None]

#: The engine's bounds for one re-probe.
PROBE_LIMITS: Final = EngineLimits(connect_timeout=3.0, handshake_timeout=5.0, target_deadline=8.0)
#: Re-probes after the first, within ``verify_within``.
RETRIES: Final = 3
RETRY_SPACING_CAP: Final = 5.0
_CONCURRENCY: Final = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    """Where one run's renewal stands after a re-probe."""

    run_id: int
    hook: str
    deployed: int
    total: int
    answered: int = 0  # endpoints that completed a handshake in this re-probe


def endpoints_to_check(records: Sequence[EndpointRecord], old_sha256: str) -> list[Address]:
    """The endpoints whose latest chain presents ``old_sha256``, or another leaf with its key
    (pure; only chains whose key was proven)."""
    leaves = [
        (r, chain[0])
        for r in records
        if not r.key_unproven
        for chain in (r.chain, *r.alt_chains)
        if chain
    ]
    spkis = {leaf.spki_sha256 for _, leaf in leaves if leaf.sha256 == old_sha256}
    spkis.discard(None)
    found = {
        (r.address, r.port, r.sni): None
        for r, leaf in leaves
        if leaf.sha256 == old_sha256 or leaf.spki_sha256 in spkis
    }
    return list(found)


async def _served(addresses: Sequence[Address], limits: EngineLimits) -> dict[Address, str | None]:
    """The leaf sha256 each endpoint serves now (None: no handshake)."""
    out: dict[Address, str | None] = {}
    limiter = trio.CapacityLimiter(_CONCURRENCY)

    async def one(address: Address) -> None:
        async with limiter:
            a, p, n = address
            outcome = await probe(Target(address=a, port=p, sni=n), limits)
        chain = outcome.chain if isinstance(outcome, Handshake) and outcome.key_proven else ()
        out[address] = hashlib.sha256(chain[0]).hexdigest() if chain else None

    async with trio.open_nursery() as nursery:
        for address in addresses:
            nursery.start_soon(one, address)
    return out


async def _check(
    inventory: Inventory, check: renewals.RenewalCheck, now: datetime, limits: EngineLimits
) -> Verified:
    waiting = [a for a, status in check.endpoints.items() if status != renewals.DEPLOYED]
    served = await _served(waiting, limits)
    deployed, total = await trio.to_thread.run_sync(
        lambda: renewals.update(inventory.engine, check, served, now=now)
    )
    answered = sum(1 for sha in served.values() if sha is not None)
    return Verified(
        run_id=check.run_id, hook=check.hook, deployed=deployed, total=total, answered=answered
    )


async def _open(inventory: Inventory, now: datetime, run_id: int) -> renewals.RenewalCheck | None:
    checks = await trio.to_thread.run_sync(renewals.open_runs, inventory.engine, now)
    return next((c for c in checks if c.run_id == run_id), None)


async def after_renewal(
    inventory: Inventory,
    *,
    run_id: int,
    old_sha256: str,
    also: Sequence[Address],
    verify_within: float,
    now: datetime,
    limits: EngineLimits = PROBE_LIMITS,
) -> Verified | None:
    """Start verifying run ``run_id`` (``also``: endpoints the hook saw presenting it) and
    re-probe until deployed everywhere or the retries are spent; None when there is nothing
    to check."""
    records = await trio.to_thread.run_sync(inventory.latest_endpoints)
    addresses = list(dict.fromkeys([*also, *endpoints_to_check(records, old_sha256)]))
    if not addresses:
        return None
    until = now + timedelta(seconds=verify_within)
    await trio.to_thread.run_sync(
        lambda: renewals.begin(inventory.engine, run_id, addresses, verify_until=until)
    )
    spacing = min(verify_within / (RETRIES + 1), RETRY_SPACING_CAP)
    result: Verified | None = None
    for attempt in range(RETRIES + 1):
        check = await _open(inventory, now, run_id)
        if check is None:
            break  # every endpoint deployed
        result = await _check(inventory, check, now, limits)
        if result.deployed == result.total or not result.answered:
            break
        if attempt == RETRIES or spacing <= 0:
            break
        await trio.sleep(spacing)
    if result is None:
        total = len(addresses)
        result = Verified(run_id=run_id, hook="", deployed=total, total=total)
    return result


async def verify_open(
    inventory: Inventory,
    now: datetime,
    *,
    skip: Collection[int] = (),
    limits: EngineLimits = PROBE_LIMITS,
) -> list[Verified]:
    """Re-probe, once each, the endpoints of every renewal still being verified (but the
    runs in ``skip``)."""
    checks = await trio.to_thread.run_sync(renewals.open_runs, inventory.engine, now)
    out: list[Verified] = []
    for check in (c for c in checks if c.run_id not in skip):
        try:
            out.append(await _check(inventory, check, now, limits))
        except Exception:  # one broken check never stops the others
            log.warning("verifying hook run %d failed", check.run_id, exc_info=True)
    return out


#: The name the history shows for a renewal seen by a sweep rather than done by a hook.
SWEEP_HOOK: Final = "(certificate_changed)"


async def verify_changes(inventory: Inventory, now: datetime) -> list[Verified]:
    """A sweep saw ``certificate_changed``: the endpoints still serving the old certificate or
    its key are re-probed like after a hook's renewal (once per old certificate)."""
    changed, previous, records, runs = await trio.to_thread.run_sync(
        lambda: (
            [f for f in inventory.findings(open_only=True) if f.kind == "certificate_changed"],
            inventory.previous_leaves(),
            inventory.latest_endpoints(),
            store_hooks.latest(inventory.engine, [SWEEP_HOOK]),
        )
    )
    out: list[Verified] = []
    done = {sha for _, sha in runs}
    for finding in changed:
        where = (finding.address, finding.port, finding.sni)
        old = previous.get(where)
        if old is None or old == finding.sha256 or old in done:
            continue
        others = [a for a in endpoints_to_check(records, old) if a != where]
        if not others:
            continue
        done.add(old)  # one episode per old certificate
        run_id = await trio.to_thread.run_sync(_record_change, inventory, old, where, now)
        verified = await after_renewal(
            inventory, run_id=run_id, old_sha256=old, also=[where], verify_within=0, now=now
        )
        if verified is not None:
            out.append(verified)
    return out


def _record_change(inventory: Inventory, old: str, where: Address, now: datetime) -> int:
    """A finished run of :data:`SWEEP_HOOK` for the change, to hang the verification on."""
    address, port, sni = where
    engine = inventory.engine
    run_id = store_hooks.create(
        engine,
        hook=SWEEP_HOOK,
        sha256=old,
        address=address,
        port=port,
        sni=sni,
        kind="certificate_changed",
        status=store_hooks.RUNNING,
        now=now,
    )
    store_hooks.finish(
        engine,
        run_id,
        ok=True,
        exit_status=None,
        output_tail=f"a sweep saw {address}:{port} present a new certificate",
        new_sha256=None,
        now=now,
        next_attempt_at=None,
    )
    return run_id


def deployed_line(progress: Mapping[int, tuple[int, int]], run_id: int) -> str:
    """``deployed on N of M endpoints`` for a run being verified, else '' (pure)."""
    if run_id not in progress:
        return ""
    deployed, total = progress[run_id]
    return f"deployed on {deployed} of {total} endpoint{'s' if total != 1 else ''}"
