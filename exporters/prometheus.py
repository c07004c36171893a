"""Prometheus metrics for the certscan inventory: a custom collector that reads the inventory
on every scrape (no scanning on scrape, no gauges updated on a timer).

Theory of operation
-------------------
:class:`CertscanCollector` ``collect()`` reads one
:class:`~scanner.inventory.metrics.MetricsSnapshot`
(a few set-based queries in one read transaction, see ``scanner.inventory.metrics``) and turns it
into
metric families with :func:`build_metrics`, a pure function. ``describe()`` returns nothing, so
registering the collector never touches the database. A database failure raises
:class:`~scanner.errors.StoreError` out of ``collect()``: the scrape fails as a whole (HTTP 5xx in
the daemon, exit 3 in ``certscan export``) rather than returning a partial inventory whose
missing series would look like resolved alerts.

The metrics (``address``, ``port``, ``sni`` name an endpoint; ``sni`` is '' when none is sent):

``certscan_endpoint_up{address,port,sni}``
    1 when the endpoint's latest observation presented a certificate chain, else 0.
``certscan_endpoint_error{address,port,sni,status}``
    1, only while ``up`` is 0: ``status`` says why (``refused``, ``timeout``, ``tls_alert``...).
``certscan_endpoint_last_seen_timestamp_seconds{address,port,sni}``
    When the endpoint last presented a chain; absent for one that never did.
``certscan_certificate_not_after_timestamp_seconds{address,port,sni,sha256,position}`` and
``certscan_certificate_not_before_timestamp_seconds{...}``
    The validity of every certificate of the endpoint's latest observation *that has a chain*:
    ``position`` is ``leaf`` (the first certificate of the main chain), ``intermediate`` (any
    later certificate of any chain) or ``alt_leaf`` (the first certificate of a chain
    ``--all-certs`` found: an expiring RSA leaf behind an ECDSA default alerts too). The series
    survive a failed scan of the endpoint (``up`` says it failed), and a certificate is never
    dropped for failing verification. Absent only when the certificate has no such date
    (unparsable).
``certscan_ocsp_next_update_timestamp_seconds{address,port,sni,sha256}``
    When the OCSP response the endpoint stapled (about the leaf in the not_after series) stops
    being valid (``next_update``); absent without a staple, or when it answers for another
    certificate or gives no ``next_update``. ``time() > ...`` is a stale staple.
``certscan_certificate_info{sha256,subject_cn,issuer_cn,serial,key_type,key_bits,signature_hash}``
    1 per distinct leaf in the not_after series (or unparsable leaf: labels other than sha256 '').
``certscan_certificate_error{address,port,sni,sha256,reason}``
    1 per reason a certificate of the endpoint fails verification or parsing: the open findings
    of the kinds in :data:`scanner.inventory.metrics.PROBLEM_KINDS` (``untrusted_root``,
    ``hostname_mismatch``, ``expired``, ``revoked``...), plus ``unparsable_certificate``
    whenever the leaf could not be loaded. ``sha256`` is '' for a finding about the endpoint as
    a whole.
``certscan_endpoint_tls_info{address,port,sni,version,cipher,group}``
    1 per endpoint with a chain: the TLS version, cipher suite and key exchange group of that
    observation (``group`` '' when none was used or recorded). Values are bounded:
    ``version`` is one of SSLv2..TLSv1.3 and ``cipher``/``group`` a short OpenSSL or IANA name,
    anything else ``other``.
``certscan_findings{kind,severity}``
    Open findings, counted.
``certscan_scan_duration_seconds{job}``, ``certscan_last_scan_success_timestamp_seconds{job}``,
``certscan_scan_endpoints{job,status}``
    The latest finished scan of each job: how long it ran, when it finished, and its targets by
    outcome (``status`` ``ok``: presented a chain; ``failed``: did not). Absent until a scan
    finishes. ``job`` is the ``certscan serve`` job that ran the scan, ``sweep`` for a scan run
    by ``certscan sweep`` (or ``certscan dispatch``). Prometheus renames a scraped
    ``job`` label to ``exported_job`` unless the scrape config sets ``honor_labels: true``.
``certscan_scan_progress_ratio{job}``
    ``done / total`` of the latest scan of each job, running or not (the one started last):
    climbs from 0 to 1 while it runs (1 for a scan with no targets).
``certscan_scan_shards{job,state}``
    The shards of each job's latest *sharded* scan (``sweep --workers``, a dispatch to zone
    agents) by ``state``: ``queued``, ``running``, ``done``, ``failed``, ``interrupted``, every
    state present (0 when none). The rule is simply "the sharded scan started last": while a
    distributed scan runs it is that scan; once it ends, the series keep its final counts until
    the next one starts. ``certscan_scan_shards{state="failed"} > 0`` is a shard that gave up.

``certscan_renewal_pending_endpoints{hook}``
    Endpoints that still serve the certificate a hook renewed, over the renewals being
    verified (``exporters.hooks.verify``); 0 once every endpoint serves the new one. Absent
    for a hook with no renewal being verified.
``certscan_certificate_renewal_window_start_timestamp_seconds{sha256}``
    The start of the renewal window the certificate's CA suggests (ARI, RFC 9773), for the
    certificates whose window was fetched.

Timestamps are Unix seconds computed by the database (whole seconds on SQLite).

Label values from certificates are hostile. Every value has control, format, surrogate and
line-separator characters replaced by U+FFFD and is cut to :data:`LABEL_LIMIT` characters (to
:data:`HOST_LIMIT` for ``address``/``sni``, which come from validated targets, so that two real
host names are never cut to one) with a trailing ellipsis; quotes and backslashes are escaped by
the exposition writer. Subject alternative names are never labels, so a certificate with 10,000
SANs costs one ``certscan_certificate_info`` series. Each endpoint yields at most five series plus
one per problem reason; two endpoints whose labels become equal after cutting yield one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from scanner.errors import StoreError
from scanner.inventory import metrics as store_metrics
from scanner.inventory import renewals
from scanner.inventory.metrics import MetricsSnapshot
from scanner.inventory.store import Inventory
from scanner.models import STATUS_CLIENT_CERT_REQUIRED, STATUS_OK

__all__ = [
    "DEFAULT_JOB",
    "HOST_LIMIT",
    "LABEL_LIMIT",
    "CertscanCollector",
    "build_metrics",
    "label_value",
]

#: The ``job`` label of scans not run by a ``certscan serve`` job.
DEFAULT_JOB = "sweep"
#: Longest label value (characters) for certificate text and other free text.
LABEL_LIMIT = 128
#: Longest ``address``/``sni`` label value: a DNS name has at most 253 characters.
HOST_LIMIT = 256

_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_CHAIN = frozenset({STATUS_OK, STATUS_CLIENT_CERT_REQUIRED})


def label_value(value: object, limit: int = LABEL_LIMIT) -> str:
    """``value`` as a safe label value: None is '', unsafe characters become U+FFFD, and text
    longer than ``limit`` characters is cut to ``limit`` ending in an ellipsis."""
    text = "" if value is None else str(value)
    if not text.isprintable():  # the common case (plain text) skips the per-character scan
        text = "".join("\ufffd" if unicodedata.category(ch) in _UNSAFE else ch for ch in text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


#: The versions ``certscan_endpoint_tls_info`` names; any other value is ``other``.
TLS_VERSIONS = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"})
#: A cipher or group name as a label: OpenSSL and IANA names are short words, digits, ``-``
#: and ``_``; anything else (or longer) is ``other``, so the label set stays bounded.
_TLS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def tls_labels(version: str | None, cipher: str | None, group: str | None) -> dict[str, str]:
    """The ``version``, ``cipher`` and ``group`` labels: known shapes kept, the rest ``other``
    (``group`` is '' when none was used or recorded)."""

    def name(value: str | None) -> str:
        if not value:
            return ""
        return value if _TLS_NAME.fullmatch(value) else "other"

    return {
        "version": version if version in TLS_VERSIONS else "other",
        "cipher": name(cipher) or "other",
        "group": name(group),
    }


class _Gauge:
    """A gauge family filled with ready label dicts: one dict is shared by the series of an
    endpoint (``GaugeMetricFamily.add_metric`` would build one per sample, a third of the cost
    of a large scrape)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.metric = Metric(name, documentation, "gauge")
        self._name = name
        self._append = self.metric.samples.append

    def add(self, labels: dict[str, str], value: float) -> None:
        self._append(Sample(self._name, labels, value))


