"""The /metrics snapshot: served until its TTL or a scan, one build at a time, its build time
exported (exporters.snapshot), over a real inventory."""

from __future__ import annotations

import threading
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from exporters.prometheus import CertscanCollector
from exporters.snapshot import SnapshotCollector
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from tests.exporters.test_prometheus import handshake, record_scan


def test_snapshot_ttl_invalidate_and_one_build_at_a_time(tmp_path: Path) -> None:
    leaf = certgen.make_leaf(certgen.make_ca(), cn="a.example", dns_names=["a.example"])
    inventory = Inventory(db_url(str(tmp_path / "inv.db")))
    record_scan(inventory, [handshake("127.0.9.1", leaf)])
    now = [100.0]
    reader = CertscanCollector(inventory)
    gate, entered = threading.Event(), threading.Event()
    slow = [False]

    def build() -> list[Metric]:
        if slow[0]:
            entered.set()
            assert gate.wait(10)
        return reader.collect()

    snap = SnapshotCollector(build, ttl=30, clock=lambda: now[0])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(snap)
    up = "certscan_endpoint_up"

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value(up, address="127.0.9.1", port="443", sni="") == 1.0
    assert snap.builds == 1
    assert value("certscan_metrics_build_seconds") is not None
    # A new scan: not shown until the TTL passes or the snapshot is invalidated.
    record_scan(inventory, [handshake("127.0.9.2", leaf)])
    now[0] += 10
    assert value(up, address="127.0.9.2", port="443", sni="") is None
    assert value("certscan_metrics_snapshot_age_seconds") == 10.0
    snap.invalidate()
    assert value(up, address="127.0.9.2", port="443", sni="") == 1.0
    assert snap.builds == 2
    # While a (slow) build runs, other scrapes get the old snapshot at once: one build only.
    now[0] += 31
    slow[0] = True
    first = threading.Thread(target=snap.collect)
    first.start()
    assert entered.wait(10)
    for _ in range(3):
        assert value(up, address="127.0.9.2", port="443", sni="") == 1.0
    gate.set()
    first.join(10)
    assert snap.builds == 3
    inventory.close()
