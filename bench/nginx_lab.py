"""The benchmark's lab: 1,000 TLS endpoints served by one nginx on loopback addresses.

Theory of operation
-------------------
``build_lab`` writes, once, everything nginx needs under ``bench/out/lab``: a throwaway root, two
intermediates (one RSA, one ECDSA), and 1,000 leaves issued by them, alternating ECDSA (even
index) and RSA (odd index). Each endpoint's chain file holds leaf + intermediate, so scanners see
a two-certificate chain. RSA leaves reuse a handful of keys to keep generation quick; every leaf
still has its own serial, names and fingerprint. ``manifest.json`` records each endpoint's
address and the SHA-256/SHA-1 fingerprints a scanner's output is checked against
(``fingerprints.txt`` lists the same for people). A lab is
reused while its manifest matches this code's layout and its leaves stay valid for a month.

The endpoints are the first 1,000 addresses after the network address of 127.1.0.0/22, that is
127.1.0.1 .. 127.1.3.232; the other 24 addresses of the /22 (127.1.0.0 and 127.1.3.233 ..
127.1.3.255) have no listener, so they answer with a reset. Port 443 on each address.

``Nginx`` runs the server in the foreground (``daemon off``) as a child of the benchmark, so the
benchmark owns its lifetime; it is only ever started inside the benchmark's network namespace.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scanner import certgen

LAB_NETWORK = ipaddress.IPv4Network("127.1.0.0/22")
LAB_SIZE = 1000
LAB_PORT = 443
LAYOUT_VERSION = 3
RSA_KEYS = 8
LEAF_DAYS = 397
MIN_REMAINING = timedelta(days=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One lab endpoint and the fingerprints (lowercase hex) of what it serves."""

    address: str
    key_type: str  # "ec" or "rsa"
    leaf_sha256: str
    leaf_sha1: str
    intermediate_sha256: str
    chain_file: str
    key_file: str
    port: int = LAB_PORT
    protocol: str = "tls"  # "tls", or the STARTTLS protocol of a mail endpoint


class LabError(RuntimeError):
    """A lab cannot be built or served here."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lab:
    """A generated lab on disk."""

    root: Path
    endpoints: tuple[Endpoint, ...]

    @property
    def by_address(self) -> dict[str, Endpoint]:
        return {e.address: e for e in self.endpoints}

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"


def lab_addresses() -> Iterator[str]:
    """The lab's 1,000 endpoint addresses, in order."""
    first = int(LAB_NETWORK.network_address) + 1
    for offset in range(LAB_SIZE):
        yield str(ipaddress.IPv4Address(first + offset))


