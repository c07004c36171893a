"""certscan report, findings, sweep --report/--fail-on and demo, run as a user runs them: the lab
and small TLS servers on loopback, sweeps in a real process, reports read back and validated.

Sweeps run in a subprocess (``trio.run`` cannot nest inside these trio tests); ``report`` and
``findings`` do no networking and mostly run in-process through ``scanner.cli.app.main``.
"""

from __future__ import annotations

import csv
import io
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio

from reports import assess
from reports.policy import Policy
from reports.render.json import load_schema
from reports.trust import TrustStore
from scanner.inventory.store import Inventory
from scanner.lab import certgen
from scanner.lab import servers as lab_mod
from scanner.models import FailureKind, Finding, Handshake, ScanFailure, Severity, Target
from scanner.parse import parse_certificate
from tests.peers import make_pki, server_context, tls_server
from tests.reports.render.test_junit import schema_errors
from tests.scanner.cli.test_app import certscan, one_line_error, run_main

DAY = timedelta(days=1)
FAST = ("--no-progress", "--handshake-timeout", "1", "--deadline", "2")

#: What each lab endpoint must show once the lab's root is trusted, and nothing else
#: (``weak_cipher`` aside: the TLS 1.0 server's suite is graded too).
WITH_LAB_CA: dict[str, set[str]] = {
    "healthy-rsa": set(),
    "healthy-ecdsa": set(),
    "client-cert": set(),
    "expiring": {"expiring"},
    "expired": {"expired"},
    "not-yet-valid": {"not_yet_valid"},
    "self-signed": {"self_signed"},
    "weak-key": {"weak_key"},
    "sha1-signature": {"weak_signature"},
    "hostname-mismatch": {"hostname_mismatch"},
    "legacy-tls10": {"legacy_protocol", "weak_cipher"},
    "not-tls": set(),
    "dual-cert": set(),
}


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the developer's config file nor CERTSCAN_CONFIG leaks into these tests."""
    monkeypatch.delenv("CERTSCAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def read_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text("ascii"))
    jsonschema.Draft202012Validator(load_schema()).validate(document)
    return document


#: Every lab server is classical (the system OpenSSL has no ML-KEM), so every chain comes with
#: ``no_pq_key_exchange`` (info): the tables here leave it out, and one test checks it apart.
CLASSICAL = "no_pq_key_exchange"


def kinds(endpoint: dict[str, Any]) -> set[str]:
    return {f["kind"] for f in endpoint["findings"]} - {CLASSICAL}


def kinds_by_name(lab: lab_mod.Lab, document: dict[str, Any]) -> dict[str, set[str]]:
    names = {(e.address, e.port): e.name for e in lab.endpoints}
    return {names[(e["address"], e["port"])]: kinds(e) for e in document["endpoints"]}


# --- the lab: every kind it provokes, trust with and without --ca-bundle ------------------------


async def test_lab_sweep_then_reports(
    lab: lab_mod.Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, ca = tmp_path / "inv.db", tmp_path / "lab-ca.pem"
    ca.write_bytes(lab.ca.cert_pem)
    specs = [f"{e.address}:{e.port}" for e in lab.endpoints if e.name != "hang"]
    swept = tmp_path / "sweep.json"
    proc = await certscan(
        "sweep", *specs, "--db", str(db), *FAST, "--probe-protocols",
        "--report", str(swept), "--fail-on", "critical",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr.decode()  # expired and expiring are critical
    assert b"findings: " in proc.stderr
    after_sweep = read_json(swept)
    assert after_sweep["scan"]["id"] == 1
    assert len(after_sweep["endpoints"]) == len(specs)

    code, _, err = run_main(["report", "--db", str(db), "-o", str(tmp_path / "plain.json")], capsys)
    assert code == 0, err
    assert "wrote " in err
    plain = kinds_by_name(lab, read_json(tmp_path / "plain.json"))
    code, _, err = run_main(
        ["report", "--db", str(db), "--ca-bundle", str(ca), "-o", str(tmp_path / "ca.json")],
        capsys,
    )
    assert code == 0, err
    trusted = kinds_by_name(lab, read_json(tmp_path / "ca.json"))
    assert trusted == WITH_LAB_CA
    # Without the private root, every chain that relies on it is incomplete; the rest is equal.
    for name, expected in WITH_LAB_CA.items():
        relies_on_root = name not in ("self-signed", "not-tls")
        assert plain[name] == expected | ({"incomplete_chain"} if relies_on_root else set()), name
    assert kinds_by_name(lab, after_sweep) == plain  # the sweep's report: same policy, same trust
    for endpoint in after_sweep["endpoints"]:
        classical = [f for f in endpoint["findings"] if f["kind"] == CLASSICAL]
        assert len(classical) == (1 if endpoint["chain"] else 0), endpoint["address"]
        if classical:
            assert classical[0]["severity"] == "info"
            assert endpoint["group"] in ("x25519", "secp256r1", "X25519MLKEM768") or (
                endpoint["tls_version"] != "TLSv1.3"
            )

    # Filters, and --fail-on over what is reported.
    base = ["report", "--db", str(db), "--ca-bundle", str(ca)]
    out = tmp_path / "soon.json"

    def exit_code(*args: str) -> int:
        return run_main([*base, *args, "-o", str(out)], capsys)[0]

    assert exit_code("--expiring-within", "7d") == 0
    assert set(kinds_by_name(lab, read_json(out))) == {"expiring", "expired"}
    assert exit_code("--kind", "weak_key", "--fail-on", "critical") == 0
    assert exit_code("--kind", "weak_key", "--fail-on", "high") == 1
    assert [e["findings"][0]["kind"] for e in read_json(out)["endpoints"]] == ["weak_key"]
    # A real process, as CI runs it: 1 when bad certificates are reported, 0 when none are.
    gate = await certscan(*base, "--format", "json", "--fail-on", "high")
    assert gate.returncode == 1, gate.stderr.decode()
    assert json.loads(gate.stdout)["summary"]["by_severity"]["critical"] == 2
    clean = await certscan(*base, "--format", "json", "--kind", "no_san", "--fail-on", "info")
    assert clean.returncode == 0, clean.stderr.decode()
    assert json.loads(clean.stdout)["endpoints"] == []

    # CSV (format from the extension) read back; HTML written.
    code, _, err = run_main([*base, "-o", str(tmp_path / "r.csv")], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text(), newline="")))
    expired = lab.by_name("expired")
    assert [r["kind"] for r in rows if r["address"] == expired.address] == ["expired", CLASSICAL]
    by_endpoint = {r["address"]: r for r in inventory_rows(tmp_path, base, capsys)}
    assert by_endpoint[expired.address]["group"] == "x25519"  # the lab's stdlib servers
    assert by_endpoint[expired.address]["legacy_capture"] == "false"
    assert {r["kind"] for r in rows} >= {"expired", "weak_key", "legacy_protocol"}
    code, _, _ = run_main([*base, "--csv-kind", "inventory", "-o", str(tmp_path / "i.csv")], capsys)
    assert code == 0
    inventory = list(csv.DictReader(io.StringIO((tmp_path / "i.csv").read_text(), newline="")))
    assert len(inventory) == len(specs)
    assert run_main([*base, "-o", str(tmp_path / "r.html")], capsys)[0] == 0
    html = (tmp_path / "r.html").read_text("utf-8")
    assert html.startswith("<!DOCTYPE html>") or html.lower().startswith("<!doctype html>")
    assert "expired.lab.certscan.test" in html
    # JUnit, as a CI job writes it, valid against our schema of what GitLab and Jenkins read.
    assert run_main([*base, "--format", "junit", "-o", str(tmp_path / "r.xml")], capsys)[0] == 0
    junit = (tmp_path / "r.xml").read_bytes()
    assert schema_errors(junit) == []
    assert b'classname="certscan.expired"' in junit


def inventory_rows(
    tmp_path: Path, base: list[str], capsys: pytest.CaptureFixture[str]
) -> list[dict[str, str]]:
    target = tmp_path / "inventory-rows.csv"
    code, _, err = run_main([*base, "--csv-kind", "inventory", "-o", str(target)], capsys)
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(target.read_text(), newline="")))


