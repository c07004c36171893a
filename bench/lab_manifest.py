"""What the HTTPS lab and the mail lab share: issuing their certificates and their manifest.

Theory of operation
-------------------
Each lab (``nginx_lab``, ``mail_lab``) is generated once into its own directory: a throwaway
root, an RSA and an ECDSA intermediate (``Hierarchy``), a few RSA keys shared among the RSA
leaves, and one leaf per endpoint, written as a chain file (leaf + intermediate) and a key file
(``issue_endpoint``). ``write_manifest`` records every endpoint (address, port, protocol, key
type, the leaf's SHA-256 and SHA-1, the intermediate's SHA-256, its files) in ``manifest.json``,
which scanners' output is checked against, and the same for people in ``fingerprints.txt``.
``load_endpoints`` reads a lab back only if the manifest matches the caller's layout version
and endpoint list, every file is there and the leaves stay valid for ``MIN_REMAINING`` yet;
otherwise the caller regenerates it. Which addresses, ports and key types a lab uses is the
caller's business.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

# The certscan checkout's scanner package, also when the benchmark's Python has no certscan.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scanner.lab import certgen

T = TypeVar("T")

HTTPS_PORT = 443
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
    port: int = HTTPS_PORT
    protocol: str = "tls"  # "tls", or the STARTTLS protocol of a mail endpoint


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


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _sha256(issued: certgen.Issued) -> str:
    return hashlib.sha256(issued.der).hexdigest()


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """A lab's root, its intermediate per key type, and the RSA keys its RSA leaves share."""

    root: certgen.Issued
    intermediates: dict[str, certgen.Issued]  # "rsa" / "ec"
    rsa_keys: tuple[certgen.PrivateKey, ...]
    certs: Path
    keys: Path


def make_hierarchy(lab_root: Path, label: str, rsa_keys: int) -> Hierarchy:
    """A fresh root and intermediates named "certscan bench {label}...", and ``rsa_keys`` RSA
    keys written as ``keys/rsa-N.key``; ``certs`` and ``keys`` are created under ``lab_root``."""
    certs, keys = lab_root / "certs", lab_root / "keys"
    certs.mkdir(parents=True, exist_ok=True)
    keys.mkdir(parents=True, exist_ok=True)
    org = "certscan bench"
    root = certgen.make_ca(f"{org} {label}root", org=org)
    intermediates = {
        "rsa": certgen.make_ca(
            f"{org} {label}RSA intermediate",
            org=org,
            issuer=root,
            key=certgen.make_key("rsa", 2048),
            path_length=0,
        ),
        "ec": certgen.make_ca(
            f"{org} {label}ECDSA intermediate", org=org, issuer=root, path_length=0
        ),
    }
    shared = tuple(certgen.make_key("rsa", 2048) for _ in range(rsa_keys))
    for n, rsa_key in enumerate(shared):
        _write(keys / f"rsa-{n}.key", certgen.Issued(root.cert, rsa_key).key_pem, 0o600)
    return Hierarchy(root, intermediates, shared, certs, keys)


def issue_endpoint(
    h: Hierarchy,
    *,
    address: str,
    name: str,
    kind: str,
    rsa_index: int,
    stem: str,
    **extra: object,
) -> tuple[dict[str, object], datetime]:
    """Issue the leaf of one endpoint (ECDSA with its own key, or RSA with shared key
    ``rsa_index``), write ``certs/{stem}.pem`` (leaf + intermediate) and, for ECDSA,
    ``keys/ec-{stem}.key``; return its manifest entry (plus ``extra``) and its not-after."""
    inter = h.intermediates[kind]
    key = certgen.make_key("ec") if kind == "ec" else h.rsa_keys[rsa_index]
    leaf = certgen.make_leaf(
        inter,
        cn=name,
        org="certscan bench",
        dns_names=(name,),
        ip_addresses=(address,),
        key=key,
        days=LEAF_DAYS,
    )
    chain_file = h.certs / f"{stem}.pem"
    _write(chain_file, certgen.chain_pem(leaf, inter))
    if kind == "ec":
        key_file = h.keys / f"ec-{stem}.key"
        _write(key_file, leaf.key_pem, 0o600)
    else:
        key_file = h.keys / f"rsa-{rsa_index}.key"
    entry: dict[str, object] = {
        "address": address,
        **extra,
        "key_type": kind,
        "leaf_sha256": _sha256(leaf),
        "leaf_sha1": hashlib.sha1(leaf.der).hexdigest(),
        "intermediate_sha256": _sha256(inter),
        "chain_file": str(chain_file),
        "key_file": str(key_file),
    }
    return entry, leaf.cert.not_valid_after_utc


