"""The mixed lab's STARTTLS half: 160 mail endpoints served by nginx's mail proxy on loopback.

Theory of operation
-------------------
``build_mail_lab`` writes, once, a throwaway root, an RSA and an ECDSA intermediate and 160
leaves under ``bench/out/mail-lab``, and an nginx configuration whose ``mail`` block serves them
at 127.4.0.1 .. 127.4.0.160, one address per endpoint, one port each, cycling through SMTP on 25,
SMTP submission on 587, IMAP on 143 and POP3 on 110 (so 40 endpoints per port, half ECDSA P-256,
half RSA-2048). Every server has ``starttls on``: it greets in plaintext and upgrades to TLS after
``STARTTLS`` (SMTP, IMAP) or ``STLS`` (POP3), sending leaf + intermediate. The mail proxy wants
an ``auth_http`` URL; it points at a closed loopback port and is never called, since no client
here authenticates. nginx ships its mail proxy as a dynamic module on Debian
(``libnginx-mod-mail``); ``mail_module_directive`` finds it, or says it is missing.

``MailNginx`` is the lab's ``Nginx`` with this configuration and a readiness probe that speaks
each protocol's STARTTLS with the standard library's clients and checks the leaf served.
"""

from __future__ import annotations

import hashlib
import imaplib
import ipaddress
import json
import poplib
import shutil
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import nginx_lab
from nginx_lab import Endpoint, Lab

from scanner import certgen

MAIL_NETWORK = ipaddress.IPv4Network("127.4.0.0/24")
MAIL_SIZE = 160
#: (port, protocol) by endpoint index modulo 4.
MAIL_PORTS: tuple[tuple[int, str], ...] = (
    (25, "smtp"),
    (587, "smtp"),
    (143, "imap"),
    (110, "pop3"),
)
MAIL_LAYOUT_VERSION = 1
RSA_KEYS = 4
AUTH_HTTP = "127.0.0.1:9/certscan-bench-never-called"
INSTALL_HINT = "apt-get install -y libnginx-mod-mail"


def mail_addresses() -> Iterator[tuple[str, int, str]]:
    """(address, port, protocol) of each mail endpoint, in order."""
    first = int(MAIL_NETWORK.network_address) + 1
    for index in range(MAIL_SIZE):
        port, protocol = MAIL_PORTS[index % len(MAIL_PORTS)]
        yield str(ipaddress.IPv4Address(first + index)), port, protocol


def mail_module_directive(nginx: str) -> str | None:
    """The ``load_module`` line nginx needs for ``mail`` ("" if built in), None if unavailable."""
    try:
        done = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    flags = (done.stdout + done.stderr).split()
    if "--with-mail" in flags:
        return ""
    if "--with-mail=dynamic" not in flags:
        return None
    modules = next(
        (f.split("=", 1)[1] for f in flags if f.startswith("--modules-path=")),
        "/usr/lib/nginx/modules",
    )
    module = Path(modules) / "ngx_mail_module.so"
    return f"load_module {module};" if module.is_file() else None


