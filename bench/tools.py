"""What each scanner is asked to do, and how its output is checked against the lab.

Theory of operation
-------------------
A ``Scenario`` names a target range and the tools that sweep it; ``command`` builds the exact
argument list for one tool in one scenario. After a run, ``count_found`` reads the tool's own
output (certscan's ``--json`` lines, nmap's ``-oX`` XML with the ``ssl-cert`` PEM, sslyze's
``--json_out``) and matches every leaf against the lab's recorded SHA-256 fingerprint for that
address; "full chain" additionally needs the intermediate as the second certificate (nmap's
``ssl-cert`` only reports the leaf, so it has no chain figure). Everything the tools print is
treated as untrusted text: unparsable lines are counted, never fatal.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import shlex
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import veth
from big_lab import BIG_LIVE, BIG_TARGETS
from nginx_lab import LAB_PORT, Endpoint
from ports_lab import ENDPOINTS, PORTS_ARG, PORTS_LIVE, PORTS_TARGETS

TOOLS = (
    "certscan",
    "certscan-w2",
    "certscan-connect",
    "nmap",
    "nmap-sS",
    "nmap-sS+certscan",
    "masscan",
    "zmap",
    "sslyze",
)
#: certscan variants: the same sweep command plus these arguments (checked like certscan).
#: Run as root, plain ``certscan`` discovers with SYNs (``--discover auto``).
CERTSCAN_VARIANTS: dict[str, tuple[str, ...]] = {
    "certscan": (),
    "certscan-w2": ("--workers", "2"),
    "certscan-connect": ("--discover", "connect"),
}
#: ``nmap -oG`` lines to ``address:port``, one per open port.
OPEN_PORTS_AWK = (
    r'/Ports:/ { split($1, h, " "); n = split($2, p, ", "); '
    r'for (i = 1; i <= n; i++) if (p[i] ~ /\/open\//) { split(p[i], q, "/"); '
    r'sub(/^Ports: /, "", q[1]); print h[2] ":" q[1] } }'
)
#: Tools that only discover (no certificates to check against the lab).
DISCOVERY_ONLY = ("nmap-sS", "masscan", "zmap")
#: The packet rate of the SYN scenarios, the same for every tool that takes one.
SYN_RATE = "100000"
#: Why masscan and zmap have no figures: both write Ethernet frames through a packet socket,
#: and the namespace's only interface is lo (tried: masscan stops at "failed to detect MAC
#: address of interface lo", or hangs with --adapter-mac; zmap sends and receives nothing).
NO_ETHERNET = "not run on lo (needs an Ethernet interface): see scenarios 5v and 6v"
#: The peer namespace's Ethernet address, set by ``bench.py run`` once the veth pair is up.
PEER_MAC = {"mac": ""}
#: Scenario 6's rows (``startup.ROWS`` describes each one).
STARTUP_ROWS = ("version", "help", "sweep-help", "one-target", "one-target-fresh", "nmap-one")
PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One benchmark scenario; ``targets`` per tool (nmap may sweep a smaller slice)."""

    key: str
    title: str
    targets: Mapping[str, str]
    tools: tuple[str, ...]
    cap_s: Mapping[str, float]
    counters: tuple[tuple[str, str], ...]  # (counter name, daddr) — the first is per endpoint
    per_endpoint: Mapping[str, int] = field(default_factory=dict)  # divisor per counter
    certscan_args: tuple[str, ...] = ()
    nmap_args: tuple[str, ...] = ()
    ports: str = str(LAB_PORT)  # the ports every tool sweeps on every address (and counts)
    live: int = 0  # endpoints serving a lab certificate (0: nothing to check)
    veth: bool = False  # swept over the veth pair into the peer namespace (bench/veth.py)
    peer_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # masscan, zmap
    live_starttls: int = 0  # of those, STARTTLS (mail) endpoints

    def networks(self, tool: str) -> list[str]:
        """The CIDRs ``tool`` sweeps (``targets`` holds them space-separated)."""
        return self.targets[tool].split()

    def addresses(self, tool: str) -> int:
        """Address:port targets ``tool`` sweeps: every address of every CIDR on every port."""
        count = sum(ipaddress.ip_network(n).num_addresses for n in self.networks(tool))
        return count * len(self.ports.split(","))