def build_metrics(
    snapshot: MetricsSnapshot,
    *,
    job: str = DEFAULT_JOB,
    owners: Mapping[tuple[str, int, str | None], str] | None = None,
) -> list[Metric]:
    """The metric families for ``snapshot`` (module docstring). Pure.

    With ``owners`` (endpoint -> its ``[owners]`` owner; off by default, as it adds a label to
    every per-endpoint series), the per-endpoint series carry an ``owner`` label ('' when
    unowned), cut to :data:`LABEL_LIMIT` characters."""
    up = _Gauge(
        "certscan_endpoint_up",
        "1 when the endpoint's latest observation presented a certificate chain, else 0.",
    )
    down = _Gauge(
        "certscan_endpoint_error",
        "1 while an endpoint is not up: status is why its latest observation found no chain.",
    )
    seen = _Gauge(
        "certscan_endpoint_last_seen_timestamp_seconds",
        "When the endpoint last presented a certificate chain (Unix time).",
    )
    not_after = _Gauge(
        "certscan_certificate_not_after_timestamp_seconds",
        "When a certificate the endpoint last presented expires (Unix time); position is "
        "leaf, intermediate or alt_leaf.",
    )
    not_before = _Gauge(
        "certscan_certificate_not_before_timestamp_seconds",
        "When a certificate the endpoint last presented becomes valid (Unix time); position is "
        "leaf, intermediate or alt_leaf.",
    )
    next_update = _Gauge(
        "certscan_ocsp_next_update_timestamp_seconds",
        "When the OCSP response the endpoint staples for its leaf expires (next_update, "
        "Unix time).",
    )
    info = _Gauge(
        "certscan_certificate_info",
        "Facts about a leaf certificate an endpoint presents (value 1); text cut to "
        f"{LABEL_LIMIT} characters.",
    )
    errors = _Gauge(
        "certscan_certificate_error",
        "1 per reason a certificate of the endpoint fails verification or parsing "
        "(an open finding of that kind); its other series stay.",
    )
    tls_info = _Gauge(
        "certscan_endpoint_tls_info",
        "The TLS version, cipher suite and key exchange group of the endpoint's latest "
        "observation with a chain (value 1); unknown values are 'other'.",
    )
    endpoints: dict[tuple[str, int, str], dict[str, str]] = {}  # stored key -> labels
    emitted: set[tuple[str, str, str]] = set()
    described: set[str] = set()
    problems: set[tuple[str, str, str, str, str]] = set()
    emitted_certs: set[tuple[str, str, str, str, str]] = set()
    for row in snapshot.endpoints:
        address, port, sni = label_value(row.address, HOST_LIMIT), str(row.port), ""
        if row.sni:
            sni = label_value(row.sni, HOST_LIMIT)
        if (address, port, sni) in emitted:
            continue
        emitted.add((address, port, sni))
        labels = endpoints[(row.address, row.port, row.sni)] = {
            "address": address,
            "port": port,
            "sni": sni,
        }
        if owners is not None:
            labels["owner"] = label_value(owners.get((row.address, row.port, row.sni or None), ""))
        is_up = row.status in _CHAIN
        up.add(labels, 1.0 if is_up else 0.0)
        if not is_up:
            down.add({**labels, "status": label_value(row.status)}, 1.0)
        if row.last_seen is not None:
            seen.add(labels, row.last_seen)
        if row.tls_version is not None:
            tls_info.add({**labels, **tls_labels(row.tls_version, row.cipher, row.group)}, 1.0)
        if row.sha256 is None:
            continue
        sha256 = label_value(row.sha256)
        cert = {**labels, "sha256": sha256, "position": "leaf"}
        if row.not_after is not None:
            not_after.add(cert, row.not_after)
        if row.not_before is not None:
            not_before.add(cert, row.not_before)
        if row.ocsp_next_update is not None:  # about the leaf: no position label
            next_update.add({**labels, "sha256": sha256}, row.ocsp_next_update)
        if row.parse_error:
            problems.add((address, port, sni, sha256, "unparsable_certificate"))
        if sha256 not in described:
            described.add(sha256)
            info.add(
                {
                    "sha256": sha256,
                    "subject_cn": label_value(row.subject_cn),
                    "issuer_cn": label_value(row.issuer_cn),
                    "serial": label_value(row.serial),
                    "key_type": label_value(row.key_type),
                    "key_bits": "" if row.key_bits is None else str(row.key_bits),
                    "signature_hash": label_value(row.signature_hash),
                },
                1.0,
            )
    for extra in snapshot.presented:
        where = endpoints.get((extra.address, extra.port, extra.sni))
        if where is None:
            continue
        key = (where["address"], where["port"], where["sni"], extra.sha256, extra.position)
        if key in emitted_certs:
            continue
        emitted_certs.add(key)
        cert = {**where, "sha256": label_value(extra.sha256), "position": extra.position}
        if extra.not_after is not None:
            not_after.add(cert, extra.not_after)
        if extra.not_before is not None:
            not_before.add(cert, extra.not_before)
    for p in snapshot.problems:
        where = endpoints.get((p.address, p.port, p.sni))
        if where is not None:  # an endpoint with no observation has no series to explain
            problems.add(
                (
                    where["address"],
                    where["port"],
                    where["sni"],
                    label_value(p.sha256),
                    label_value(p.kind),
                )
            )
    for a, port, sni, sha256, reason in sorted(problems):
        errors.add({"address": a, "port": port, "sni": sni, "sha256": sha256, "reason": reason}, 1)
    gauges = (up, down, seen, not_after, not_before, next_update, info, errors, tls_info)
    families = [g.metric for g in gauges]
    families.append(_findings(snapshot))
    families.extend(_scan(snapshot, job))
    families.extend(_progress(snapshot, job))
    return families


