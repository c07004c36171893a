"""Discovery coverage: SNI fan-out (SAN, PTR, a names file), every certificate of a
dual-key server (``--all-certs``), IPv6 end to end, and the protocol each handshake spoke.

Each sweep runs ``scanner.sweep.run.run`` in-process against real loopback servers and reads
back what the inventory stored and what ``--json`` printed."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from rich.console import Console

from scanner.cli.console import inventory_table
from scanner.engine import crew as engine
from scanner.engine import discovery
from scanner.engine.discovery import DiscoveryOptions, follow_up_names
from scanner.errors import TargetError, UsageError
from scanner.inventory.store import EndpointRecord, Inventory, db_url
from scanner.lab import certgen
from scanner.lab import servers as lab_mod
from scanner.models import EngineLimits, Handshake, Outcome, Target
from scanner.parse import parse_certificate
from scanner.plan.targets import build_plan
from scanner.sweep.events import SilentEvents
from scanner.sweep.options import SweepOptions, SweepReport
from scanner.sweep.run import run
from tests import peers

_addresses = itertools.count()
FAST = EngineLimits(connect_timeout=2, handshake_timeout=2, target_deadline=3, concurrency=16)


def fp(issued: certgen.Issued) -> str:
    """The SHA-256 fingerprint certscan keys a certificate by."""
    return hashlib.sha256(issued.der).hexdigest()


def fresh_address() -> str:
    """A distinct 127.97.x.y per server."""
    n = next(_addresses)
    return f"127.97.{n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module")
def ca() -> certgen.Issued:
    return certgen.make_ca("certscan discovery test root")


def context_for(leaf: certgen.Issued) -> ssl.SSLContext:
    return peers.server_context([leaf])


def by_name(contexts: dict[str, ssl.SSLContext], default: ssl.SSLContext) -> ssl.SSLContext:
    """``default``, switching to ``contexts[name]`` when the client sends that SNI."""

    def choose(obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        if name in contexts:
            obj.context = contexts[name]

    default.sni_callback = choose
    return default


async def sweep(
    specs: Sequence[str],
    ports: Sequence[int],
    tmp_path: Path,
    *,
    limits: EngineLimits = FAST,
    discover: DiscoveryOptions | None = None,
    resume: bool = False,
) -> tuple[SweepReport, list[dict[str, Any]], dict[tuple[str, int, str | None], EndpointRecord]]:
    out = io.StringIO()
    url = db_url(str(tmp_path / "inventory.db"))
    options = SweepOptions(
        specs=tuple(specs),
        ports=tuple(ports),
        limits=limits,
        discovery=discover or DiscoveryOptions(),
        db_url=url,
        db_label="test",
        json_mode="open",
        progress=False,
        summary=False,
        resume=resume,
    )
    report = await run(options, out=out, events=SilentEvents())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    with Inventory(url) as inv:
        records = inv.latest_endpoints(include_failures=True)
    return report, lines, {(r.address, r.port, r.sni): r for r in records}


# --- choosing names (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("used", "found", "file_names", "limit", "expected"),
    [
        (None, ["a.example", "B.Example."], (), 16, ["a.example", "b.example"]),
        # the name already sent, wildcards, IP literals and junk are never tried
        ("a.example", ["a.example", "*.b.example", "10.0.0.1", "bad..name", ""], (), 16, []),
        # duplicates once; at most `limit` from the SANs and PTR, the file's names always
        (None, ["x.example", "x.example", "y.example", "z.example"], ("f.example",), 2,
         ["x.example", "y.example", "f.example"]),
        ("f.example", [], ("f.example", "g.example"), 16, ["g.example"]),
        (None, ["bücher.example"], (), 16, ["xn--bcher-kva.example"]),
    ],
)  # fmt: skip
def test_follow_up_names(
    used: str | None,
    found: list[str],
    file_names: tuple[str, ...],
    limit: int,
    expected: list[str],
) -> None:
    assert follow_up_names(used, found, file_names, limit) == expected


def test_a_huge_san_list_costs_at_most_sixteen_names() -> None:
    names = [f"n{i}.example" for i in range(5000)]
    assert len(follow_up_names(None, names, ())) == discovery.MAX_NAMES == 16


@pytest.mark.parametrize(
    ("sources", "names", "needle"),
    [(["san", "dns"], [], "--sni-from"), (["ptr"], ["ok.example", "not a name"], "not a name")],
)
def test_bad_discovery_options_are_usage_errors(
    sources: list[str], names: list[str], needle: str
) -> None:
    with pytest.raises(UsageError, match=needle):
        discovery.parse_options(sources, names)


# --- SNI fan-out on a shared address --------------------------------------------------------


async def test_san_discovery_stores_the_certificate_behind_a_second_name(
    ca: certgen.Issued, tmp_path: Path
) -> None:
    names = ["www.shared.test", "*.shared.test", "app.shared.test"]
    shared = certgen.make_leaf(ca, cn="www.shared.test", dns_names=names)
    app = certgen.make_leaf(ca, cn="app.shared.test", dns_names=["app.shared.test"])
    ctx = by_name({"app.shared.test": context_for(app)}, context_for(shared))
    async with peers.serve(fresh_address(), peers.tls_server(ctx)) as peer:
        options = discovery.parse_options(["san"], [])
        report, lines, stored = await sweep([peer.address], [peer.port], tmp_path, discover=options)
        assert peer.tally.accepted == 3  # the address, then www and app (no wildcard)
    a, p = peer.address, peer.port
    assert stored[(a, p, None)].chain[0].sha256 == fp(shared)
    assert stored[(a, p, "www.shared.test")].chain[0].sha256 == fp(shared)
    assert stored[(a, p, "app.shared.test")].chain[0].sha256 == fp(app)
    assert len(stored) == 3
    # --json shows every endpoint, the discovered ones too, with the protocol spoken.
    assert {(d["sni"], d["chain"][0]["sha256"], d["protocol"]) for d in lines} == {
        (None, fp(shared), "tls"),
        ("www.shared.test", fp(shared), "tls"),
        ("app.shared.test", fp(app), "tls"),
    }
    assert stored[(a, p, "app.shared.test")].protocol == "tls"
    # The scan counts the one planned target; the discovered endpoints are extra.
    assert (report.counters.total, report.counters.done) == (3, 3)
    with Inventory(db_url(str(tmp_path / "inventory.db"))) as inv:
        run_ = inv.scan(report.scan_id or 0)
    assert run_ is not None
    assert (run_.total, run_.done, run_.watermark) == (1, 1, 1)


async def test_a_names_file_is_tried_on_every_address(ca: certgen.Issued, tmp_path: Path) -> None:
    plain = certgen.make_leaf(ca, cn="plain.test", dns_names=["plain.test"])
    hidden = certgen.make_leaf(ca, cn="hidden.test", dns_names=["hidden.test"])
    ctx = by_name({"hidden.test": context_for(hidden)}, context_for(plain))
    async with (
        peers.serve(fresh_address(), peers.tls_server(ctx)) as one,
        peers.serve(fresh_address(), peers.tls_server(ctx)) as two,
    ):
        options = discovery.parse_options([], ["hidden.test", "Hidden.Test."])
        specs = [f"{one.address}:{one.port}", f"{two.address}:{two.port}"]
        _, _, stored = await sweep(specs, [443], tmp_path, discover=options)
    for peer in (one, two):
        assert stored[(peer.address, peer.port, None)].chain[0].sha256 == fp(plain)
        assert stored[(peer.address, peer.port, "hidden.test")].chain[0].sha256 == fp(hidden)
    assert len(stored) == 4


async def test_ptr_discovery_uses_the_reverse_name_of_the_address(
    ca: certgen.Issued, tmp_path: Path
) -> None:
    # Only 127.0.0.1 is looked up, which /etc/hosts answers; no resolver, no test.
    name = await discovery.reverse_name("127.0.0.1")
    if name is None:
        pytest.skip("127.0.0.1 has no local reverse name here")
    default = certgen.make_leaf(ca, cn="default.test", dns_names=["default.test"])
    named = certgen.make_leaf(ca, cn=name, dns_names=[name])
    ctx = by_name({name: context_for(named)}, context_for(default))
    async with peers.serve("127.0.0.1", peers.tls_server(ctx)) as peer:
        options = discovery.parse_options(["ptr"], [])
        _, _, stored = await sweep([f"127.0.0.1:{peer.port}"], [443], tmp_path, discover=options)
    assert stored[("127.0.0.1", peer.port, None)].chain[0].sha256 == fp(default)
    assert stored[("127.0.0.1", peer.port, name.lower())].chain[0].sha256 == fp(named)


async def test_follow_ups_come_before_their_target_and_are_not_rediscovered(
    ca: certgen.Issued,
) -> None:
    leaf = certgen.make_leaf(ca, cn="a.test", dns_names=["a.test", "b.test"])
    calls: list[Target] = []

    async def discover(handshake: Handshake) -> list[Target]:
        calls.append(handshake.target)
        return [Target(address=handshake.target.address, port=handshake.target.port, sni="b.test")]

    async with peers.serve(fresh_address(), peers.tls_server(context_for(leaf))) as peer:
        send, receive = trio.open_memory_channel[tuple[int, Outcome]](8)
        got: list[tuple[int, str | None]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: engine.sweep([(0, peer.target())], FAST, send, discover=discover)
            )
            async with receive:
                async for index, outcome in receive:
                    got.append((index, outcome.target.sni))
    assert got == [(engine.FOLLOW_UP, "b.test"), (0, None)]
    assert calls == [peer.target()]


async def test_resume_skips_discovered_endpoints_already_stored(
    ca: certgen.Issued, tmp_path: Path
) -> None:
    shared = certgen.make_leaf(ca, cn="one.test", dns_names=["one.test", "two.test"])
    async with peers.serve(fresh_address(), peers.tls_server(context_for(shared))) as peer:
        options = discovery.parse_options(["san"], [])
        specs, ports = [peer.address], [peer.port]
        report, _, _ = await sweep(specs, ports, tmp_path, discover=options)
        url = db_url(str(tmp_path / "inventory.db"))
        with Inventory(url) as inv:  # as if interrupted before the planned target was stored
            assert report.scan_id is not None
            inv.finish_scan(report.scan_id, "interrupted")
            with inv.engine.begin() as conn:
                conn.exec_driver_sql(
                    "DELETE FROM observation_certificate WHERE observation_id IN "
                    "(SELECT id FROM observation WHERE target_index = 0)"
                )
                conn.exec_driver_sql("DELETE FROM observation WHERE target_index = 0")
                conn.exec_driver_sql("UPDATE scan_run SET watermark = 0, done = 0, ok = 0")
            watermark, done = inv.resume_scan(report.scan_id)
            inv.finish_scan(report.scan_id, "interrupted")
        found = {(peer.address, peer.port, "one.test"), (peer.address, peer.port, "two.test")}
        assert (watermark, done) == (0, found)
        before = peer.tally.accepted
        again, lines, stored = await sweep(specs, ports, tmp_path, discover=options, resume=True)
        assert peer.tally.accepted - before == 1  # only the planned target: no re-discovery
    assert again.scan_id == report.scan_id
    assert [d["sni"] for d in lines] == [None]
    assert set(stored) == {(peer.address, peer.port, s) for s in (None, "one.test", "two.test")}


# --- every certificate of a dual-key server -------------------------------------------------


def dual_context(rsa_leaf: certgen.Issued, ec_leaf: certgen.Issued) -> ssl.SSLContext:
    ctx = peers.server_context([rsa_leaf])
    with tempfile.TemporaryDirectory(prefix="certscan-dual-") as tmp:
        cert, key = Path(tmp, "ec.pem"), Path(tmp, "ec.key")
        cert.write_bytes(ec_leaf.cert_pem)
        key.write_bytes(ec_leaf.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture(scope="module")
def dual(ca: certgen.Issued) -> tuple[certgen.Issued, certgen.Issued]:
    rsa_leaf = certgen.make_leaf(
        ca, cn="dual.test", dns_names=["dual.test"], key=certgen.make_key("rsa")
    )
    ec_leaf = certgen.make_leaf(ca, cn="dual.test", dns_names=["dual.test"])
    return rsa_leaf, ec_leaf


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_all_certs_stores_the_rsa_and_the_ecdsa_chain(
    dual: tuple[certgen.Issued, certgen.Issued], tmp_path: Path, maximum: ssl.TLSVersion
) -> None:
    rsa_leaf, ec_leaf = dual
    ctx = dual_context(rsa_leaf, ec_leaf)
    ctx.maximum_version = maximum
    limits = dataclasses.replace(FAST, all_certs=True)
    async with peers.serve(fresh_address(), peers.tls_server(ctx)) as peer:
        _, lines, stored = await sweep([peer.address], [peer.port], tmp_path, limits=limits)
        assert peer.tally.accepted == 2  # the usual handshake, then the other key type only
    record = stored[(peer.address, peer.port, None)]
    leaves = {record.chain[0].sha256} | {alt[0].sha256 for alt in record.alt_chains}
    assert leaves == {fp(rsa_leaf), fp(ec_leaf)}
    assert len(record.alt_chains) == 1
    (line,) = lines
    assert {line["chain"][0]["key_type"], line["alt_chains"][0][0]["key_type"]} == {"RSA", "EC"}


async def test_all_certs_on_a_single_key_server_adds_no_chain(
    dual: tuple[certgen.Issued, certgen.Issued], tmp_path: Path
) -> None:
    limits = dataclasses.replace(FAST, all_certs=True)
    async with peers.serve(fresh_address(), peers.tls_server(context_for(dual[1]))) as peer:
        _, lines, stored = await sweep([peer.address], [peer.port], tmp_path, limits=limits)
        assert peer.tally.accepted == 2  # the RSA-only offer is refused
    assert stored[(peer.address, peer.port, None)].alt_chains == ()
    assert lines[0]["alt_chains"] == []


async def test_without_all_certs_one_chain_and_one_connection(
    dual: tuple[certgen.Issued, certgen.Issued], tmp_path: Path
) -> None:
    async with peers.serve(fresh_address(), peers.tls_server(dual_context(*dual))) as peer:
        _, _, stored = await sweep([peer.address], [peer.port], tmp_path)
        assert peer.tally.accepted == 1
    assert stored[(peer.address, peer.port, None)].alt_chains == ()


# --- IPv6 -----------------------------------------------------------------------------------


def ipv6_loopback() -> Iterator[None]:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    yield


@pytest.fixture
def ipv6() -> Iterator[None]:
    yield from ipv6_loopback()


@pytest.mark.usefixtures("ipv6")
async def test_a_bracketed_ipv6_target_is_swept_end_to_end(
    ca: certgen.Issued, tmp_path: Path
) -> None:
    leaf = certgen.make_leaf(ca, cn="six.test", dns_names=["six.test"], ip_addresses=["::1"])
    async with peers.serve("::1", peers.tls_server(context_for(leaf))) as peer:
        report, lines, stored = await sweep([f"[::1]:{peer.port}"], [443], tmp_path)
    assert report.exit_code in (0, 1)
    assert stored[("::1", peer.port, None)].chain[0].sha256 == fp(leaf)
    assert lines[0]["address"] == "::1"
    assert lines[0]["protocol"] == "tls"


def test_a_huge_ipv6_plan_names_the_slash_64() -> None:
    with pytest.raises(TargetError, match="IPv6 /64") as caught:
        build_plan(["fd00::/64"], ports=[443], max_targets=1000)
    assert "--max-targets" in str(caught.value)
    with pytest.raises(TargetError) as v4:
        build_plan(["10.0.0.0/8"], ports=[443], max_targets=1000)
    assert "IPv6" not in str(v4.value)


def test_the_inventory_table_shows_every_chain(dual: tuple[certgen.Issued, certgen.Issued]) -> None:
    rsa_leaf, ec_leaf = dual
    record = EndpointRecord(
        address="::1",
        port=443,
        sni=None,
        status="ok",
        error=None,
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        alpn=None,
        observed_at=datetime.now(UTC),
        scan_id=1,
        chain=(parse_certificate(ec_leaf.der),),
        alt_chains=((parse_certificate(rsa_leaf.der),),),
    )
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(inventory_table([record]))
    rows = [line for line in buffer.getvalue().splitlines() if "[::1]:443" in line]
    assert len(rows) == 2
    assert "EC 256" in rows[0]
    assert "alt chain" in rows[1]
    assert "RSA 2048" in rows[1]


async def test_the_lab_dual_cert_endpoint_yields_both_chains(lab: lab_mod.Lab) -> None:
    endpoint = lab.by_name("dual-cert")
    plain = await engine.probe(endpoint.target, FAST)
    both = await engine.probe(endpoint.target, dataclasses.replace(FAST, all_certs=True))
    assert isinstance(plain, Handshake)
    assert isinstance(both, Handshake)
    assert plain.chain == both.chain == endpoint.chain_der
    assert plain.alt_chains == ()
    assert both.alt_chains == (tuple(c.der for c in endpoint.alt_chain),)


# --- the command line -----------------------------------------------------------------------


async def certscan(*args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "scanner", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_the_flags_reach_the_sweep_and_the_inventory(
    lab: lab_mod.Lab, tmp_path: Path
) -> None:
    endpoint = lab.by_name("dual-cert")
    names = tmp_path / "names.txt"
    names.write_text("# names to try everywhere\nextra.lab.certscan.test\n")
    db = str(tmp_path / "cli.db")
    spec = f"{endpoint.address}:{endpoint.port}"
    flags = ("--sni-from", "san", "--sni-file", str(names), "--all-certs")
    proc = await certscan("sweep", spec, *flags, "--json", "-q", "--no-progress", "--db", db)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [d["sni"] for d in lines] == [endpoint.dns_name, "extra.lab.certscan.test", None]
    for line in lines:  # the lab serves every name alike: both chains each time
        assert line["protocol"] == "tls"
        assert line["chain"][0]["key_type"] == "EC"
        assert [alt[0]["key_type"] for alt in line["alt_chains"]] == ["RSA"]
    listed = await certscan("inventory", "--json", "--db", db)
    records = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert len(records) == 3
    assert all(r["protocol"] == "tls" and len(r["alt_chains"]) == 1 for r in records)
    table = await certscan("inventory", "--db", db)
    assert table.stdout.decode().count("alt chain") == 3


async def test_a_bad_sni_source_is_a_usage_error(tmp_path: Path) -> None:
    proc = await certscan("sweep", "127.0.0.1", "--sni-from", "dns", "--db", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "--sni-from must be one of san, ptr" in proc.stderr.decode()
    assert proc.stdout == b""