LAB_LIVE = "127.1.0.1-127.1.3.232"
DEAD_RANGE_3 = "127.3.0.0/16"
MIXED_PORTS = "25,110,143,443,587"
MIXED_TARGETS = "127.1.0.0/22 127.4.0.0/24"

SCENARIOS: dict[str, Scenario] = {
    "1": Scenario(
        key="1",
        title="1,000 TLS endpoints (127.1.0.0/22)",
        targets={t: "127.1.0.0/22" for t in ("certscan", "certscan-w2", "nmap", "sslyze")},
        tools=("certscan", "certscan-w2", "nmap", "sslyze"),
        cap_s={"certscan": 120, "certscan-w2": 120, "nmap": 120, "sslyze": 150},
        counters=(("lab_live", LAB_LIVE), ("lab_all", "127.1.0.0/22")),
        per_endpoint={"lab_live": 1000},
        nmap_args=("--script", "ssl-cert"),
        live=1000,
    ),
    "2": Scenario(
        key="2",
        title="65,536 closed addresses (127.2.0.0/16)",
        targets={t: "127.2.0.0/16" for t in ("certscan", "certscan-w2", "nmap")},
        tools=("certscan", "certscan-w2", "nmap"),
        cap_s={"certscan": 120, "certscan-w2": 120, "nmap": 120},
        counters=(("closed", "127.2.0.0/16"),),
        per_endpoint={"closed": 65536},
    ),
    "3": Scenario(
        key="3",
        title="dead hosts, SYNs dropped (certscan 127.3.0.0/16, nmap 127.3.0.0/24 slice)",
        targets={"certscan": "127.3.0.0/16", "nmap": "127.3.0.0/24"},
        tools=("certscan", "nmap"),
        cap_s={"certscan": 90, "nmap": 60},
        counters=(("dead", "127.3.0.0/16"),),
        certscan_args=("--connect-timeout", "1"),
        nmap_args=("--host-timeout", "30s"),
    ),
    "4": Scenario(
        key="4",
        title="mixed lab: 1,000 HTTPS + 160 STARTTLS (SMTP 25/587, IMAP 143, POP3 110) endpoints, "
        f"{MIXED_TARGETS} on ports {MIXED_PORTS}",
        targets={"certscan": MIXED_TARGETS, "nmap": MIXED_TARGETS},
        tools=("certscan", "nmap"),
        cap_s={"certscan": 60, "nmap": 90},
        counters=(("mixed_all", "127.1.0.0/22,127.4.0.0/24"), ("mixed_mail", "127.4.0.0/24")),
        per_endpoint={"mixed_all": 1280 * 5},
        nmap_args=("--script", "ssl-cert"),
        ports=MIXED_PORTS,
        live=1160,
        live_starttls=160,
    ),
    "5": Scenario(
        key="5",
        title="dead /16 x 3 ports with 255 TLS endpoints (127.3.0.0/16 dropped, 127.1.0.0/24 "
        "live on 443), ports 443,8443,9443",
        targets={
            t: f"{DEAD_RANGE_3} 127.1.0.0/24" for t in ("certscan", "nmap-sS", "masscan", "zmap")
        },
        tools=("certscan", "nmap-sS", "masscan", "zmap"),
        cap_s={"certscan": 60, "nmap-sS": 60, "masscan": 60, "zmap": 60},
        counters=(("dead3", "127.3.0.0/16"),),
        certscan_args=("--rate", SYN_RATE, "--syn-wait", "1"),
        nmap_args=("--min-rate", SYN_RATE, "--max-retries", "1"),
        ports="443,8443,9443",
        live=255,
    ),
    "6": Scenario(
        key="6",
        title="closed /16 (127.2.0.0/16 port 443, every SYN answered RST), SYN vs connect",
        targets={
            t: "127.2.0.0/16"
            for t in ("certscan", "certscan-connect", "nmap", "nmap-sS", "masscan", "zmap")
        },
        tools=("certscan", "certscan-connect", "nmap", "nmap-sS", "masscan", "zmap"),
        cap_s={t: 60 for t in TOOLS},
        counters=(("closed6", "127.2.0.0/16"),),
        per_endpoint={"closed6": 65536},
        certscan_args=("--rate", SYN_RATE),
        nmap_args=("--min-rate", SYN_RATE),
    ),
    "7": Scenario(
        key="7",
        title="sparse /16: 1,000 TLS endpoints (1.5 %) on one of 3 ports in 127.1.0.0/16, "
        "the rest dropped (24 closed)",
        targets={t: "127.1.0.0/16" for t in ("certscan", "nmap-sS+certscan", "masscan")},
        tools=("certscan", "nmap-sS+certscan", "masscan"),
        cap_s={"certscan": 90, "nmap-sS+certscan": 120, "masscan": 60},
        counters=(("sparse", "127.1.0.0/16"),),
        certscan_args=("--rate", SYN_RATE, "--syn-wait", "1"),
        nmap_args=("--min-rate", SYN_RATE, "--max-retries", "1"),
        ports="443,8443,9443",
        live=1000,
    ),
}
# -- the same sweeps over a veth pair into a peer namespace, where masscan and zmap can run --
VETH_TOOLS = ("certscan", "certscan-connect", "nmap", "nmap-sS", "masscan", "zmap")
SCENARIOS["5v"] = Scenario(
    key="5v",
    title="dead /16 x 3 ports over veth (10.3.0.0/16 dropped in the peer namespace), "
    "ports 443,8443,9443, one retry each",
    targets={t: "10.3.0.0/16" for t in ("certscan", "nmap-sS", "masscan")},
    tools=("certscan", "nmap-sS", "masscan"),
    cap_s={"certscan": 60, "nmap-sS": 30, "masscan": 30},
    counters=(("dead5v", "10.3.0.0/16"),),
    certscan_args=("--rate", SYN_RATE, "--syn-wait", "1", "--syn-retries", "1"),
    nmap_args=("--min-rate", SYN_RATE, "--max-retries", "1"),
    peer_args={"masscan": ("--retries", "1")},
    ports="443,8443,9443",
    veth=True,
)
SCENARIOS["6v"] = Scenario(
    key="6v",
    title="closed /16 over veth (10.2.0.0/16 port 443, every SYN answered RST by the peer "
    "namespace)",
    targets={
        t: "10.2.0.0/16"
        for t in ("certscan", "certscan-connect", "nmap", "nmap-sS", "masscan", "zmap")
    },
    tools=("certscan", "certscan-connect", "nmap", "nmap-sS", "masscan", "zmap"),
    cap_s={**{t: 60 for t in TOOLS}, "masscan": 30},  # masscan may stay in its final wait
    counters=(("closed6v", "10.2.0.0/16"),),
    per_endpoint={"closed6v": 65536},
    certscan_args=("--rate", SYN_RATE),
    nmap_args=("--min-rate", SYN_RATE),
    veth=True,
)
DEAD_RANGE = "127.3.0.0/16"
#: Scenarios 5 and 7: silent on every port they sweep (prerouting drops), beside DEAD_RANGE's
#: port 443. The lab's /22 keeps 443 for scenarios 1 and 4 (its 24 spare addresses refuse).
EXTRA_DROPS = (
    ("127.3.0.0/16", "8443,9443"),
    ("127.1.4.0-127.1.255.255", "443,8443,9443"),
    ("127.1.0.0/22", "8443,9443"),
)