def _generate(root: Path) -> None:
    certs, keys = root / "certs", root / "keys"
    certs.mkdir(parents=True, exist_ok=True)
    keys.mkdir(parents=True, exist_ok=True)
    ca = certgen.make_ca("certscan bench mail root", org="certscan bench")
    inter = {
        "rsa": certgen.make_ca(
            "certscan bench mail RSA intermediate",
            org="certscan bench",
            issuer=ca,
            key=certgen.make_key("rsa", 2048),
            path_length=0,
        ),
        "ec": certgen.make_ca(
            "certscan bench mail ECDSA intermediate",
            org="certscan bench",
            issuer=ca,
            path_length=0,
        ),
    }
    rsa_keys = [certgen.make_key("rsa", 2048) for _ in range(RSA_KEYS)]
    for n, rsa_key in enumerate(rsa_keys):
        path = keys / f"rsa-{n}.key"
        path.write_bytes(certgen.Issued(ca.cert, rsa_key).key_pem)
        path.chmod(0o600)
    endpoints: list[dict[str, object]] = []
    not_after: datetime | None = None
    for index, (address, port, protocol) in enumerate(mail_addresses()):
        kind = "ec" if (index // len(MAIL_PORTS)) % 2 == 0 else "rsa"
        name = f"mail{index:03d}.bench.certscan.test"
        key = certgen.make_key("ec") if kind == "ec" else rsa_keys[index % RSA_KEYS]
        leaf = certgen.make_leaf(
            inter[kind],
            cn=name,
            org="certscan bench",
            dns_names=(name,),
            ip_addresses=(address,),
            key=key,
            days=nginx_lab.LEAF_DAYS,
        )
        not_after = leaf.cert.not_valid_after_utc
        chain_file = certs / f"{index:03d}.pem"
        chain_file.write_bytes(certgen.chain_pem(leaf, inter[kind]))
        if kind == "ec":
            key_file = keys / f"ec-{index:03d}.key"
            key_file.write_bytes(leaf.key_pem)
            key_file.chmod(0o600)
        else:
            key_file = keys / f"rsa-{index % RSA_KEYS}.key"
        endpoints.append(
            {
                "address": address,
                "port": port,
                "protocol": protocol,
                "key_type": kind,
                "leaf_sha256": hashlib.sha256(leaf.der).hexdigest(),
                "leaf_sha1": hashlib.sha1(leaf.der).hexdigest(),
                "intermediate_sha256": hashlib.sha256(inter[kind].der).hexdigest(),
                "chain_file": str(chain_file),
                "key_file": str(key_file),
            }
        )
    assert not_after is not None
    manifest = {
        "layout_version": MAIL_LAYOUT_VERSION,
        "network": str(MAIL_NETWORK),
        "count": len(endpoints),
        "generated": datetime.now(UTC).isoformat(),
        "not_after": not_after.isoformat(),
        "endpoints": endpoints,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (root / "fingerprints.txt").write_text(
        "# address port protocol leaf-sha256 intermediate-sha256 key-type\n"
        + "".join(
            f"{e['address']} {e['port']} {e['protocol']} {e['leaf_sha256']} "
            f"{e['intermediate_sha256']} {e['key_type']}\n"
            for e in endpoints
        )
    )


def _load(root: Path) -> Lab | None:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        if manifest["layout_version"] != MAIL_LAYOUT_VERSION or manifest["count"] != MAIL_SIZE:
            return None
        left = datetime.fromisoformat(manifest["not_after"]) - datetime.now(UTC)
        if left < nginx_lab.MIN_REMAINING:
            return None
        endpoints = tuple(Endpoint(**e) for e in manifest["endpoints"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if [(e.address, e.port, e.protocol) for e in endpoints] != list(mail_addresses()):
        return None
    if not all(Path(e.chain_file).is_file() and Path(e.key_file).is_file() for e in endpoints):
        return None
    return Lab(root=root, endpoints=endpoints)


def mail_conf(lab: Lab, run_dir: Path, load_module: str) -> str:
    """nginx.conf for the mail proxy alone; logs and pid in ``run_dir``."""
    lines = ["# generated by bench/mail_lab.py; do not edit"]
    if load_module:
        lines.append(load_module)
    lines += [
        "daemon off;",
        "worker_processes auto;",
        "worker_rlimit_nofile 16384;",
        f"error_log {run_dir / 'error.log'} warn;",
        f"pid {run_dir / 'nginx.pid'};",
        "events { worker_connections 8192; }",
        "mail {",
        f"    auth_http {AUTH_HTTP};",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    starttls on;",
    ]
    for e in lab.endpoints:
        lines.append(
            f"    server {{ listen {e.address}:{e.port}; protocol {e.protocol}; "
            f"ssl_certificate {e.chain_file}; ssl_certificate_key {e.key_file}; }}"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def build_mail_lab(out: Path, nginx: str) -> Lab:
    """The mail lab under ``out/mail-lab`` (generated once) with its nginx.conf written."""
    load_module = mail_module_directive(nginx)
    if load_module is None:
        raise nginx_lab.LabError(
            f"{nginx} has no mail module (scenario 4 needs it): {INSTALL_HINT}, "
            "or leave scenario 4 out with --scenarios 1,2,3"
        )
    out = out.resolve()
    root = out / "mail-lab"
    lab = _load(root)
    if lab is None:
        started = time.monotonic()
        print(f"bench: generating the mail lab of {MAIL_SIZE} endpoints in {root} ...", flush=True)
        shutil.rmtree(root, ignore_errors=True)
        _generate(root)
        lab = _load(root)
        assert lab is not None, "freshly generated mail lab does not load"
        print(f"bench: mail lab generated in {time.monotonic() - started:.1f} s", flush=True)
    run_dir = out / MailNginx.RUN_DIR_NAME
    run_dir.mkdir(parents=True, exist_ok=True)
    lab.conf.write_text(mail_conf(lab, run_dir, load_module))
    return lab


_PLAIN_CONTEXT_CACHE: list[ssl.SSLContext] = []


def _context() -> ssl.SSLContext:
    if not _PLAIN_CONTEXT_CACHE:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _PLAIN_CONTEXT_CACHE.append(context)
    return _PLAIN_CONTEXT_CACHE[0]


def starttls_leaf_sha256(endpoint: Endpoint, timeout: float) -> str:
    """Speak ``endpoint``'s protocol, upgrade with STARTTLS/STLS, return the leaf's SHA-256."""
    context = _context()
    der: bytes | None
    if endpoint.protocol == "smtp":
        with smtplib.SMTP(endpoint.address, endpoint.port, timeout=timeout) as smtp:
            smtp.starttls(context=context)
            assert isinstance(smtp.sock, ssl.SSLSocket)
            der = smtp.sock.getpeercert(binary_form=True)
    elif endpoint.protocol == "imap":
        imap = imaplib.IMAP4(endpoint.address, endpoint.port, timeout=timeout)
        try:
            imap.starttls(ssl_context=context)
            sock = imap.socket()
            assert isinstance(sock, ssl.SSLSocket)
            der = sock.getpeercert(binary_form=True)
        finally:
            imap.shutdown()
    elif endpoint.protocol == "pop3":
        pop = poplib.POP3(endpoint.address, endpoint.port, timeout=timeout)
        try:
            pop.stls(context=context)
            assert isinstance(pop.sock, ssl.SSLSocket)
            der = pop.sock.getpeercert(binary_form=True)
        finally:
            pop.close()
    else:
        raise ValueError(f"no STARTTLS probe for {endpoint.protocol!r}")
    return hashlib.sha256(der or b"").hexdigest()


class MailNginx(nginx_lab.Nginx):
    """nginx's mail proxy serving the mail lab; ready once one endpoint per port upgrades."""

    RUN_DIR_NAME = "nginx-mail"

    def _sample(self) -> list[Endpoint]:
        return [*self._lab.endpoints[: len(MAIL_PORTS)], *self._lab.endpoints[-len(MAIL_PORTS) :]]

    def _served_leaf(self, endpoint: Endpoint) -> str:
        try:
            return starttls_leaf_sha256(endpoint, timeout=2.0)
        except (smtplib.SMTPException, imaplib.IMAP4.error, poplib.error_proto) as exc:
            raise OSError(str(exc)) from exc


def describe(lab: Lab) -> str:
    """A one-line summary of the mail lab for the results file."""
    per_port: dict[str, int] = {}
    for e in lab.endpoints:
        key = f"{e.protocol.upper()} {e.port}"
        per_port[key] = per_port.get(key, 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in per_port.items())
    return (
        f"nginx mail proxy (STARTTLS) serving {len(lab.endpoints)} endpoints "
        f"{lab.endpoints[0].address}–{lab.endpoints[-1].address}, one port each ({parts})"
    )