def write_manifest(
    lab_root: Path,
    h: Hierarchy,
    endpoints: Sequence[dict[str, object]],
    *,
    layout_version: int,
    not_after: datetime,
    columns: Sequence[str],
    **fields: object,
) -> None:
    """``manifest.json`` (the endpoints, ``fields``, the root) and ``fingerprints.txt`` (one
    line per endpoint, ``columns`` of its entry) into ``lab_root``; ``root.pem`` beside them."""
    _write(lab_root / "root.pem", h.root.cert_pem)
    manifest = {
        "layout_version": layout_version,
        **fields,
        "count": len(endpoints),
        "generated": datetime.now(UTC).isoformat(),
        "not_after": not_after.isoformat(),
        "root_sha256": _sha256(h.root),
        "endpoints": list(endpoints),
    }
    (lab_root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    header = "# " + " ".join(c.replace("_", "-") for c in columns) + "\n"
    lines = "".join(" ".join(str(e[c]) for c in columns) + "\n" for e in endpoints)
    (lab_root / "fingerprints.txt").write_text(header + lines)


def write_https_lab(
    root: Path,
    *,
    label: str,
    addresses: Sequence[str],
    rsa_keys: int,
    domain: str,
    digits: int,
    layout_version: int,
    network: str,
    port: int,
) -> None:
    """One HTTPS endpoint per address (``ep<index>.<domain>``, zero-padded to ``digits``),
    alternating ECDSA (even index) and RSA leaves over ``rsa_keys`` shared RSA keys, each sent
    with its intermediate; then the manifest. The 1,000 and 10,000 labs both are this."""
    h = make_hierarchy(root, label, rsa_keys)
    endpoints: list[dict[str, object]] = []
    not_after: datetime | None = None
    for index, address in enumerate(addresses):
        entry, not_after = issue_endpoint(
            h,
            address=address,
            name=f"ep{index:0{digits}d}.{domain}",
            kind="ec" if index % 2 == 0 else "rsa",
            rsa_index=(index // 2) % rsa_keys,
            stem=f"{index:0{digits}d}",
        )
        endpoints.append(entry)
    assert not_after is not None
    write_manifest(
        root,
        h,
        endpoints,
        layout_version=layout_version,
        not_after=not_after,
        columns=("address", "leaf_sha256", "intermediate_sha256", "key_type"),
        network=network,
        port=port,
    )


def load_endpoints(
    lab_root: Path,
    *,
    layout_version: int,
    expected: Sequence[object],
    identity: Callable[[Endpoint], object],
) -> Lab | None:
    """The lab in ``lab_root`` if its manifest has ``layout_version``, its endpoints' identities
    are ``expected`` in order, all its files exist and its leaves stay valid for a while yet."""
    try:
        manifest = json.loads((lab_root / "manifest.json").read_text())
        if manifest["layout_version"] != layout_version or manifest["count"] != len(expected):
            return None
        if datetime.fromisoformat(manifest["not_after"]) - datetime.now(UTC) < MIN_REMAINING:
            return None
        endpoints = tuple(Endpoint(**e) for e in manifest["endpoints"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if [identity(e) for e in endpoints] != list(expected):
        return None
    if not all(Path(e.chain_file).is_file() and Path(e.key_file).is_file() for e in endpoints):
        return None
    return Lab(root=lab_root, endpoints=endpoints)


def cached_lab(
    root: Path,
    what: str,
    load: Callable[[Path], T | None],
    generate: Callable[[Path], None],
) -> T:
    """The lab under ``root``: loaded when it is there and current, else generated afresh
    (printing how long that took) and loaded."""
    lab = load(root)
    if lab is not None:
        return lab
    started = time.monotonic()
    print(f"bench: generating {what} in {root} ...", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    generate(root)
    lab = load(root)
    assert lab is not None, f"freshly generated {what} does not load"
    print(f"bench: {what} generated in {time.monotonic() - started:.1f} s", flush=True)
    return lab