# --- a finding resolved when the certificate is replaced --------------------------------------


ADDRESS = "127.91.3.7"


@asynccontextmanager
async def tls_on(port: int, ctx: ssl.SSLContext, address: str = ADDRESS) -> AsyncIterator[int]:
    """A TLS server on ``address``:``port`` (0: any free port) until exit; yields the port."""
    handler = tls_server(ctx)

    async def guarded(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # scanners hang up mid-conversation
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await trio.open_tcp_listeners(port, host=address)  # SO_REUSEADDR is set
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, guarded, listeners)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def test_replaced_certificate_resolves_the_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = make_pki()
    now = datetime.now(UTC)
    root = tmp_path / "root.pem"
    root.write_bytes(pki.root.cert_pem)

    def leaf(**kw: Any) -> certgen.Issued:
        return certgen.make_leaf(pki.intermediate, cn=ADDRESS, ip_addresses=[ADDRESS], **kw)

    old = leaf(not_before=now - 100 * DAY, not_after=now - 10 * DAY)
    db = tmp_path / "inv.db"
    sweep = ("sweep", "--db", str(db), *FAST, "--quiet")
    # The root is sent too: without --ca-bundle the chain ends at an untrusted root.
    async with tls_on(0, server_context([old, pki.intermediate, pki.root])) as port:
        first = await certscan(*sweep, f"{ADDRESS}:{port}", "--fail-on", "critical")
    assert first.returncode == 1, first.stderr.decode()
    code, _, _ = run_main(["report", "--db", str(db), "-o", str(tmp_path / "1.json")], capsys)
    assert code == 0
    (endpoint,) = read_json(tmp_path / "1.json")["endpoints"]
    assert kinds(endpoint) == {"expired", "untrusted_root"}
    code, _, _ = run_main(
        ["report", "--db", str(db), "--ca-bundle", str(root), "-o", str(tmp_path / "2.json")],
        capsys,
    )
    (endpoint,) = read_json(tmp_path / "2.json")["endpoints"]
    assert kinds(endpoint) == {"expired"}

    new = leaf()
    async with tls_on(port, server_context([new, pki.intermediate])) as same_port:
        assert same_port == port
        second = await certscan(
            *sweep, f"{ADDRESS}:{port}", "--ca-bundle", str(root), "--fail-on", "low",
            "--report", str(tmp_path / "after.html"),
        )  # fmt: skip
    assert second.returncode == 0, second.stderr.decode()  # only certificate_changed (info)
    assert (tmp_path / "after.html").stat().st_size > 0

    code, out, err = run_main(["findings", "--db", str(db), "--all", "--json"], capsys)
    assert code == 0, err
    rows = {r["kind"]: r for r in map(json.loads, out.splitlines())}
    assert rows["expired"]["resolved_at"] is not None
    assert rows["expired"]["last_scan_id"] == 1
    assert rows["untrusted_root"]["resolved_at"] is not None
    assert rows["certificate_changed"]["resolved_at"] is None
    assert rows["certificate_changed"]["severity"] == "info"
    code, out, _ = run_main(["findings", "--db", str(db)], capsys)
    assert code == 0
    assert "certificate_changed" in out
    assert "expired" not in out  # resolved: listed only with --all
    code, out, _ = run_main(["findings", "--db", str(db), "--all"], capsys)
    assert "expired" in out
    assert "resolved" in out


