"""The Prometheus collector over real inventories: SQLite files and fresh PostgreSQL databases,
filled through ``Inventory.start_scan`` + ``record_batch`` with certificates built by
``scanner.lab.certgen`` and parsed by ``scanner.parse``; each test reads a fresh registry."""

from __future__ import annotations

import hashlib
import subprocess
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters.prometheus import LABEL_LIMIT, CertscanCollector, build_metrics, label_value
from scanner.errors import StoreError
from scanner.inventory import metrics as store_metrics
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.models import (
    CertInfo,
    FailureKind,
    Finding,
    Handshake,
    Outcome,
    ScanFailure,
    Severity,
    Target,
)
from scanner.parse import parse_certificate
from tests.conftest import require_tool

T0 = datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

Item = tuple[Outcome, tuple[CertInfo, ...]]


# --- helpers (also used by test_export_cli) -------------------------------------------------


def handshake(address: str, *certs: certgen.Issued, port: int = 443, at: datetime = T0) -> Item:
    chain = tuple(c.der for c in certs)
    outcome = Handshake(
        target=Target(address=address, port=port, sni=None),
        started_at=at,
        chain=chain,
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
    )
    return outcome, tuple(parse_certificate(der) for der in chain)


def failure(
    address: str,
    kind: FailureKind = FailureKind.RESET,
    *,
    port: int = 443,
    at: datetime = T0,
    connected: bool = True,
) -> Item:
    target = Target(address=address, port=port, sni=None)
    outcome = ScanFailure(
        target=target, started_at=at, kind=kind, detail=f"{kind.value}!", connected=connected
    )
    return outcome, ()


def record_scan(
    inventory: Inventory, items: Sequence[Item], *, finish: bool = True, job: str | None = None
) -> int:
    spec: dict[str, object] = {"targets": [o.target.label() for o, _ in items]}
    if job is not None:
        spec["job"] = job
    scan = inventory.start_scan(spec=spec, total=len(items))
    for start in range(0, len(items), 500):
        inventory.record_batch(scan, items[start : start + 500], watermark=0)
    if finish:
        inventory.finish_scan(scan, "finished")
    return scan


#: One shard of :func:`record_sharded_scan`: its final status, what it stored, its total.
ShardPlan = tuple[str, Sequence[Item], int]


def record_sharded_scan(
    inventory: Inventory,
    shards: Sequence[ShardPlan],
    *,
    job: str | None = None,
    zone: str | None = None,
    finish: str | None = None,
    error: str = "gave up",
) -> int:
    """A sharded scan as local workers record one: each shard not ``queued`` is marked running
    (by agent ``host/<shard>``), stores its items and is then marked with its status (``error``
    for a failed one). ``finish``: the scan's final status, None leaves it running."""
    spec: dict[str, object] = {
        "targets": [o.target.label() for _, items, _ in shards for o, _ in items]
    }
    if job is not None:
        spec["job"] = job
    if zone is not None:
        spec["zone"] = zone
    totals = [total for _, _, total in shards]
    scan = inventory.start_scan(spec=spec, total=sum(totals), shards=len(shards))
    inventory.add_shards(scan, totals, zone=zone)
    for number, (status, items, _) in enumerate(shards):
        if status == "queued":
            continue
        inventory.mark_shard(scan, number, "running", agent=f"host/{number}")
        if items:
            indices = list(range(len(items)))
            inventory.record_batch(scan, items, watermark=len(items), indices=indices, shard=number)
        if status != "running":
            failed = error if status == "failed" else None
            inventory.mark_shard(scan, number, status, error=failed)
    if finish is not None:
        inventory.finish_scan(scan, finish)
    return scan


def scrape(inventory: Inventory) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CertscanCollector(inventory))
    return registry


def endpoint(address: str, port: int = 443, sni: str = "") -> dict[str, str]:
    return {"address": address, "port": str(port), "sni": sni}


def cert_labels(address: str, leaf: certgen.Issued, port: int = 443) -> dict[str, str]:
    return endpoint(address, port) | {
        "sha256": hashlib.sha256(leaf.der).hexdigest(),
        "position": "leaf",
    }


def expiry(leaf: certgen.Issued) -> float:
    return leaf.cert.not_valid_after_utc.timestamp()