def _fingerprints(issued: certgen.Issued) -> tuple[str, str]:
    der = issued.der
    return hashlib.sha256(der).hexdigest(), hashlib.sha1(der).hexdigest()


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _generate(root: Path) -> None:
    """Write certificates, keys and the manifest for a fresh lab into ``root``."""
    certs, keys = root / "certs", root / "keys"
    certs.mkdir(parents=True, exist_ok=True)
    keys.mkdir(parents=True, exist_ok=True)
    ca = certgen.make_ca("certscan bench root", org="certscan bench")
    inter = {
        "rsa": certgen.make_ca(
            "certscan bench RSA intermediate",
            org="certscan bench",
            issuer=ca,
            key=certgen.make_key("rsa", 2048),
            path_length=0,
        ),
        "ec": certgen.make_ca(
            "certscan bench ECDSA intermediate", org="certscan bench", issuer=ca, path_length=0
        ),
    }
    _write(root / "root.pem", ca.cert_pem)
    rsa_keys = [certgen.make_key("rsa", 2048) for _ in range(RSA_KEYS)]
    for n, rsa_key in enumerate(rsa_keys):
        _write(keys / f"rsa-{n}.key", certgen.Issued(ca.cert, rsa_key).key_pem, 0o600)
    endpoints: list[dict[str, str]] = []
    not_after: datetime | None = None
    for index, address in enumerate(lab_addresses()):
        kind = "ec" if index % 2 == 0 else "rsa"
        name = f"ep{index:04d}.bench.certscan.test"
        key = certgen.make_key("ec") if kind == "ec" else rsa_keys[(index // 2) % RSA_KEYS]
        leaf = certgen.make_leaf(
            inter[kind],
            cn=name,
            org="certscan bench",
            dns_names=(name,),
            ip_addresses=(address,),
            key=key,
            days=LEAF_DAYS,
        )
        not_after = leaf.cert.not_valid_after_utc
        chain_file = certs / f"{index:04d}.pem"
        _write(chain_file, certgen.chain_pem(leaf, inter[kind]))
        if kind == "ec":
            key_file = keys / f"ec-{index:04d}.key"
            _write(key_file, leaf.key_pem, 0o600)
        else:
            key_file = keys / f"rsa-{(index // 2) % RSA_KEYS}.key"
        sha256, sha1 = _fingerprints(leaf)
        endpoints.append(
            {
                "address": address,
                "key_type": kind,
                "leaf_sha256": sha256,
                "leaf_sha1": sha1,
                "intermediate_sha256": _fingerprints(inter[kind])[0],
                "chain_file": str(chain_file),
                "key_file": str(key_file),
            }
        )
    assert not_after is not None
    manifest = {
        "layout_version": LAYOUT_VERSION,
        "network": str(LAB_NETWORK),
        "port": LAB_PORT,
        "count": len(endpoints),
        "generated": datetime.now(UTC).isoformat(),
        "not_after": not_after.isoformat(),
        "root_sha256": _fingerprints(ca)[0],
        "endpoints": endpoints,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (root / "fingerprints.txt").write_text(
        "# address leaf-sha256 intermediate-sha256 key-type\n"
        + "".join(
            f"{e['address']} {e['leaf_sha256']} {e['intermediate_sha256']} {e['key_type']}\n"
            for e in endpoints
        )
    )


def _load(root: Path) -> Lab | None:
    """The lab in ``root`` if it is complete, current and valid for a while yet."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        if manifest["layout_version"] != LAYOUT_VERSION or manifest["count"] != LAB_SIZE:
            return None
        if datetime.fromisoformat(manifest["not_after"]) - datetime.now(UTC) < MIN_REMAINING:
            return None
        endpoints = tuple(Endpoint(**e) for e in manifest["endpoints"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if [e.address for e in endpoints] != list(lab_addresses()):
        return None
    if not all(Path(e.chain_file).is_file() and Path(e.key_file).is_file() for e in endpoints):
        return None
    return Lab(root=root, endpoints=endpoints)


def nginx_conf(lab: Lab, run_dir: Path) -> str:
    """A minimal nginx.conf serving every lab endpoint; logs, pid and temp files in ``run_dir``."""
    tmp = run_dir / "tmp"
    lines = [
        "# generated by bench/nginx_lab.py; do not edit",
        "daemon off;",
        "worker_processes auto;",
        "worker_rlimit_nofile 16384;",
        f"error_log {run_dir / 'error.log'} warn;",
        f"pid {run_dir / 'nginx.pid'};",
        "events { worker_connections 8192; }",
        "http {",
        "    access_log off;",
        f"    client_body_temp_path {tmp / 'body'};",
        f"    proxy_temp_path {tmp / 'proxy'};",
        f"    fastcgi_temp_path {tmp / 'fastcgi'};",
        f"    uwsgi_temp_path {tmp / 'uwsgi'};",
        f"    scgi_temp_path {tmp / 'scgi'};",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
    ]
    for e in lab.endpoints:
        lines.append(
            f"    server {{ listen {e.address}:{LAB_PORT} ssl; "
            f"ssl_certificate {e.chain_file}; ssl_certificate_key {e.key_file}; return 204; }}"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def build_lab(out: Path) -> Lab:
    """The lab under ``out/lab``, generated on first use (or when stale) and cached."""
    out = out.resolve()
    root = out / "lab"
    lab = _load(root)
    if lab is None:
        started = time.monotonic()
        print(f"bench: generating the lab of {LAB_SIZE} endpoints in {root} ...", flush=True)
        shutil.rmtree(root, ignore_errors=True)
        _generate(root)
        lab = _load(root)
        assert lab is not None, "freshly generated lab does not load"
        print(f"bench: lab generated in {time.monotonic() - started:.1f} s", flush=True)
    run_dir = out / "nginx"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    lab.conf.write_text(nginx_conf(lab, run_dir))
    return lab


def _served_leaf_sha256(address: str, timeout: float) -> str:
    """Handshake once with ``address`` (verification off) and return the leaf's SHA-256."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((address, LAB_PORT), timeout=timeout) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return hashlib.sha256(der or b"").hexdigest()


class Nginx:
    """The lab's nginx as a child process; a context manager that always stops it."""

    RUN_DIR_NAME = "nginx"

    def __init__(self, lab: Lab, nginx: str, out: Path) -> None:
        self._lab = lab
        self._nginx = nginx
        self._run_dir = out.resolve() / self.RUN_DIR_NAME
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def error_log(self) -> Path:
        return self._run_dir / "error.log"

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, ready_within: float = 60.0) -> None:
        """Start nginx and return once sample endpoints serve the expected leaves."""
        self.error_log.unlink(missing_ok=True)
        self._proc = subprocess.Popen(
            [self._nginx, "-p", str(self._run_dir), "-c", str(self._lab.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self._run_dir / "stderr.log").open("wb"),
        )
        sample = self._sample()
        deadline = time.monotonic() + ready_within
        pending = list(sample)
        while pending:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self._proc.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx not ready after {ready_within:.0f} s: {self._log_tail()}"
                )
            endpoint = pending[0]
            try:
                served = self._served_leaf(endpoint)
            except OSError:
                time.sleep(0.2)
                continue
            if served != endpoint.leaf_sha256:
                raise RuntimeError(f"{endpoint.address} serves {served}, not the lab's leaf")
            pending.pop(0)

    def _sample(self) -> list[Endpoint]:
        """The endpoints checked before the lab counts as up."""
        return [*self._lab.endpoints[::100], self._lab.endpoints[-1]]

    def _served_leaf(self, endpoint: Endpoint) -> str:
        """SHA-256 of the leaf ``endpoint`` serves; OSError while it is not up yet."""
        return _served_leaf_sha256(endpoint.address, timeout=2.0)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    def _log_tail(self) -> str:
        text = ""
        for path in (self._run_dir / "stderr.log", self.error_log):
            if path.is_file():
                text += path.read_text(errors="replace")[-1500:]
        return text.strip() or "(no log output)"