def _findings(snapshot: MetricsSnapshot) -> Metric:
    family = _Gauge("certscan_findings", "Open findings in the inventory, by kind and severity.")
    counts: dict[tuple[str, str], int] = {}
    for f in snapshot.findings:
        key = (label_value(f.kind), label_value(f.severity))
        counts[key] = counts.get(key, 0) + f.total
    for (kind, severity), count in sorted(counts.items()):
        family.add({"kind": kind, "severity": severity}, float(count))
    return family.metric


def _scan(snapshot: MetricsSnapshot, job: str) -> list[Metric]:
    duration = _Gauge("certscan_scan_duration_seconds", "How long the latest finished scan ran.")
    success = _Gauge(
        "certscan_last_scan_success_timestamp_seconds",
        "When the latest finished scan finished (Unix time).",
    )
    targets = _Gauge(
        "certscan_scan_endpoints",
        "Targets of the latest finished scan by outcome: ok presented a chain, failed did not.",
    )
    for scan_job, scan in snapshot.scans:
        if scan.finished_at is None:
            continue
        name = label_value(scan_job or job)
        duration.add({"job": name}, (scan.finished_at - scan.started_at).total_seconds())
        success.add({"job": name}, scan.finished_at.timestamp())
        targets.add({"job": name, "status": "ok"}, float(scan.ok))
        targets.add({"job": name, "status": "failed"}, float(scan.failed))
    return [duration.metric, success.metric, targets.metric]


