"""Certificates on disk against certificates served: ``file_not_deployed``. Pure.

Theory of operation
-------------------
``certscan import`` puts certificate files in the inventory as endpoints ``file:/path``. For each
file whose leaf is a server certificate (not a CA) with DNS names, :func:`undeployed` looks at the
network endpoints whose main leaf shares one of those names (case-insensitive). When such an
endpoint serves a *different* certificate that ends before the one on disk, the newer
certificate was written but never loaded: the classic renewal where the file was replaced and
the service not reloaded. Both sides get ``file_not_deployed`` (medium): the endpoint ("serves an
older version of the certificate on disk") and the file ("on disk but no endpoint serves it").
An endpoint serving a certificate *newer* than the file says nothing about the file being
needed (it may be an old copy), so it is not a finding; neither is a file whose names no
endpoint serves.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from reports.model import EndpointInput, EndpointKey, Proposal
from reports.names import clean
from scanner.models import CertInfo, Severity

__all__ = ["undeployed"]

FILE_PREFIX = "file:"
_SHOWN = 3
_FAR_PAST = datetime.min.replace(tzinfo=UTC)


def _names(cert: CertInfo) -> set[str]:
    return {n.lower().rstrip(".") for n in cert.san_dns}


def _label(key: EndpointKey) -> str:
    address, port, sni = key
    if address.startswith(FILE_PREFIX):
        return clean(address)
    host = f"[{address}]" if ":" in address else address
    return f"{clean(host)}:{port}" + (f" ({clean(sni)})" if sni else "")


def _listed(keys: list[EndpointKey]) -> str:
    shown = ", ".join(_label(k) for k in keys[:_SHOWN])
    return shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def undeployed(endpoints: Iterable[EndpointInput]) -> dict[EndpointKey, Proposal]:
    """``file_not_deployed`` for files and endpoints (module docstring)."""
    files: list[tuple[EndpointKey, CertInfo]] = []
    served: dict[str, list[tuple[EndpointKey, CertInfo]]] = {}
    for endpoint in endpoints:
        if not endpoint.chain or endpoint.chain[0].error is not None:
            continue
        leaf = endpoint.chain[0]
        if endpoint.address.startswith(FILE_PREFIX):
            if leaf.is_ca is not True and leaf.san_dns and leaf.not_after is not None:
                files.append((endpoint.key, leaf))
            continue
        for name in _names(leaf):
            served.setdefault(name, []).append((endpoint.key, leaf))
    out: dict[EndpointKey, Proposal] = {}
    for file_key, disk in sorted(files):
        assert disk.not_after is not None
        stale: dict[EndpointKey, CertInfo] = {}
        current = False
        for name in _names(disk):
            for key, cert in served.get(name, ()):
                if cert.sha256 == disk.sha256:
                    current = True
                elif (cert.not_after or _FAR_PAST) < disk.not_after:
                    stale[key] = cert
        if not stale:
            continue
        keys = sorted(stale, key=lambda k: (k[0], k[1], k[2] or ""))
        out[file_key] = Proposal(
            kind="file_not_deployed",
            severity=Severity.MEDIUM,
            message=(
                f"this certificate (not after {disk.not_after:%Y-%m-%d}) is on disk but "
                f"{'not every' if current else 'no'} endpoint serving its names serves it: "
                f"{_listed(keys)} still serve(s) an older one"
            ),
            sha256=disk.sha256,
        )
        for key in keys:
            cert = stale[key]
            when = f"{cert.not_after:%Y-%m-%d}" if cert.not_after else "?"
            out.setdefault(
                key,
                Proposal(
                    kind="file_not_deployed",
                    severity=Severity.MEDIUM,
                    message=(
                        f"serves an older version (not after {when}) of the certificate on disk "
                        f"in {_label(file_key)} (sha256 {disk.sha256[:16]}…, not after "
                        f"{disk.not_after:%Y-%m-%d}): reload or redeploy the service"
                    ),
                    sha256=cert.sha256,
                ),
            )
    return out
