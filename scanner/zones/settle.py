"""Closing dispatched scans by state, from whichever process sees it first.

A scan is finalised -- its findings recorded (``reports.assess.record_scan``, as after a sweep)
and its status set ``finished``, or ``failed`` when a shard failed -- as soon as every shard is
final, whoever notices: the ``shard_finished`` or ``batch`` that settled the last shard, or the
periodic check each ingest worker runs (:class:`Settler`), which also catches a scan whose
settling process died before it could finalise. Finalising is idempotent: a scan no longer
``running`` is left alone, and recording the same findings twice changes nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime

from reports import assess
from scanner.errors import StoreError
from scanner.inventory.store import Inventory

log = logging.getLogger("certscan.ingest")

#: Seconds between two periodic checks (``CERTSCAN_SETTLE_SECONDS`` overrides it).
SETTLE_SECONDS = 30.0


def finalize(inventory: Inventory, scan_id: int) -> str | None:
    """Record the findings and close the scan; None when it was closed already or a shard is
    not final yet."""
    run = inventory.scan(scan_id)
    if run is None or run.status != "running":
        return None
    shards = inventory.shards(scan_id)
    if not shards or any(s.status not in ("done", "failed") for s in shards):
        return None
    failed = any(s.status == "failed" for s in shards)
    criteria = assess.load_criteria(None, env=os.environ)
    assess.record_scan(inventory, scan_id, criteria=criteria, now=datetime.now(UTC))
    status = "failed" if failed else "finished"
    inventory.finish_scan(scan_id, status)
    return status


def settle_all(inventory: Inventory) -> list[tuple[int, str]]:
    """Finalise every running dispatched scan whose shards are all final."""
    closed = []
    for scan_id in inventory.settled_scans():
        status = finalize(inventory, scan_id)
        if status is not None:
            log.info("scan %d %s", scan_id, status)
            closed.append((scan_id, status))
    return closed


def interval() -> float:
    raw = os.environ.get("CERTSCAN_SETTLE_SECONDS", "")
    try:
        value = float(raw) if raw else SETTLE_SECONDS
    except ValueError:
        return SETTLE_SECONDS
    return min(max(value, 0.2), 3600.0)


class Settler:
    """A daemon thread that runs :func:`settle_all` now and every :func:`interval` seconds,
    with its own connection to the inventory; a store error is logged and tried next time."""

    def __init__(self, db_url: str) -> None:
        self._url = db_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="certscan-settle", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        # A fresh connection each time: none is held open while the worker forks.
        while True:
            try:
                with Inventory(self._url) as inventory:
                    settle_all(inventory)
            except StoreError as exc:
                log.error("periodic check: %s", exc)
            except Exception:  # a bug: say so, keep the worker alive
                log.exception("periodic check failed")
            if self._stop.wait(interval()):
                break