def _progress(snapshot: MetricsSnapshot, job: str) -> list[Metric]:
    ratio = _Gauge(
        "certscan_scan_progress_ratio",
        "Targets done / targets of the latest scan of the job, running or not.",
    )
    shards = _Gauge(
        "certscan_scan_shards",
        "Shards of the job's latest sharded scan by state (queued, running, done, failed, "
        "interrupted).",
    )
    seen: set[str] = set()
    for p in snapshot.progress:  # newest first: of two jobs with one label, the newest wins
        name = label_value(p.job or job)
        if name not in seen:
            seen.add(name)
            ratio.add({"job": name}, min(1.0, p.done / p.total) if p.total else 1.0)
    seen.clear()
    for sharded in snapshot.shard_states:
        name = label_value(sharded.job or job)
        if name not in seen:
            seen.add(name)
            for state, count in sharded.states.items():
                shards.add({"job": name, "state": label_value(state)}, float(count))
    return [ratio.metric, shards.metric]


class CertscanCollector(Collector):
    """Reads ``inventory`` on every ``collect()``; register one per registry.

    ``collect()`` runs blocking database queries: an async server calls it (through
    ``generate_latest``) in a worker thread. It raises StoreError when the database fails.
    """

    def __init__(
        self, inventory: Inventory, *, job: str = DEFAULT_JOB, owner_label: bool = False
    ) -> None:
        self._inventory = inventory
        self._job = job
        self._owner_label = owner_label

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        snapshot = store_metrics.read_snapshot(self._inventory.engine, label=self._inventory.label)
        owners = None
        if self._owner_label:
            owners = {key: a.owner for key, a in self._inventory.owners().items()}
        try:
            pending = renewals.pending_by_hook(self._inventory.engine, datetime.now(UTC))
            windows = renewals.ari_starts(self._inventory.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{self._inventory.label}: cannot read renewals: {exc}") from None
        return [
            *build_metrics(snapshot, job=self._job, owners=owners),
            *renewal_metrics(pending, windows),
        ]


def renewal_metrics(pending: Mapping[str, int], windows: Mapping[str, datetime]) -> list[Metric]:
    """The renewal families (module docstring). Pure."""
    family = _Gauge(
        "certscan_renewal_pending_endpoints",
        "Endpoints still serving the certificate a hook renewed (renewal verification).",
    )
    for hook, count in sorted(pending.items()):
        family.add({"hook": label_value(hook)}, float(count))
    start = _Gauge(
        "certscan_certificate_renewal_window_start_timestamp_seconds",
        "Start of the renewal window the certificate's CA suggests (ARI, RFC 9773; Unix time).",
    )
    for sha256, when in sorted(windows.items()):
        start.add({"sha256": label_value(sha256)}, when.timestamp())
    return [family.metric, start.metric]