# -- issue 14 (speed): the 10,000-endpoint lab (5) and the start-up rows (6) -------------------
SCENARIOS["8"] = Scenario(
    key="8",
    title="10,000 TLS endpoints (127.8.0.0/19 + 127.8.32.0/21, 10,240 addresses)",
    targets={t: BIG_TARGETS for t in ("certscan", "certscan-w2", "nmap")},
    tools=("certscan", "certscan-w2", "nmap"),
    cap_s={"certscan": 240, "certscan-w2": 240, "nmap": 240},
    counters=(("big_live", BIG_LIVE), ("big_all", "127.8.0.0/18")),
    per_endpoint={"big_live": 10_000},
    nmap_args=("--script", "ssl-cert"),
    live=10_000,
)
#: 8p, the ``ports`` layout: a memory check at 65,536 endpoints (certscan only; not by default).
SCENARIOS["8p"] = Scenario(
    key="8p",
    title="65,536 TLS endpoints, ports layout (4,096 addresses × 16 ports): memory check",
    targets={t: PORTS_TARGETS for t in ("certscan", "certscan-w2")},
    tools=("certscan", "certscan-w2"),
    cap_s={"certscan": 480, "certscan-w2": 480},
    counters=(("ports_live", PORTS_LIVE),),
    per_endpoint={"ports_live": ENDPOINTS},
    ports=PORTS_ARG,
    live=ENDPOINTS,
)
#: Scenario 6's "tools" are the start-up rows (``startup.ROWS``); ``bench.py`` runs them itself.
SCENARIOS["9"] = Scenario(
    key="9",
    title="start-up: certscan --version, --help, sweep --help, one refused target vs nmap",
    targets={row: "127.0.0.1" for row in STARTUP_ROWS},
    tools=STARTUP_ROWS,
    cap_s={row: 30 for row in STARTUP_ROWS},
    counters=(("startup", "127.0.0.1"),),
    ports="1",
)


