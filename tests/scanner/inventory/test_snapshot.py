"""Reads that span several SELECTs see one snapshot, on SQLite and PostgreSQL: a sweep writing
between them cannot make an endpoint show one observation with another's chain."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from scanner.inventory.store import Inventory
from scanner.lab import certgen
from tests.scanner.inventory.test_store import handshake, target


def test_latest_endpoints_is_one_snapshot(url: str, pki: dict[str, certgen.Issued]) -> None:
    setup = Inventory(url)
    first = setup.start_scan(spec={"n": 1}, total=1)
    setup.record_batch(first, [handshake(target(1), pki["a"])], watermark=1)
    second = setup.start_scan(spec={"n": 2}, total=1)
    reader = Inventory(url)
    writes = []

    def write_in_between(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Right after the read's first SELECT: another scanner stores a newer observation.
        if not writes and "FROM observation" in statement:
            writes.append(statement)
            setup.record_batch(second, [handshake(target(1), pki["b"])], watermark=1)

    sa.event.listen(reader.engine, "after_cursor_execute", write_in_between)
    try:
        (record,) = reader.latest_endpoints()
    finally:
        sa.event.remove(reader.engine, "after_cursor_execute", write_in_between)
    assert writes  # the write did happen in the middle of the read
    assert record.scan_id == first
    assert [c.sha256 for c in record.chain] == [pki["a"].cert.fingerprint(_sha256()).hex()]
    # Read again: now the newer observation, with its own chain.
    (after,) = reader.latest_endpoints()
    assert after.scan_id == second
    assert [c.sha256 for c in after.chain] == [pki["b"].cert.fingerprint(_sha256()).hex()]
    reader.close()
    setup.close()


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()
