"""``certscan import``: certificate files into the inventory, judged like swept endpoints.

Each file (or keystore entry) becomes one observation of the endpoint ``file:/real/path``
(``file:/real/path#alias`` for a keystore entry), port 0, protocol ``file``, whose chain is the
bundle in file order: the position of a certificate in the bundle is its chain position. A file
that cannot be read, is too large, or cannot be decrypted is an observation with status
``unreadable`` and the reason as detail; a refused path (outside the roots, a symlink loop, not
a regular file) is reported but not stored. All the imports of one command are one scan run, so
the history, findings lifecycle, metrics, hooks and owners treat files like any endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from reports import assess
from scanner.files.decode import Bundle, decode
from scanner.files.walk import Candidate, Refused, find, read_bounded
from scanner.inventory.store import Inventory
from scanner.models import CertInfo, FailureKind, Handshake, Outcome, ScanFailure, Target
from scanner.parse import parse_certificate

__all__ = ["ImportOptions", "ImportReport", "file_address", "import_files"]

BATCH = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportOptions:
    """What to import: ``paths`` (files, directories, globs) inside ``roots`` (default: the
    paths themselves), at most ``max_files`` files of at most ``max_bytes`` each; ``password``
    opens PKCS#12 files and keystores (read from an environment variable by the caller)."""

    paths: tuple[str, ...]
    roots: tuple[Path, ...] = ()
    max_files: int = 10_000
    max_bytes: int = 4 * 1024 * 1024
    password: str | None = field(default=None, repr=False)
    criteria: assess.Criteria


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    """What an import did: the scan, the observations stored (``endpoints``: address ->
    status and detail), and the paths refused with why."""

    scan_id: int
    endpoints: dict[str, tuple[str, str | None]]
    refused: tuple[Refused, ...]
    findings: int


def file_address(path: Path, label: str | None) -> str:
    """``file:/real/path``, with ``#label`` for a keystore entry."""
    return f"file:{path}" + (f"#{label}" if label else "")


def _outcomes(
    item: Candidate, options: ImportOptions, now: datetime
) -> list[tuple[Outcome, list[CertInfo]]]:
    data = read_bounded(item.path, options.max_bytes)
    decoded = decode(data, password=options.password) if isinstance(data, bytes) else None
    if decoded is None or not isinstance(decoded, list):
        reason = data if isinstance(data, str) else getattr(decoded, "reason", "unreadable")
        target = Target(address=file_address(item.path, None), port=0)
        failure = ScanFailure(
            target=target,
            started_at=now,
            kind=FailureKind.UNREADABLE,
            detail=reason,
            connected=True,
        )
        return [(failure, [])]
    out: list[tuple[Outcome, list[CertInfo]]] = []
    labels: set[str | None] = set()
    for bundle in decoded:
        label = _unique(bundle, labels)
        target = Target(address=file_address(item.path, label), port=0)
        handshake = Handshake(
            target=target,
            started_at=now,
            chain=bundle.ders,
            tls_version="",
            cipher="",
            protocol="file",
        )
        out.append((handshake, [parse_certificate(der) for der in bundle.ders]))
    return out


def _unique(bundle: Bundle, seen: set[str | None]) -> str | None:
    label = bundle.label
    n = 2
    while label in seen:
        label = f"{bundle.label}~{n}"
        n += 1
    seen.add(label)
    return label


def _default_root(name: str) -> Path:
    """A named path is its own root; a glob's root is the directory before its first wildcard."""
    cut = min((name.index(c) for c in "*?[" if c in name), default=None)
    if cut is None:
        return Path(name)
    prefix = name[:cut]
    return Path(prefix) if prefix.endswith("/") else Path(prefix or ".").parent


def import_files(inventory: Inventory, options: ImportOptions) -> ImportReport:
    """Read, store and judge (blocking I/O; see the module docstring)."""
    roots = options.roots or tuple(
        Path(p) if not set(p) & set("*?[") else Path(p.split("*")[0] or ".") for p in options.paths
    )
    now = datetime.now(UTC)
    found = list(find(options.paths, roots=roots, max_files=options.max_files))
    candidates = [c for c in found if isinstance(c, Candidate)]
    refused = tuple(r for r in found if isinstance(r, Refused))
    spec = {"import": sorted(options.paths), "roots": sorted(str(r) for r in roots)}
    scan_id = inventory.start_scan(spec=spec, total=len(candidates))
    endpoints: dict[str, tuple[str, str | None]] = {}
    items: list[tuple[Outcome, Sequence[CertInfo]]] = []
    done = 0
    for candidate in candidates:
        for outcome, chain in _outcomes(candidate, options, now):
            items.append((outcome, chain))
            detail = outcome.detail if isinstance(outcome, ScanFailure) else None
            endpoints[outcome.target.address] = (outcome.status, detail)
        done += 1
        if len(items) >= BATCH:
            inventory.record_batch(scan_id, items, watermark=done)
            items = []
    inventory.record_batch(scan_id, items, watermark=done)
    inventory.finish_scan(scan_id, "finished")
    judged = assess.record_scan(inventory, scan_id, criteria=options.criteria, now=now)
    return ImportReport(
        scan_id=scan_id,
        endpoints=endpoints,
        refused=refused,
        findings=sum(len(v.findings) for v in judged.views),
    )