def command(
    tool: str,
    scenario: Scenario,
    *,
    run_dir: Path,
    certscan: Sequence[str],
    certscan_extra: Sequence[str],
    sslyze: str | None,
) -> tuple[list[str], Path]:
    """The argument list for ``tool`` in ``scenario`` and the file its results land in."""
    target = scenario.targets[tool]
    if tool in CERTSCAN_VARIANTS:
        db = run_dir / "inventory.db"
        argv = [*certscan, "sweep", *scenario.networks(tool), "-p", scenario.ports, "--db", str(db)]
        argv += ["--no-progress", "--json", *scenario.certscan_args, *certscan_extra]
        return [*argv, *CERTSCAN_VARIANTS[tool]], run_dir / "stdout"
    if tool == "nmap-sS":
        xml = run_dir / "nmap.xml"
        argv = ["nmap", "-n", "-Pn", "-sS", f"-p{scenario.ports}", *scenario.nmap_args, "-T4"]
        return [*argv, "-oX", str(xml), *scenario.networks(tool)], xml
    if tool == "nmap-sS+certscan":
        # Discovery by nmap, then certscan connects to the responders only (its --json lines
        # on standard output are what is checked).
        gnmap, found = run_dir / "nmap.gnmap", run_dir / "responders.txt"
        scan = ["nmap", "-n", "-Pn", "-sS", f"-p{scenario.ports}", *scenario.nmap_args, "-T4"]
        scan += ["-oG", str(gnmap), *scenario.networks(tool)]
        pick = f"awk -F{shlex.quote(chr(9))} {shlex.quote(OPEN_PORTS_AWK)}"
        sweep = [*certscan, "sweep", "-f", str(found), "--db", str(run_dir / "inventory.db")]
        sweep += ["--no-progress", "--json", "--discover", "connect", *certscan_extra]
        script = (
            f"{shlex.join(scan)} >/dev/null && {pick} {shlex.quote(str(gnmap))} > "
            f"{shlex.quote(str(found))} && {shlex.join(sweep)}"
        )
        return ["sh", "-c", script], run_dir / "stdout"
    if tool in ("masscan", "zmap"):
        if not scenario.veth or not PEER_MAC["mac"]:
            raise ValueError(f"{tool} cannot run here: {NO_ETHERNET}")
        return _peer_command(tool, scenario, run_dir)
    if tool == "nmap":
        xml = run_dir / "nmap.xml"
        argv = ["nmap", "-n", "-Pn", "-sT", f"-p{scenario.ports}", *scenario.nmap_args, "-T4"]
        return [*argv, "-oX", str(xml), *scenario.networks(tool)], xml
    if tool == "sslyze":
        assert sslyze is not None
        targets = run_dir / "targets.txt"
        network = ipaddress.ip_network(target)
        # sslyze takes no CIDR: every address of the range, closed ones included, in order.
        targets.write_text("".join(f"{a}:{LAB_PORT}\n" for a in network))
        out = run_dir / "sslyze.json"
        argv = [sslyze, "--certinfo", "--mozilla_config", "disable", "--quiet"]
        return [*argv, "--targets_in", str(targets), "--json_out", str(out)], out
    raise ValueError(f"unknown tool {tool!r}")