async def test_legacy_versions_show_only_with_the_probe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server speaking TLS 1.0 to 1.3 negotiates 1.3 with everyone: only the probe sees 1.0."""
    address = "127.91.3.8"
    pki = make_pki()
    leaf = certgen.make_leaf(pki.intermediate, cn=address, ip_addresses=[address])
    ctx = server_context(
        [leaf, pki.intermediate], minimum=ssl.TLSVersion.TLSv1, ciphers="DEFAULT:@SECLEVEL=0"
    )
    db = tmp_path / "inv.db"
    report = ["report", "--db", str(db), "--kind", "legacy_protocol", "--format", "json"]
    legacy: list[list[str]] = []
    async with tls_on(0, ctx, address) as port:
        for probe in ((), ("--probe-protocols",)):
            swept = await certscan(
                "sweep", f"{address}:{port}", "--db", str(db), *FAST, "--quiet", *probe
            )
            assert swept.returncode == 0, swept.stderr.decode()
            code, _, err = run_main([*report, "-o", str(tmp_path / "r.json")], capsys)
            assert code == 0, err
            endpoints = read_json(tmp_path / "r.json")["endpoints"]
            legacy.append([f["message"] for e in endpoints for f in e["findings"]])
    assert legacy == [[], ["accepts TLSv1, TLSv1.1"]]


# --- terminal output is never markup --------------------------------------------------------


def test_findings_table_prints_certificate_text_literally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    hostile = "[bold]evil[/bold]\x1b[2J"
    ca = certgen.make_ca("hostile CA")
    leaf = certgen.make_leaf(ca, cn=hostile, not_before=now - 30 * DAY, not_after=now - DAY)
    db = tmp_path / "inv.db"
    with Inventory(str(db)) as inv:
        scan = inv.start_scan(spec={"t": "hostile"}, total=1)
        outcome = Handshake(
            target=Target(address="127.0.9.9", port=443),
            started_at=now,
            chain=(leaf.der,),
            tls_version="TLSv1.2",
            cipher="ECDHE-ECDSA-AES128-GCM-SHA256",
        )
        inv.record_batch(scan, [(outcome, (parse_certificate(leaf.der),))], watermark=1)
        criteria = assess.Criteria(policy=Policy(), trust=TrustStore.from_pem(mozilla=False))
        assess.record_scan(inv, scan, criteria=criteria, now=now)
    code, out, err = run_main(["findings", "--db", str(db)], capsys)
    assert code == 0, err
    assert "[bold]evil[/bold]" in out
    assert "\x1b" not in out
    assert "\\x1b" in out


def test_an_html_report_past_its_size_refuses_and_json_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from scanner.cli import report as report_cli

    now = datetime.now(UTC)
    leaf = certgen.make_leaf(certgen.make_ca(), cn="a.example", dns_names=["a.example"])
    db = tmp_path / "inv.db"
    with Inventory(str(db)) as inv:
        scan = inv.start_scan(spec={"t": "three"}, total=3)
        items = [
            (
                Handshake(
                    target=Target(address=f"127.0.9.{n}", port=443),
                    started_at=now,
                    chain=(leaf.der,),
                    tls_version="TLSv1.3",
                    cipher="TLS_AES_128_GCM_SHA256",
                ),
                (parse_certificate(leaf.der),),
            )
            for n in (1, 2, 3)
        ]
        inv.record_batch(scan, items, watermark=3)
    monkeypatch.setattr(report_cli, "HTML_MAX_ENDPOINTS", 2)
    html = tmp_path / "r.html"
    code, _, err = run_main(["report", "-o", str(html), "--db", str(db)], capsys)
    assert code == 2
    one_line_error(err)
    assert "at most 2 endpoints and 3 are selected" in err
    assert not html.exists()
    # A filter is applied first: the bound counts what it selects (here none of the three).
    argv = ["report", "-o", str(html), "--db", str(db), "--kind", "weak_key"]
    code, _, err = run_main(argv, capsys)
    assert code == 0, err
    assert html.exists()
    code, _, err = run_main(["report", "-o", str(tmp_path / "r.json"), "--db", str(db)], capsys)
    assert code in (0, 1), err


# --- errors: one line, exit 2 for usage, 3 for operational ------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["report", "--expiring-within", "3x"], 2, "--expiring-within"),
        (["report", "--format", "pdf"], 2, "pdf"),
        (["report", "-o", "report.txt"], 2, "--format"),
        (["report", "--fail-on", "severe"], 2, "--fail-on"),
        (["report", "--severity", "bad"], 2, "--severity"),
        (["report", "--kind", "expird"], 2, "expired"),
        (["report", "--csv-kind", "rows", "--format", "csv"], 2, "rows"),
        (["report", "-o", "/nonexistent/dir/r.html"], 2, "/nonexistent/dir"),
        (["report", "--ca-bundle", "/nonexistent/ca.pem"], 2, "/nonexistent/ca.pem"),
        (["report", "--config", "BAD"], 2, "policy.expiring_high_days"),
        (["report", "--scan", "42"], 2, "no scan 42"),
        (["report", "--db", "MISSING"], 3, "no inventory"),
        (["findings", "--db", "MISSING"], 3, "no inventory"),
        (["findings", "--cursor", "x9"], 2, "--cursor"),
        (["findings", "--cursor", "7:12"], 2, "--cursor"),
        (["sweep", "127.0.0.1", "-p", "9", "--report", "r.txt"], 2, "--report"),
        (["sweep", "127.0.0.1", "-p", "9", "--fail-on", "worst"], 2, "--fail-on"),
        (["sweep", "127.0.0.1", "-p", "9", "--config", "BAD"], 2, "policy.expiring_high_days"),
    ],
)
def test_errors_are_one_line(
    argv: list[str], code: int, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[policy]\nexpiring_high_days = "soon"\n')
    db = tmp_path / "inv.db"
    Inventory(str(db)).close()  # an empty inventory
    argv = [
        str(bad) if a == "BAD" else str(tmp_path / "x.db") if a == "MISSING" else a for a in argv
    ]
    if "--db" not in argv:
        argv += ["--db", str(db)]
    got, _, err = run_main(argv, capsys)
    assert got == code, err
    one_line_error(err)
    assert needle in err


# --- the demo -----------------------------------------------------------------------------------


async def test_demo_records_findings_and_writes_a_report(tmp_path: Path) -> None:
    db = tmp_path / "demo" / "demo.db"
    proc = await certscan("demo", "--db", str(db))
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    report = db.with_name("demo-report.html")
    assert report.stat().st_size > 10_000
    assert report.as_uri() in out
    for kind in ("expired", "expiring", "weak_key", "legacy_protocol", "self_signed"):
        assert kind in out, kind
    assert "alt chain" in out  # --all-certs is on: the dual-cert endpoint shows both chains
    listed = await certscan("findings", "--db", str(db), "--json")
    assert listed.returncode == 0, listed.stderr.decode()
    assert {json.loads(line)["kind"] for line in listed.stdout.decode().splitlines()} >= {
        "expired",
        "legacy_protocol",
        "weak_signature",
    }


# --- every certificate of an endpoint: the lab's dual-cert server, --all-certs --------------------


async def test_all_certs_sweep_reports_both_chains(
    lab: lab_mod.Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dual,) = [e for e in lab.endpoints if e.name == "dual-cert"]
    db, ca, config = tmp_path / "inv.db", tmp_path / "lab-ca.pem", tmp_path / "policy.toml"
    ca.write_bytes(lab.ca.cert_pem)
    # Both 90-day leaves count as expiring under this policy, so each chain yields a finding.
    config.write_text("[policy]\nexpiring_high_days = 100\nshort_lived_fraction = 1.0\n")
    spec = f"{dual.address}:{dual.port}"
    proc = await certscan("sweep", spec, "--db", str(db), *FAST, "--all-certs")
    assert proc.returncode == 0, proc.stderr.decode()

    base = ["report", "--db", str(db), "--ca-bundle", str(ca), "--config", str(config)]
    code, _, err = run_main([*base, "--format", "json", "-o", str(tmp_path / "r.json")], capsys)
    assert code == 0, err
    document = read_json(tmp_path / "r.json")
    (endpoint,) = document["endpoints"]
    (alt,) = endpoint["alt_chains"]
    main_leaf, alt_leaf = endpoint["chain"][0], alt[0]
    assert {main_leaf["key_type"], alt_leaf["key_type"]} == {"EC", "RSA"}
    found = [f for f in endpoint["findings"] if f["kind"] != CLASSICAL]
    assert sorted((f["kind"], f["sha256"]) for f in found) == sorted(
        [("expiring", main_leaf["sha256"]), ("expiring", alt_leaf["sha256"])]
    )
    served = {c["sha256"]: c["served_at"] for c in document["certificates"]}
    assert [(p["position"], p["chain"]) for p in served[alt_leaf["sha256"]]] == [(0, 1)]
    assert document["summary"]["certificates"] == len(served) == 4  # two leaves, two CAs

    code, _, err = run_main(
        [*base, "--format", "csv", "--csv-kind", "inventory", "-o", str(tmp_path / "inv.csv")],
        capsys,
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "inv.csv").read_text("utf-8"))))
    assert [(r["sha256"], r["chain"]) for r in rows] == [
        (main_leaf["sha256"], "0"),
        (alt_leaf["sha256"], "1"),
    ]
    code, _, err = run_main([*base, "-o", str(tmp_path / "r.html")], capsys)
    assert code == 0, err
    html = (tmp_path / "r.html").read_text("utf-8")
    assert "alternative chain 1: leaf" in html
    assert alt_leaf["sha256"] in html


def test_findings_pages_with_limit_and_cursor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "inv.db"
    inv = Inventory(str(db))
    try:
        scan = inv.start_scan(spec={"paging": 1}, total=5)
        targets = [Target(address=f"127.0.10.{n}", port=443) for n in range(1, 6)]
        inv.record_batch(
            scan,
            [(ScanFailure(target=t, started_at=datetime.now(UTC), kind=FailureKind.TLS_ALERT,
                          detail="d", connected=True), ()) for t in targets],
            watermark=5,
        )  # fmt: skip
        found = [
            Finding(kind="weak_key", severity=Severity(n % 5), message=f"m{n}",
                    address=t.address, port=443, sni=None)
            for n, t in enumerate(targets)
        ]  # fmt: skip
        inv.record_findings(
            scan, found, evaluated=[(t.address, 443, None) for t in targets], now=datetime.now(UTC)
        )
    finally:
        inv.close()
    seen: list[str] = []
    argv = ["findings", "--db", str(db), "--json", "--limit", "2"]
    for _ in range(5):
        code, out, err = run_main(argv, capsys)
        assert code == 0, err
        seen += [json.loads(line)["severity"] for line in out.splitlines()]
        if "--cursor" not in err:
            break
        argv = [*argv[:6], "--cursor", err.split("--cursor ")[1].strip()]
    assert seen == ["critical", "high", "medium", "low", "info"]
    code, out, _ = run_main(["findings", "--db", str(db)], capsys)
    assert code == 0
    assert "5 open findings on 5 endpoints" in out
