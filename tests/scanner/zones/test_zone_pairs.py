"""Per-target names through a zone: ``certscan dispatch`` with ``ADDRESS:PORT=NAME`` and a
``--targets-csv`` file, one real agent and ingest on RabbitMQ, against a strict-SNI server
that answers only for the names given."""

from __future__ import annotations

import hashlib
from pathlib import Path

import trio

from scanner.lab import certgen
from tests import peers
from tests.scanner.zones.conftest import Queues, query, wait_for, workers
from tests.scanner.zones.test_zones import TIMES, dispatch, finished

NAMES = ("alpha.zone.test", "beta.zone.test")


async def test_dispatched_pairs_reach_a_strict_sni_server(
    queues: Queues, pg_url: str, tmp_path: Path
) -> None:
    ca = certgen.make_ca("certscan zone pairs root")
    leaves = {name: certgen.make_leaf(ca, cn=name, dns_names=[name]) for name in NAMES}
    contexts = {name: peers.server_context([leaf]) for name, leaf in leaves.items()}
    handler = peers.tls_server_with_alerts(peers.strict_sni(contexts))
    async with (
        peers.serve("127.98.2.1", handler) as peer,
        workers(queues.broker, tmp_path) as crew,
    ):
        csv_file = tmp_path / "pairs.csv"
        csv_file.write_text(f"address,port,sni\n{peer.address},{peer.port},{NAMES[1]}\n")
        await crew.start("ingest", "--db", pg_url, "--ingest-queue", queues.ingest_queue)
        await crew.start("agent", "--zone", queues.zone)
        pair = f"{peer.address}:{peer.port}={NAMES[0]}"
        sent = await dispatch(queues, pg_url, pair, "--targets-csv", str(csv_file), *TIMES)
        assert sent["targets"] == 2
        with trio.fail_after(60):
            status = await wait_for(
                "the scan to finish", lambda: finished(pg_url, sent["scan_id"]), crew
            )
    assert status == "finished"
    rows = query(
        pg_url,
        "select e.sni, o.status, oc.sha256 from observation o join endpoint e"
        " on e.id = o.endpoint_id join observation_certificate oc"
        " on oc.observation_id = o.id and oc.position = 0 where o.scan_id = :id",
        id=sent["scan_id"],
    )
    assert sorted(rows) == sorted(
        (name, "ok", hashlib.sha256(leaves[name].der).hexdigest()) for name in NAMES
    )