def _peer_command(tool: str, scenario: Scenario, run_dir: Path) -> tuple[list[str], Path]:
    """masscan or zmap over the veth pair: our address, the peer's MAC as the router, the same
    rate and a 1 s wait for the last replies, as certscan's ``--syn-wait 1``."""
    mac = PEER_MAC["mac"]
    extra = scenario.peer_args.get(tool, ())
    if tool == "masscan":
        out = run_dir / "masscan.txt"
        argv = ["masscan", *scenario.networks(tool), f"-p{scenario.ports}", "--rate", SYN_RATE]
        argv += ["--adapter", veth.ADAPTER, "--adapter-ip", veth.LOCAL, "--router-mac", mac]
        return [*argv, "--wait", "1", "--show", "closed", *extra, "-oL", str(out)], out
    if "," in scenario.ports:
        raise ValueError("zmap scans one port per run")
    out = run_dir / "zmap.csv"
    argv = ["zmap", "-b", veth.EMPTY_BLOCKLIST, "-p", scenario.ports, "-r", SYN_RATE]
    argv += ["-i", veth.ADAPTER, "-S", veth.LOCAL, "-G", mac, "--cooldown-time", "1"]
    argv += ["-f", "saddr,classification", "--output-filter", "repeat = 0", *extra]
    return [*argv, "-o", str(out), *scenario.networks(tool)], out


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """What a run found, checked against the lab. ``full_chain`` is None when not reported."""

    with_cert: int  # endpoints for which the tool reported a leaf certificate
    matched: int  # of those, leaves whose SHA-256 equals the lab's for that address
    full_chain: int | None  # matched leaves followed by the lab's intermediate
    garbled: int  # output records that could not be read
    note: str = ""
    starttls: int = 0  # of the matched leaves, those from STARTTLS (mail) endpoints


def _norm_hex(value: object) -> str:
    return str(value).replace(":", "").strip().lower()


def _pem_sha256(pem: bytes) -> str | None:
    match = PEM_RE.search(pem)
    if not match:
        return None
    body = b"".join(match.group(0).splitlines()[1:-1])
    try:
        return hashlib.sha256(base64.b64decode(body, validate=False)).hexdigest()
    except ValueError:
        return None


def parse_certscan(lines: Iterable[str], lab: Mapping[str, Endpoint]) -> Found:
    """Check certscan ``--json`` lines (one object per endpoint that accepted a connection)."""
    with_cert = matched = full = garbled = starttls = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record: Any = json.loads(line)
            chain = record.get("chain") or []
            address = str(record["address"])
            port = int(record.get("port") or LAB_PORT)
            fingerprints = [_norm_hex(c["sha256"]) for c in chain]
        except (ValueError, KeyError, TypeError, AttributeError):
            garbled += 1
            continue
        if not fingerprints:
            continue
        with_cert += 1
        expected = lab.get(f"{address}:{port}") or lab.get(address)  # ports layout: per port
        if expected and expected.port == port and fingerprints[0] == expected.leaf_sha256:
            matched += 1
            starttls += expected.protocol != "tls"
            if fingerprints[1:2] == [expected.intermediate_sha256]:
                full += 1
    return Found(
        with_cert=with_cert, matched=matched, full_chain=full, garbled=garbled, starttls=starttls
    )


