"""``serve`` stopped mid-job marks only its own sweep's scan interrupted: never a scan another
process is running, nor a dispatched zone scan that its agents and ingest carry on."""

from __future__ import annotations

from pathlib import Path

from exporters.serve.daemon import interrupt_own
from scanner.inventory.store import Inventory, db_url
from scanner.sweep.options import SweepOptions, sweep_spec


def test_only_the_daemons_own_scan_is_interrupted(tmp_path: Path) -> None:
    options = SweepOptions(specs=("127.0.0.1",), ports=(443,), job="lab", db_url="x", db_label="x")
    spec = sweep_spec(options)
    with Inventory(db_url(str(tmp_path / "inv.db"))) as inv:
        older = inv.start_scan(spec=spec, total=1)
        before = older
        foreign = inv.start_scan(spec={"other": "process"}, total=1)
        dispatched = inv.start_scan(spec=spec | {"zone": "dmz"}, total=2, shards=2)
        inv.add_shards(dispatched, [1, 1], zone="dmz")
        own = inv.start_scan(spec=spec, total=1)
        assert interrupt_own(inv, after=before, spec=spec) == [own]
        assert interrupt_own(inv, after=before, spec=spec) == []  # once
        status = {s.id: s.status for s in inv.scans()}
    assert status == {
        older: "running",
        foreign: "running",
        dispatched: "running",
        own: "interrupted",
    }