def promtool_accepts(exposition: bytes) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def self_signed(cn: str, *, sans: Sequence[str] = ("hostile.example",)) -> certgen.Issued:
    """A certificate whose subject and issuer CN are ``cn`` verbatim: no length or character
    checks, as an attacker's certificate would have."""
    key = certgen.make_key("ec")
    with warnings.catch_warnings():  # cryptography warns about a CN over 64 characters
        warnings.simplefilter("ignore", UserWarning)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0 - 10 * HOUR)
        .not_valid_after(T0 + 1000 * HOUR)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    )
    return certgen.Issued(builder.sign(key, hashes.SHA256()), key)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def inventory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inventory]:
    """An empty inventory: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = db_url(str(tmp_path / "inventory.db"))
    else:
        url = str(request.getfixturevalue("pg_url"))
    inv = Inventory(url)
    try:
        yield inv
    finally:
        inv.close()


@pytest.fixture
def sqlite_inventory(tmp_path: Path) -> Iterator[Inventory]:
    inv = Inventory(db_url(str(tmp_path / "inventory.db")))
    try:
        yield inv
    finally:
        inv.close()


@pytest.fixture(scope="module")
def pki() -> dict[str, certgen.Issued]:
    root = certgen.make_ca()
    inter = certgen.make_ca("certscan test intermediate", issuer=root)
    return {
        "inter": inter,
        "a": certgen.make_leaf(inter, cn="a.example", dns_names=["a.example"], days=20),
        "a2": certgen.make_leaf(inter, cn="a.example", dns_names=["a.example"], days=90),
        "b": certgen.make_leaf(inter, cn="b.example", dns_names=["b.example"], days=5),
        "rsa": certgen.make_leaf(
            inter, cn="rsa.example", key=certgen.make_key("rsa", 2048), dns_names=["rsa.example"]
        ),
    }


# --- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("plain.example", "plain.example"),
        ("Ünïcødé 証明書", "Ünïcødé 証明書"),
        ("a\nb\rc\x00d\x1be\x7ff", "a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf"),
        (
            "bidi\u202eevil\u2028line\u2029para\u200bzw",
            "bidi\ufffdevil\ufffdline\ufffdpara\ufffdzw",
        ),
        ("lone \udc80 surrogate", "lone \ufffd surrogate"),
        ('quote " and \\ backslash', 'quote " and \\ backslash'),  # the writer escapes these
        ("x" * LABEL_LIMIT, "x" * LABEL_LIMIT),
        ("x" * (LABEL_LIMIT + 1), "x" * (LABEL_LIMIT - 1) + "…"),
        (2048, "2048"),
    ],
)
def test_label_value(raw: object, expected: str) -> None:
    assert label_value(raw) == expected
    assert len(label_value(raw)) <= LABEL_LIMIT


def test_empty_inventory_has_no_series_and_valid_exposition(sqlite_inventory: Inventory) -> None:
    registry = scrape(sqlite_inventory)
    exposition = generate_latest(registry)
    samples = [s for family in registry.collect() for s in family.samples]
    assert samples == []
    promtool_accepts(exposition)


def test_registering_reads_nothing_and_a_broken_database_fails_the_scrape(
    sqlite_inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    record_scan(sqlite_inventory, [handshake("127.0.9.1", pki["a"])])
    with sqlite_inventory.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE observation_certificate"))
    registry = scrape(sqlite_inventory)  # describe() returns [] and reads nothing
    with pytest.raises(StoreError, match="cannot read metrics"):
        generate_latest(registry)


# --- the series ---------------------------------------------------------------------------------


def test_endpoint_and_certificate_series_follow_the_scans(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    first = record_scan(
        inventory,
        [
            handshake("127.0.9.1", pki["a"], pki["inter"]),
            handshake("127.0.9.2", pki["b"], pki["inter"]),
            failure("127.0.9.3", FailureKind.NOT_TLS),  # answered, never with a chain
            failure("127.0.9.4", FailureKind.REFUSED, connected=False),  # not stored at all
        ],
    )
    # The second scan: a is renewed, b fails (its certificate's series stay), rsa is new.
    later = T0 + HOUR
    second = record_scan(
        inventory,
        [
            handshake("127.0.9.1", pki["a2"], pki["inter"], at=later),
            failure("127.0.9.2", FailureKind.TIMEOUT, at=later, connected=False),
            failure("127.0.9.3", FailureKind.NOT_TLS, at=later),
            handshake("127.0.9.5", pki["rsa"], pki["inter"], port=8443, at=later),
        ],
    )
    registry = scrape(inventory)
    value = registry.get_sample_value

    assert value("certscan_endpoint_up", endpoint("127.0.9.1")) == 1
    assert value("certscan_endpoint_up", endpoint("127.0.9.2")) == 0
    assert value("certscan_endpoint_up", endpoint("127.0.9.3")) == 0
    assert value("certscan_endpoint_up", endpoint("127.0.9.4")) is None
    assert value("certscan_endpoint_up", endpoint("127.0.9.5", 8443)) == 1
    down = endpoint("127.0.9.2") | {"status": "timeout"}
    assert value("certscan_endpoint_error", down) == 1
    assert value("certscan_endpoint_error", endpoint("127.0.9.3") | {"status": "not_tls"}) == 1
    assert value("certscan_endpoint_error", endpoint("127.0.9.1") | {"status": "ok"}) is None

    not_after = "certscan_certificate_not_after_timestamp_seconds"
    assert value(not_after, cert_labels("127.0.9.1", pki["a2"])) == expiry(pki["a2"])
    assert value(not_after, cert_labels("127.0.9.1", pki["a"])) is None  # replaced
    assert value(not_after, cert_labels("127.0.9.2", pki["b"])) == expiry(pki["b"])  # kept
    assert value(not_after, cert_labels("127.0.9.5", pki["rsa"], 8443)) == expiry(pki["rsa"])
    not_before = pki["b"].cert.not_valid_before_utc.timestamp()
    b_labels = cert_labels("127.0.9.2", pki["b"])
    assert value("certscan_certificate_not_before_timestamp_seconds", b_labels) == not_before

    last_seen = "certscan_endpoint_last_seen_timestamp_seconds"
    assert value(last_seen, endpoint("127.0.9.1")) == later.timestamp()
    assert value(last_seen, endpoint("127.0.9.2")) == T0.timestamp()  # when it last had a chain
    assert value(last_seen, endpoint("127.0.9.3")) is None

    info = {
        "sha256": hashlib.sha256(pki["rsa"].der).hexdigest(),
        "subject_cn": "rsa.example",
        "issuer_cn": "certscan test intermediate",
        "serial": format(pki["rsa"].cert.serial_number, "x"),
        "key_type": "RSA",
        "key_bits": "2048",
        "signature_hash": "sha256",
    }
    assert value("certscan_certificate_info", info) == 1
    families = {f.name: f for f in registry.collect()}
    info_hashes = {s.labels["sha256"] for s in families["certscan_certificate_info"].samples}
    assert info_hashes == {hashlib.sha256(pki[k].der).hexdigest() for k in ("a2", "b", "rsa")}

    runs = {r.id: r for r in inventory.scans()}
    finished = runs[second].finished_at
    assert finished is not None
    assert runs[first].finished_at is not None
    job = {"job": "sweep"}
    assert value("certscan_last_scan_success_timestamp_seconds", job) == finished.timestamp()
    duration = value("certscan_scan_duration_seconds", job)
    assert duration == pytest.approx((finished - runs[second].started_at).total_seconds())
    assert value("certscan_scan_endpoints", job | {"status": "ok"}) == 2
    assert value("certscan_scan_endpoints", job | {"status": "failed"}) == 2
    promtool_accepts(generate_latest(registry))


def test_unfinished_scan_is_not_the_last_success(
    sqlite_inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    done = record_scan(sqlite_inventory, [handshake("127.0.9.1", pki["a"])])
    record_scan(sqlite_inventory, [handshake("127.0.9.1", pki["a"], at=T0 + HOUR)], finish=False)
    finished = {r.id: r for r in sqlite_inventory.scans()}[done].finished_at
    assert finished is not None
    registry = scrape(sqlite_inventory)
    success = registry.get_sample_value(
        "certscan_last_scan_success_timestamp_seconds", {"job": "sweep"}
    )
    assert success == finished.timestamp()


def test_scan_metrics_per_serve_job(
    sqlite_inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    record_scan(sqlite_inventory, [handshake("127.0.9.1", pki["a"])], job="dmz")
    record_scan(sqlite_inventory, [handshake("127.0.9.2", pki["a"])], job="office")
    record_scan(sqlite_inventory, [failure("127.0.9.3", connected=True)], job="dmz")
    record_scan(sqlite_inventory, [handshake("127.0.9.4", pki["a"])])  # a plain sweep
    registry = scrape(sqlite_inventory)

    def ok(job: str) -> float | None:
        return registry.get_sample_value("certscan_scan_endpoints", {"job": job, "status": "ok"})

    assert (ok("dmz"), ok("office"), ok("sweep")) == (0.0, 1.0, 1.0)  # the latest of each job
    assert (
        registry.get_sample_value("certscan_scan_endpoints", {"job": "dmz", "status": "failed"})
        == 1.0
    )
    promtool_accepts(generate_latest(registry))


def test_findings_counts_and_problem_reasons(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    items = [
        handshake("127.0.9.1", pki["a"], pki["inter"]),
        handshake("127.0.9.2", pki["b"], pki["inter"]),
    ]
    scan = record_scan(inventory, items)
    a_sha, b_sha = (hashlib.sha256(pki[k].der).hexdigest() for k in ("a", "b"))

    def finding(address: str, kind: str, severity: Severity, sha256: str | None) -> Finding:
        return Finding(
            kind=kind, severity=severity, message=f"{kind} on {address}", address=address,
            port=443, sni=None, sha256=sha256,
        )  # fmt: skip

    evaluated = [("127.0.9.1", 443, None), ("127.0.9.2", 443, None)]
    inventory.record_findings(
        scan,
        [
            finding("127.0.9.1", "untrusted_root", Severity.HIGH, a_sha),
            finding("127.0.9.1", "incomplete_chain", Severity.MEDIUM, None),
            finding("127.0.9.1", "weak_key", Severity.HIGH, a_sha),
            finding("127.0.9.2", "expiring", Severity.CRITICAL, b_sha),
            finding("127.0.9.2", "hostname_mismatch", Severity.HIGH, b_sha),
        ],
        evaluated=evaluated,
        now=T0,
    )
    # Evaluated again: b's mismatch is resolved, a's findings stay open.
    inventory.record_findings(
        scan,
        [
            finding("127.0.9.1", "untrusted_root", Severity.HIGH, a_sha),
            finding("127.0.9.1", "incomplete_chain", Severity.MEDIUM, None),
            finding("127.0.9.1", "weak_key", Severity.HIGH, a_sha),
            finding("127.0.9.2", "expiring", Severity.CRITICAL, b_sha),
        ],
        evaluated=evaluated,
        now=T0 + HOUR,
    )
    registry = scrape(inventory)
    families = {f.name: f for f in registry.collect()}
    counts = {
        (s.labels["kind"], s.labels["severity"]): s.value
        for s in families["certscan_findings"].samples
    }
    assert counts == {
        ("untrusted_root", "high"): 1,
        ("incomplete_chain", "medium"): 1,
        ("weak_key", "high"): 1,
        ("expiring", "critical"): 1,
    }
    reasons = {
        (s.labels["address"], s.labels["sha256"], s.labels["reason"])
        for s in families["certscan_certificate_error"].samples
    }
    assert reasons == {
        ("127.0.9.1", a_sha, "untrusted_root"),
        ("127.0.9.1", "", "incomplete_chain"),
    }
    # A certificate that fails verification keeps its expiry series.
    not_after = "certscan_certificate_not_after_timestamp_seconds"
    assert registry.get_sample_value(not_after, cert_labels("127.0.9.1", pki["a"])) == expiry(
        pki["a"]
    )


def test_unparsable_leaf_keeps_its_series_with_the_reason(sqlite_inventory: Inventory) -> None:
    der = b"\x30\x03\x02\x01\x00 not a certificate"
    info = parse_certificate(der)
    assert info.error is not None
    outcome = Handshake(
        target=Target(address="127.0.9.7", port=443),
        started_at=T0,
        chain=(der,),
        tls_version="TLSv1.2",
        cipher="ECDHE-RSA-AES128-GCM-SHA256",
    )
    record_scan(sqlite_inventory, [(outcome, (info,))])
    registry = scrape(sqlite_inventory)
    value = registry.get_sample_value
    labels = endpoint("127.0.9.7")
    sha = hashlib.sha256(der).hexdigest()
    assert value("certscan_endpoint_up", labels) == 1
    assert value("certscan_endpoint_last_seen_timestamp_seconds", labels) == T0.timestamp()
    reason = labels | {"sha256": sha, "reason": "unparsable_certificate"}
    assert value("certscan_certificate_error", reason) == 1
    empty = dict.fromkeys(("subject_cn", "issuer_cn", "serial", "key_type", "key_bits"), "")
    assert value("certscan_certificate_info", {"sha256": sha, "signature_hash": ""} | empty) == 1
    leaf_labels = labels | {"sha256": sha, "position": "leaf"}
    assert value("certscan_certificate_not_after_timestamp_seconds", leaf_labels) is None
    promtool_accepts(generate_latest(registry))


EVIL = '"}\n# HELP evil 1\ncertscan_endpoint_up{address="6.6.6.6"} 1\n'


def test_hostile_label_values_are_escaped_and_bounded(sqlite_inventory: Inventory) -> None:
    cn = EVIL + "\x00\x1b[2J\r\u202e\u2028\\" + "é" * 300
    sans = [f"san-{i:04d}.hostile.example" for i in range(300)]
    hostile = self_signed(cn, sans=sans)
    parsed = parse_certificate(hostile.der)
    assert parsed.subject_cn == cn  # the certificate says exactly this
    record_scan(sqlite_inventory, [handshake("127.0.9.66", hostile)])
    exposition = generate_latest(scrape(sqlite_inventory))
    text = exposition.decode("utf-8")

    # Nothing the certificate says starts a line: every line is certscan's own.
    for line in text.splitlines():
        assert line.startswith(("# HELP certscan_", "# TYPE certscan_", "certscan_")), line
    assert "6.6.6.6" in text  # inside a quoted, escaped label value...
    assert 'address="6.6.6.6"' not in text  # ...never as a label of its own
    assert "san-0001" not in text  # no SAN anywhere, let alone one series each

    families = {f.name: f for f in text_string_to_metric_families(text)}
    [info] = families["certscan_certificate_info"].samples
    expected = (
        '"}\ufffd# HELP evil 1\ufffdcertscan_endpoint_up{address="6.6.6.6"} 1\ufffd'
        "\ufffd\ufffd[2J\ufffd\ufffd\ufffd\\"
    )
    assert info.labels["subject_cn"].startswith(expected)
    assert info.labels["subject_cn"] == info.labels["issuer_cn"]
    assert len(info.labels["subject_cn"]) == LABEL_LIMIT
    assert info.labels["subject_cn"].endswith("é…")
    for family in families.values():
        for sample in family.samples:
            assert all(len(v) <= LABEL_LIMIT for v in sample.labels.values())
    promtool_accepts(exposition)


def test_two_thousand_endpoints(inventory: Inventory) -> None:
    """Every endpoint's series, checked one by one: pairs of endpoints share a certificate, and
    every tenth endpoint answered without a chain."""
    ca = certgen.make_ca()
    key = certgen.make_key("ec")
    leaves = [
        certgen.make_leaf(
            ca,
            cn=f"h{i}.example",
            dns_names=[f"h{i}.example"],
            key=key,
            not_before=T0 - 24 * HOUR,
            not_after=T0 + (i + 1) * HOUR,
        )
        for i in range(1000)
    ]
    items: list[Item] = []
    expected_up: dict[tuple[str, str], float] = {}
    expected_not_after: dict[tuple[str, str, str], float] = {}
    for i in range(2000):
        address = f"127.1.{i // 200}.{i % 200 + 1}"
        port = 443 + i % 2
        if i % 10 == 9:
            items.append(failure(address, FailureKind.PROTOCOL_ERROR, port=port))
            expected_up[(address, str(port))] = 0.0
            continue
        leaf = leaves[i // 2]
        items.append(handshake(address, leaf, port=port))
        expected_up[(address, str(port))] = 1.0
        sha = hashlib.sha256(leaf.der).hexdigest()
        expected_not_after[(address, str(port), sha)] = expiry(leaf)
    record_scan(inventory, items)

    snapshot = store_metrics.read_snapshot(inventory.engine, label=inventory.label)
    assert len(snapshot.endpoints) == 2000
    families = {f.name: f for f in build_metrics(snapshot)}
    up = {
        (s.labels["address"], s.labels["port"]): s.value
        for s in families["certscan_endpoint_up"].samples
    }
    assert up == expected_up
    not_after = {
        (s.labels["address"], s.labels["port"], s.labels["sha256"]): s.value
        for s in families["certscan_certificate_not_after_timestamp_seconds"].samples
    }
    assert not_after == expected_not_after
    assert len(families["certscan_certificate_info"].samples) == 1000
    assert len(families["certscan_endpoint_error"].samples) == 200
    registry = scrape(inventory)
    assert registry.get_sample_value(
        "certscan_scan_endpoints", {"job": "sweep", "status": "ok"}
    ) == pytest.approx(1800)


# --- sharded scans ------------------------------------------------------------------------------


def _states(registry: CollectorRegistry, job: str) -> dict[str, float | None]:
    names = ("queued", "running", "done", "failed", "interrupted")
    return {
        state: registry.get_sample_value("certscan_scan_shards", {"job": job, "state": state})
        for state in names
    }


def test_shard_states_and_progress_of_the_latest_sharded_scan(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    # an older sharded scan of the job, finished: superseded by the running one below
    record_sharded_scan(
        inventory, [("done", [handshake("127.0.9.1", pki["a"])], 1)], job="dmz", finish="finished"
    )
    running = [
        ("done", [handshake("127.0.9.2", pki["a"]), failure("127.0.9.3")], 2),
        ("running", [handshake("127.0.9.4", pki["b"])], 3),
        ("failed", [], 2),
        ("queued", [], 2),
    ]
    record_sharded_scan(inventory, running, job="dmz", zone="dmz")
    record_scan(inventory, [handshake("127.0.9.5", pki["a"])], job="office")  # not sharded
    registry = scrape(inventory)
    assert _states(registry, "dmz") == {
        "queued": 1.0,
        "running": 1.0,
        "done": 1.0,
        "failed": 1.0,
        "interrupted": 0.0,
    }
    assert registry.get_sample_value("certscan_scan_progress_ratio", {"job": "dmz"}) == 3 / 9
    assert registry.get_sample_value("certscan_scan_progress_ratio", {"job": "office"}) == 1.0
    assert _states(registry, "office")["done"] is None  # no sharded scan: no series
    # the finished-scan series still describe the latest FINISHED scan of the job
    ok = registry.get_sample_value("certscan_scan_endpoints", {"job": "dmz", "status": "ok"})
    assert ok == 1.0
    promtool_accepts(generate_latest(registry))


def test_shard_series_keep_the_last_sharded_scan_after_it_ends(
    sqlite_inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    record_sharded_scan(
        sqlite_inventory,
        [("done", [handshake("127.0.9.1", pki["a"])], 1), ("interrupted", [], 4)],
        finish="interrupted",
    )
    record_scan(sqlite_inventory, [handshake("127.0.9.2", pki["a"])], finish=False)  # plain
    registry = scrape(sqlite_inventory)
    assert _states(registry, "sweep") == {
        "queued": 0.0,
        "running": 0.0,
        "done": 1.0,
        "failed": 0.0,
        "interrupted": 1.0,
    }
    # progress follows the latest scan of the job, sharded or not, finished or not
    assert registry.get_sample_value("certscan_scan_progress_ratio", {"job": "sweep"}) == 1.0
    record_scan(sqlite_inventory, [], finish=False)  # a scan with no targets yet
    scanned = scrape(sqlite_inventory)
    assert scanned.get_sample_value("certscan_scan_progress_ratio", {"job": "sweep"}) == 1.0


def test_shard_metrics_read_in_the_snapshot(
    sqlite_inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = record_sharded_scan(
        sqlite_inventory, [("running", [handshake("127.0.9.1", pki["a"])], 2)], job="lab"
    )
    snapshot = store_metrics.read_snapshot(sqlite_inventory.engine)
    [progress] = snapshot.progress
    assert (progress.job, progress.scan_id, progress.status) == ("lab", scan, "running")
    assert (progress.done, progress.total) == (1, 2)
    [states] = snapshot.shard_states
    assert (states.job, states.scan_id, states.states["running"]) == ("lab", scan, 1)
    families = {f.name: f for f in build_metrics(snapshot)}
    assert [s.value for s in families["certscan_scan_progress_ratio"].samples] == [0.5]