def parse_nmap(xml_path: Path, lab: Mapping[str, Endpoint]) -> Found:
    """Check nmap ``-oX`` output: the ``ssl-cert`` script's PEM (or SHA-1) per host."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as exc:
        return Found(with_cert=0, matched=0, full_chain=None, garbled=1, note=str(exc)[:80])
    with_cert = matched = starttls = 0
    for host in root.iter("host"):
        address_el = host.find("address")
        address = address_el.get("addr", "") if address_el is not None else ""
        for port_el in host.iter("port"):
            for script in port_el.iter("script"):
                if script.get("id") != "ssl-cert":
                    continue
                with_cert += 1
                expected = lab.get(address)
                if _nmap_cert_matches(script, expected, port_el.get("portid", "")):
                    matched += 1
                    starttls += expected is not None and expected.protocol != "tls"
    return Found(
        with_cert=with_cert, matched=matched, full_chain=None, garbled=0, starttls=starttls
    )


def _nmap_cert_matches(script: ET.Element, expected: Endpoint | None, portid: str) -> bool:
    if expected is None or portid != str(expected.port):
        return False
    elems = {e.get("key"): (e.text or "") for e in script.iter("elem")}
    sha256 = _pem_sha256(elems.get("pem", "").encode())
    return sha256 == expected.leaf_sha256 or (
        sha256 is None and _norm_hex(elems.get("sha1", "")) == expected.leaf_sha1
    )


def parse_sslyze(json_path: Path, lab: Mapping[str, Endpoint]) -> Found:
    """Check sslyze ``--json_out``: the received chain of every certificate deployment."""
    try:
        report: Any = json.loads(json_path.read_text(errors="replace"))
        results = list(report["server_scan_results"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Found(with_cert=0, matched=0, full_chain=0, garbled=1, note=str(exc)[:80])
    with_cert = matched = full = garbled = 0
    for result in results:
        try:
            address = str(result["server_location"]["ip_address"])
            info = (result.get("scan_result") or {}).get("certificate_info") or {}
            deployments = (info.get("result") or {}).get("certificate_deployments") or []
            chain = deployments[0]["received_certificate_chain"] if deployments else []
            fingerprints = [_pem_sha256(str(c["as_pem"]).encode()) for c in chain]
        except (KeyError, TypeError, AttributeError, IndexError):
            garbled += 1
            continue
        if not fingerprints:
            continue
        with_cert += 1
        expected = lab.get(address)
        if expected and fingerprints[0] == expected.leaf_sha256:
            matched += 1
            if fingerprints[1:2] == [expected.intermediate_sha256]:
                full += 1
    return Found(with_cert=with_cert, matched=matched, full_chain=full, garbled=garbled)


def certscan_db_certificates(db: Path) -> int | None:
    """Distinct ``sha256`` values across the inventory's tables (schema-agnostic), or None."""
    if not db.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            seen: set[str] = set()
            for table in tables:
                columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
                if "sha256" in columns:
                    rows = conn.execute(f'SELECT DISTINCT sha256 FROM "{table}"')
                    seen.update(_norm_hex(r[0]) for r in rows if r[0] is not None)
            return len(seen)
    except sqlite3.Error:
        return None


def count_found(
    tool: str, output: Path, run_dir: Path, lab: Mapping[str, Endpoint]
) -> Found | None:
    """The run's findings checked against the lab (None for a tool with nothing to check)."""
    if tool in DISCOVERY_ONLY:
        return None
    if tool in CERTSCAN_VARIANTS or tool == "nmap-sS+certscan":
        text = output.read_text(errors="replace") if output.is_file() else ""
        found = parse_certscan(text.splitlines(), lab)
        db_certs = certscan_db_certificates(run_dir / "inventory.db")
        if db_certs is not None:
            found = Found(
                with_cert=found.with_cert,
                matched=found.matched,
                full_chain=found.full_chain,
                garbled=found.garbled,
                starttls=found.starttls,
                note=f"{db_certs} distinct sha256 in the SQLite inventory",
            )
        return found
    if tool == "nmap":
        return parse_nmap(output, lab)
    if tool == "sslyze":
        return parse_sslyze(output, lab)
    return None
