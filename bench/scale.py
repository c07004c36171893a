"""The inventory at scale: fill it with N endpoints and M certificates, then time the readers.

``python -m bench.scale --endpoints 100000 --certs 30000 --db URL`` (``make bench-scale``; not
part of the default ``make bench``, it takes minutes):

1. *fill*: one finished scan of N endpoints (``10.0.0.0`` upwards, port 443, each presenting one
   of M distinct leaves with its expiry spread over a year), written in batches of 2,000 through
   :meth:`scanner.inventory.store.Inventory.record_batch` -- the writer a sweep uses. No packet
   is sent: the outcomes are built in memory. The certificates are :class:`CertInfo` records over
   synthetic DER (unique bytes; nothing here parses them again);
2. *findings*: ``reports.assess.record_scan`` for that scan, as a sweep does after it ends;
3. the readers, each as its own ``certscan`` process under ``/usr/bin/time -v``: the Prometheus
   exposition (``certscan export prometheus``), ``certscan findings``, ``certscan report`` as
   JSON and as CSV.

Each step prints one line: seconds, peak RSS, and the database size after it (SQLite file, or
``pg_database_size``). Runs anywhere the database is reachable; the databases here are local.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from scanner.inventory.store import Inventory
from scanner.models import CertInfo, Handshake, Target

BATCH = 2000
NOW = datetime.now(UTC).replace(microsecond=0)


def cert(n: int) -> CertInfo:
    der = b"certscan-bench-certificate-%d" % n
    return CertInfo(
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        subject=f"CN=host{n}.bench.example",
        subject_cn=f"host{n}.bench.example",
        issuer="CN=certscan bench CA",
        issuer_cn="certscan bench CA",
        serial=f"{n:x}",
        version=3,
        not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=n % 400 - 20),  # some expired, most not
        san_dns=(f"host{n}.bench.example",),
        key_type="EC",
        key_bits=256,
        key_curve="secp256r1",
        signature_algorithm="ecdsa-with-SHA256",
        signature_hash="sha256",
        is_ca=False,
    )


def address(i: int) -> str:
    key = (10 << 24) + i
    return f"{key >> 24}.{(key >> 16) & 255}.{(key >> 8) & 255}.{key & 255}"


def fill(db: str, endpoints: int, certs: int) -> int:
    inventory = Inventory(db)
    try:
        scan = inventory.start_scan(
            spec={"bench": "scale", "endpoints": endpoints}, total=endpoints
        )
        cache: dict[int, CertInfo] = {}
        for start in range(0, endpoints, BATCH):
            items = []
            for i in range(start, min(endpoints, start + BATCH)):
                info = cache.get(i % certs)
                if info is None:
                    info = cache[i % certs] = cert(i % certs)
                outcome = Handshake(
                    target=Target(address=address(i), port=443),
                    started_at=NOW,
                    chain=(info.der,),
                    tls_version="TLSv1.3",
                    cipher="TLS_AES_128_GCM_SHA256",
                )
                items.append((outcome, (info,)))
            inventory.record_batch(
                scan,
                items,
                watermark=start + len(items),
                indices=list(range(start, start + len(items))),
            )
            if len(cache) > 50_000:
                cache.clear()
        inventory.finish_scan(scan, "finished")
        if inventory.engine.dialect.name == "postgresql":  # as autovacuum would, soon after
            with inventory.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        return scan
    finally:
        inventory.close()


def record_findings(db: str, scan: int) -> None:
    from reports import assess

    inventory = Inventory(db)
    try:
        criteria = assess.load_criteria(None, env=os.environ)
        assess.record_scan(inventory, scan, criteria=criteria, now=datetime.now(UTC))
    finally:
        inventory.close()


def pages(db: str, count: int = 20, limit: int = 1000) -> None:
    """Time ``count`` consecutive pages of ``limit`` from the start and from the middle: the
    findings listing (``certscan findings`` reads these) and the API's endpoint pages
    (``/api/v1/endpoints?limit=&cursor=`` serves these). Prints the median and worst page."""
    from scanner.inventory import tables as t
    from scanner.models import Severity

    inventory = Inventory(db)
    try:
        with inventory.engine.connect() as conn:
            f, e = t.FINDING, t.ENDPOINT
            low, high = conn.execute(sa.select(sa.func.min(f.c.id), sa.func.max(f.c.id))).one()
            middle = ((low or 0) + (high or 0)) // 2
            level = conn.execute(
                sa.select(f.c.severity).where(f.c.id >= middle).order_by(f.c.id).limit(1)
            ).scalar()
            top = conn.execute(sa.select(sa.func.max(e.c.id))).scalar() or 0
        finding_times: list[float] = []
        starts: list[tuple[int, int] | None] = [None]
        if level is not None:
            starts.append((int(Severity.parse(level)), middle))
        for cursor in starts:
            for _ in range(count):
                began = time.perf_counter()
                _, cursor = inventory.findings_page(after=cursor, limit=limit)
                finding_times.append(time.perf_counter() - began)
                if cursor is None:
                    break
        endpoint_times: list[float] = []
        for after in (0, top // 2):
            following: int | None = after
            for _ in range(count):
                began = time.perf_counter()
                _, following = inventory.endpoints_page(after=following or 0, limit=limit)
                endpoint_times.append(time.perf_counter() - began)
                if following is None:
                    break
    finally:
        inventory.close()
    for name, times in (("findings pages", finding_times), ("endpoint pages", endpoint_times)):
        times.sort()
        print(
            f"{name + f' ({limit}/page)':<28} median {times[len(times) // 2] * 1000:6.0f} ms"
            f"  worst {times[-1] * 1000:6.0f} ms  ({len(times)} pages, from the start and"
            " the middle)",
            flush=True,
        )


def snapshot(db: str, scrapes: int = 3) -> None:
    """What ``certscan serve`` does for ``/metrics``: build the snapshot once (the first
    scrape), then serve ``scrapes`` scrapes from it; prints the build and the slowest scrape."""
    from prometheus_client import CollectorRegistry, generate_latest

    from exporters.prometheus import CertscanCollector
    from exporters.snapshot import SnapshotCollector

    inventory = Inventory(db)
    try:
        collector = SnapshotCollector(CertscanCollector(inventory).collect, ttl=3600)
        registry = CollectorRegistry()
        registry.register(collector)
        began = time.perf_counter()
        size = len(generate_latest(registry))
        first = time.perf_counter() - began
        worst = 0.0
        for _ in range(scrapes):
            began = time.perf_counter()
            generate_latest(registry)
            worst = max(worst, time.perf_counter() - began)
    finally:
        inventory.close()
    print(
        f"{'metrics snapshot':<28} first scrape (build) {first:6.1f} s, then worst of {scrapes}"
        f" {worst:6.2f} s ({size / 2**20:.0f} MB of exposition)",
        flush=True,
    )


def db_size(db: str) -> int:
    url = sa.make_url(db if "://" in db else f"sqlite:///{db}")
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(
                conn.exec_driver_sql("select pg_database_size(current_database())").scalar_one()
            )
    finally:
        engine.dispose()


def timed(argv: list[str], *, show: bool = False) -> tuple[float, int, int]:
    """Run ``argv`` under ``time -v``: (seconds, peak RSS KiB, exit code); its output shown
    with ``show``, else dropped."""
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-v", *argv],
        stdout=None if show else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=3600,
    )
    seconds = time.monotonic() - started
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return seconds, int(found[1]) if found else -1, done.returncode


def line(step: str, seconds: float, rss_kib: int, db: str, note: str = "") -> None:
    size = db_size(db) / 2**20
    rss = f"{rss_kib / 1024:.0f} MB" if rss_kib >= 0 else "?"
    print(f"{step:<28} {seconds:8.1f} s  RSS {rss:>7}  db {size:8.1f} MB  {note}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="inventory URL or SQLite path (made anew)")
    parser.add_argument("--endpoints", type=int, default=100_000)
    parser.add_argument("--certs", type=int, default=None, help="default: 30%% of --endpoints")
    parser.add_argument(
        "--step", choices=("all", "fill", "findings", "pages", "snapshot"), default="all"
    )
    parser.add_argument("--scan", type=int, default=1)
    parser.add_argument(
        "--skip", action="append", default=[], metavar="STEP",
        help="leave out a step by the start of its name (e.g. 'certscan findings'); repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)
    certs = args.certs or max(1, args.endpoints * 3 // 10)
    if args.step == "fill":  # run as a child, so its peak RSS is its own
        fill(args.db, args.endpoints, certs)
        return 0
    if args.step == "findings":
        record_findings(args.db, args.scan)
        return 0
    if args.step == "pages":
        pages(args.db)
        return 0
    if args.step == "snapshot":
        snapshot(args.db)
        return 0
    me = [sys.executable, "-m", "bench.scale", "--db", args.db]
    scratch = Path(tempfile.mkdtemp(prefix="certscan-scale-"))  # outputs, deleted at the end
    certscan = [sys.executable, "-m", "scanner"]
    print(f"inventory: {args.endpoints:,} endpoints, {certs:,} certificates, {args.db}")
    steps = [
        ("fill (record_batch)", [*me, "--step", "fill", "--endpoints", str(args.endpoints),
                                 "--certs", str(certs)]),
        ("record findings", [*me, "--step", "findings"]),
        ("metrics exposition", [*certscan, "export", "prometheus", "-o", str(scratch / "m.prom"),
                                "--db", args.db]),
        ("metrics snapshot", [*me, "--step", "snapshot"]),
        ("pages", [*me, "--step", "pages"]),
        ("certscan findings", [*certscan, "findings", "--db", args.db]),
        ("certscan findings --json", [*certscan, "findings", "--json", "--db", args.db]),
        ("certscan findings --limit", [*certscan, "findings", "--limit", "1000", "--db", args.db]),
        ("report json", [*certscan, "report", "--format", "json", "-o", str(scratch / "r.json"),
                         "--db", args.db]),
        ("report csv", [*certscan, "report", "--format", "csv", "-o", str(scratch / "r.csv"),
                        "--db", args.db]),
    ]  # fmt: skip
    for step, command in steps:
        if any(step.startswith(skipped) for skipped in args.skip):
            continue
        seconds, rss, code = timed(command, show=step in ("pages", "metrics snapshot"))
        line(step, seconds, rss, args.db, "" if code in (0, 1) else f"exit {code}")
    shutil.rmtree(scratch, ignore_errors=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"(this driver's own peak RSS: {own / 1024:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
