"""The inventory's database schema: SQLModel table classes, the only SQLModel classes in certscan,
and how they map to and from certscan's dataclasses (the pure row builders at the end). Engines,
schema creation and migration from older versions live in ``scanner.inventory.schema``.

Rows are built only from already-validated dataclasses (``Outcome``, ``CertInfo``), by the pure
helpers at the end of this module and by ``scanner.inventory.store``, which writes them in bulk
through the
Core tables; SQLModel table classes do not validate, so nothing else should build rows.

Portable choices (the same schema runs on SQLite and PostgreSQL):

* ``endpoint.sni`` is ``''`` when no SNI is sent, never NULL: NULLs are distinct in a UNIQUE
  constraint on both engines, so ``UNIQUE(address, port, sni)`` would let ``(a, 443, NULL)``
  repeat. ``scanner.inventory.store`` maps ``None`` <-> ``''`` at its edge.
* Times are :class:`UTCDateTime`: ``timestamptz`` on PostgreSQL; on SQLite a naive UTC string
  (every value in the same fixed-width format, so text comparison orders by time). Both come
  back as timezone-aware UTC datetimes; naive datetimes are refused on the way in.
* Attacker-controlled text is not indexed: a PostgreSQL btree entry is limited to ~2.7 kB and a
  crafted subject is not. Indexed columns hold values certscan computes (hex digests, times,
  ids) or validated targets.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, assert_never

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel

from scanner.models import CertInfo, Handshake, Outcome, ScanFailure
from scanner.staple import next_update_for

#: Bumped whenever a table changes; stored in ``certscan_meta`` (see ``scanner.inventory.schema``).
#: 1: scans, endpoints, certificates, observations and their chains.
#: 2: ``observation.legacy_versions`` and ``observation.connected``; the ``finding`` table.
#: 3: ``observation.protocol``; the ``observation_alt_certificate`` table (``--all-certs``).
#: 4: the ``hook_run`` table (renewal hooks, ``scanner.inventory.hooks``).
#: From 4 on, the schema is managed by Alembic (``scanner/migrations``); this number is kept in
#: ``certscan_meta`` for certscans older than Alembic, and is the oldest schema a database can
#: still be used by. Revisions ``0002`` (sharded and distributed scans), ``0003_tls_details``
#: (legacy capture, key exchange), ``0004_renewal`` (proof of possession, renewal
#: verification, ARI windows) and the later ones are additive, so it stays 4.
SCHEMA_VERSION = 4


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (see the module docstring)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: certscan stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: 64-bit ids and counters (a sweep may exceed 2^31 targets); plain INTEGER on SQLite, where only
#: ``INTEGER PRIMARY KEY`` is the auto-incrementing rowid (and is 64-bit anyway).
BigInt = BigInteger().with_variant(Integer(), "sqlite")


def _big(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(BigInt, nullable=nullable, index=index))


def _id() -> Any:
    return Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))


def _time(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _text(*, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(Text(), nullable=nullable))


def _blob(*, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(LargeBinary(), nullable=nullable))


class Meta(SQLModel, table=True):
    """Key/value facts about the database itself (``schema_version``)."""

    __tablename__ = "certscan_meta"

    key: str = Field(sa_column=Column(Text(), primary_key=True))
    value: str = Field(sa_column=Column(Text(), nullable=False))


class ScanRun(SQLModel, table=True):
    """One ``certscan sweep`` invocation, resumable until it is ``finished``."""

    __tablename__ = "scan_run"

    id: int | None = _id()
    started_at: datetime = _time()
    finished_at: datetime | None = _time(nullable=True)  # NULL while running
    status: str = Field(sa_column=Column(Text(), nullable=False))  # running/finished/...
    spec: str = Field(sa_column=Column(Text(), nullable=False))  # normalised JSON of the command
    spec_hash: str = Field(sa_column=Column(Text(), nullable=False, index=True))
    total: int = _big()
    watermark: int = _big()  # indices < it are stored
    done: int = _big()
    ok: int = _big()
    failed: int = _big()
    version: str = Field(sa_column=Column(Text(), nullable=False))  # certscan version
    # Added in revision 0002 (NULL for a scan that is not sharded):
    shards: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))


class ScanShard(SQLModel, table=True):
    """One shard of a sharded scan (``--workers``, ``--shards``, ``certscan dispatch``).

    ``status``: ``queued`` (published, no agent has started it), ``running``, ``done`` or
    ``failed``. Counters are the shard's own; the scan's counters are their sum. A distributed
    shard may be run more than once (a redelivered task): ``attempt`` names the run whose
    progress is counted, and a newer run (``attempt_started_at``) takes over from an older one.
    """

    __tablename__ = "scan_shard"

    scan_id: int = Field(
        sa_column=Column(BigInt, ForeignKey("scan_run.id"), primary_key=True, autoincrement=False)
    )
    shard: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    status: str = Field(sa_column=Column(Text(), nullable=False))
    zone: str | None = _text()
    total: int = _big()
    watermark: int = _big()  # shard positions < it are stored
    done: int = _big()
    ok: int = _big()
    failed: int = _big()
    attempts: int = Field(sa_column=Column(Integer(), nullable=False))
    attempt: str | None = _text()  # the id of the run being counted
    attempt_started_at: datetime | None = _time(nullable=True)
    agent: str | None = _text()  # who runs it: "host/pid"
    error: str | None = _text()
    queued_at: datetime = _time()
    started_at: datetime | None = _time(nullable=True)
    finished_at: datetime | None = _time(nullable=True)
    updated_at: datetime = _time()
    # Added in revision 0005_zones (NULL: none yet, or a shard from before it):
    rejected: int | None = Field(default=None, sa_column=Column(BigInt, nullable=True))
    announced: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    pending: str | None = _text()  # the owner's shard_finished, waiting for its batches (JSON)
    dead_letters: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))


class ScanPlan(SQLModel, table=True):
    """What a scan was planned from (revision 0005_zones): ``digest`` of the resolved plan
    (``--resume`` refuses a plan that resolves differently now) and, for a dispatched scan, the
    shard task template (JSON) that ingest checks outcomes against and ``scans retry`` sends."""

    __tablename__ = "scan_plan"

    scan_id: int = Field(
        sa_column=Column(BigInt, ForeignKey("scan_run.id"), primary_key=True, autoincrement=False)
    )
    digest: str = Field(sa_column=Column(Text(), nullable=False))
    task: str | None = _text()
    created_at: datetime = _time()


class IngestedBatch(SQLModel, table=True):
    """A result batch of a distributed shard that ``certscan ingest`` has stored: its natural key
    makes a duplicated or redelivered message a no-op."""

    __tablename__ = "ingested_batch"

    scan_id: int = Field(
        sa_column=Column(BigInt, ForeignKey("scan_run.id"), primary_key=True, autoincrement=False)
    )
    shard: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    attempt: str = Field(sa_column=Column(Text(), primary_key=True))
    seq: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    items: int = Field(sa_column=Column(Integer(), nullable=False))
    ingested_at: datetime = _time()


class Endpoint(SQLModel, table=True):
    """Where a certificate was (or was not) found: ``(address, port, sni)``, ``sni`` '' for none."""

    __tablename__ = "endpoint"
    __table_args__ = (UniqueConstraint("address", "port", "sni", name="uq_endpoint"),)

    id: int | None = _id()
    address: str = Field(sa_column=Column(Text(), nullable=False))
    port: int = Field(sa_column=Column(Integer(), nullable=False))
    sni: str = Field(sa_column=Column(Text(), nullable=False))
    first_seen: datetime = _time()
    last_seen: datetime = _time()


class Certificate(SQLModel, table=True):
    """One distinct certificate, keyed by the SHA-256 of its DER (the source of truth).

    ``info`` is the JSON of every ``CertInfo`` field (exact, NUL and lone surrogates escaped by
    JSON); the other text columns are for listing and filtering and have NUL and unencodable
    characters replaced by U+FFFD, so they may differ from the certificate in those characters.
    """

    __tablename__ = "certificate"

    sha256: str = Field(sa_column=Column(Text(), primary_key=True))
    der: bytes = Field(sa_column=Column(LargeBinary(), nullable=False))
    error: str | None = _text()
    subject: str | None = _text()
    subject_cn: str | None = _text()
    subject_o: str | None = _text()
    issuer: str | None = _text()
    issuer_cn: str | None = _text()
    issuer_o: str | None = _text()
    serial: str | None = _text()
    not_before: datetime | None = _time(nullable=True)
    not_after: datetime | None = _time(nullable=True, index=True)
    san_dns: str | None = _text()  # DNS SANs, one per line
    key_type: str | None = _text()
    key_bits: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    key_curve: str | None = _text()
    signature_algorithm: str | None = _text()
    signature_hash: str | None = _text()
    is_ca: bool | None = Field(default=None, nullable=True)
    self_issued: bool = Field(default=False, nullable=False)
    spki_sha256: str | None = Field(default=None, sa_column=Column(Text(), index=True))
    info: str = Field(sa_column=Column(Text(), nullable=False))
    first_seen: datetime = _time()


class Observation(SQLModel, table=True):
    """What one endpoint answered in one scan. ``target_index`` is the target's position in the
    scan's target stream when the writer knows it (used to resume), else NULL."""

    __tablename__ = "observation"
    __table_args__ = (
        UniqueConstraint("scan_id", "endpoint_id", name="uq_observation_scan_endpoint"),
        Index("ix_observation_endpoint_time", "endpoint_id", "observed_at", "id"),
        Index("ix_observation_scan_target", "scan_id", "target_index"),
    )

    id: int | None = _id()
    scan_id: int = Field(sa_column=Column(BigInt, ForeignKey("scan_run.id"), nullable=False))
    endpoint_id: int = Field(sa_column=Column(BigInt, ForeignKey("endpoint.id"), nullable=False))
    target_index: int | None = Field(default=None, sa_column=Column(BigInt, nullable=True))
    observed_at: datetime = _time()
    status: str = Field(sa_column=Column(Text(), nullable=False))  # FailureKind value, ok, ...
    error: str | None = _text()  # the failure's detail
    tls_version: str | None = _text()
    cipher: str | None = _text()
    alpn: str | None = _text()
    ocsp_staple: bytes | None = _blob()
    connect_seconds: float | None = None
    handshake_seconds: float | None = None
    elapsed_seconds: float | None = None
    # Added in schema 2 (NULL in older rows):
    legacy_versions: str | None = _text()  # comma-joined; '' probed, none accepted; NULL not probed
    connected: bool | None = Field(default=None, nullable=True)  # TCP connection accepted
    # Added in schema 3 (NULL in older rows and for failures):
    protocol: str | None = _text()  # "tls" (implicit) or the STARTTLS protocol spoken
    # Added in revision 0002: the shard that stored it (NULL: the scan is not sharded);
    # ``target_index`` is then the position in that shard.
    shard: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    # Added in revision 0003_tls_details (NULL in older rows and for failures): the chain was
    # read from a hand-built legacy hello's records; the key exchange group; the server's
    # signature scheme. (``tls_group``: ``group`` is an SQL keyword.)
    legacy_capture: bool | None = Field(default=None, nullable=True)
    tls_group: str | None = _text()
    signature_scheme: str | None = _text()
    # Added in revision 0004_renewal: TRUE when the chain came with no proof that the server
    # holds its key (``Handshake.key_proven`` false); NULL otherwise and in older rows.
    key_unproven: bool | None = Field(default=None, nullable=True)
    # Added in revision 0006_sni: the next_update of the staple's answer about the leaf
    # (NULL: no staple, no answer about the leaf, no next_update, or stored before).
    ocsp_next_update: datetime | None = _time(nullable=True)


class ObservationCertificate(SQLModel, table=True):
    """The chain an observation saw: ``position`` 0 is the first certificate presented."""

    __tablename__ = "observation_certificate"

    observation_id: int = Field(
        sa_column=Column(
            BigInt,
            ForeignKey("observation.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        )
    )
    position: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    sha256: str = Field(
        sa_column=Column(Text(), ForeignKey("certificate.sha256"), nullable=False, index=True)
    )


class ObservationAltCertificate(SQLModel, table=True):
    """The other chains an observation saw (``--all-certs``: the server offered only one key
    type at a time): chain ``variant`` (1, 2, ...), ``position`` 0 its first certificate."""

    __tablename__ = "observation_alt_certificate"

    observation_id: int = Field(
        sa_column=Column(
            BigInt,
            ForeignKey("observation.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        )
    )
    variant: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    position: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    sha256: str = Field(
        sa_column=Column(Text(), ForeignKey("certificate.sha256"), nullable=False, index=True)
    )


class Finding(SQLModel, table=True):
    """The lifecycle of one ``reports.model.Finding`` on one endpoint.

    A finding's identity is ``(endpoint_id, kind, sha256 or '')``; at most one row per identity is
    open (``resolved_at`` NULL), enforced by a partial unique index. One that comes back after
    being resolved opens a new row, so the history of each episode is kept. ``sha256`` (NULL for a
    finding about the endpoint as a whole) is not a foreign key: the lifecycle outlives pruning
    certificates. ``severity`` is the label (``high``); ``message`` holds certificate text.
    """

    __tablename__ = "finding"

    id: int | None = _id()
    endpoint_id: int = Field(sa_column=Column(BigInt, ForeignKey("endpoint.id"), nullable=False))
    sha256: str | None = _text()
    kind: str = Field(sa_column=Column(Text(), nullable=False))
    severity: str = Field(sa_column=Column(Text(), nullable=False))
    message: str = Field(sa_column=Column(Text(), nullable=False))
    first_seen: datetime = _time()
    last_seen: datetime = _time()
    resolved_at: datetime | None = _time(nullable=True)  # NULL while open
    first_scan_id: int = Field(sa_column=Column(BigInt, ForeignKey("scan_run.id"), nullable=False))
    last_scan_id: int = Field(sa_column=Column(BigInt, ForeignKey("scan_run.id"), nullable=False))


class HookRun(SQLModel, table=True):
    """One action of a renewal hook on one certificate (``scanner.inventory.hooks``): pending,
    decided, running or finished. ``output_tail`` is bounded; secrets are never stored."""

    __tablename__ = "hook_run"

    id: int | None = _id()
    hook: str = Field(sa_column=Column(Text(), nullable=False))
    sha256: str = Field(sa_column=Column(Text(), nullable=False))
    address: str = Field(sa_column=Column(Text(), nullable=False))
    port: int = Field(sa_column=Column(Integer(), nullable=False))
    sni: str = Field(sa_column=Column(Text(), nullable=False))  # '' when no SNI
    kind: str = Field(sa_column=Column(Text(), nullable=False))
    status: str = Field(sa_column=Column(Text(), nullable=False))
    started_at: datetime | None = _time(nullable=True)
    finished_at: datetime | None = _time(nullable=True)
    exit_status: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    output_tail: str | None = _text()
    new_sha256: str | None = _text()
    attempts: int = Field(sa_column=Column(Integer(), nullable=False))
    next_attempt_at: datetime | None = _time(nullable=True)
    decided_by: str | None = _text()
    decided_at: datetime | None = _time(nullable=True)
    created_at: datetime = _time()
    # Added in revision 0004_renewal (NULL in older rows and until a renewal is verified):
    verify_until: datetime | None = _time(nullable=True)  # re-probe until then
    endpoints_total: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    endpoints_deployed: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    # Added in revision 0009_notify: the severity of the finding the run acted on (NULL in
    # older rows), so a notification is sent again when it rises.
    severity: str | None = _text()


class RenewalEndpoint(SQLModel, table=True):
    """One endpoint a renewal must reach (``scanner.inventory.renewals``): it served the old
    certificate or its key, and ``status`` says whether it serves the new one yet."""

    __tablename__ = "renewal_endpoint"

    hook_run_id: int = Field(
        sa_column=Column(BigInt, ForeignKey("hook_run.id"), primary_key=True, autoincrement=False)
    )
    address: str = Field(sa_column=Column(Text(), primary_key=True))
    port: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    sni: str = Field(sa_column=Column(Text(), primary_key=True))  # '' when no SNI
    status: str = Field(sa_column=Column(Text(), nullable=False))  # pending, deployed, ...
    served_sha256: str | None = _text()  # the leaf it served at the last check
    attempts: int = Field(sa_column=Column(Integer(), nullable=False))
    checked_at: datetime | None = _time(nullable=True)


class AriWindow(SQLModel, table=True):
    """The renewal window a CA suggests for one certificate (RFC 9773), as last fetched."""

    __tablename__ = "ari_window"

    sha256: str = Field(sa_column=Column(Text(), primary_key=True))
    directory: str = Field(sa_column=Column(Text(), nullable=False))
    cert_id: str = Field(sa_column=Column(Text(), nullable=False))
    window_start: datetime = _time()
    window_end: datetime = _time()
    explanation_url: str | None = _text()
    fetched_at: datetime = _time()
    next_fetch_at: datetime = _time()


class EndpointOwner(SQLModel, table=True):
    """Who owns an endpoint (``scanner.inventory.owners``): the first ``[owners]`` rule that
    matched it, re-evaluated whenever the inventory is judged. ``tags`` is a JSON list."""

    __tablename__ = "endpoint_owner"

    endpoint_id: int = Field(
        sa_column=Column(
            BigInt, ForeignKey("endpoint.id", ondelete="CASCADE"), primary_key=True,
            autoincrement=False,
        )
    )  # fmt: skip
    owner: str = Field(sa_column=Column(Text(), nullable=False))
    environment: str | None = _text()
    tags: str = Field(sa_column=Column(Text(), nullable=False))
    rule: str = Field(sa_column=Column(Text(), nullable=False))
    assigned_at: datetime = _time()


class NotifyDigest(SQLModel, table=True):
    """One finding a ``digest = "daily"`` hook collected for the UTC day starting at
    ``window_start`` (``scanner.inventory.notify``); ``context`` is the finding as the hook's
    JSON. Delivered together with the rest of that (hook, day) once the day is over."""

    __tablename__ = "notify_digest"
    __table_args__ = (
        UniqueConstraint("hook", "window_start", "sha256", name="uq_notify_digest_entry"),
    )

    id: int | None = _id()
    hook: str = Field(sa_column=Column(Text(), nullable=False))
    window_start: datetime = _time()
    sha256: str = Field(sa_column=Column(Text(), nullable=False))
    kind: str = Field(sa_column=Column(Text(), nullable=False))
    severity: str = Field(sa_column=Column(Text(), nullable=False))
    context: str = Field(sa_column=Column(Text(), nullable=False))
    collected_at: datetime = _time()
    attempts: int = Field(sa_column=Column(Integer(), nullable=False))
    claim: str | None = _text()  # the delivering runner's token while it sends
    claimed_at: datetime | None = _time(nullable=True)
    next_attempt_at: datetime | None = _time(nullable=True)  # after a failed delivery
    last_error: str | None = _text()
    sent_at: datetime | None = _time(nullable=True)  # NULL until delivered


# The Core tables behind the classes: ``scanner.inventory.store`` writes in bulk through these.
META: Table = SQLModel.metadata.tables["certscan_meta"]
SCAN_RUN: Table = SQLModel.metadata.tables["scan_run"]
ENDPOINT: Table = SQLModel.metadata.tables["endpoint"]
CERTIFICATE: Table = SQLModel.metadata.tables["certificate"]
OBSERVATION: Table = SQLModel.metadata.tables["observation"]
OBSERVATION_CERTIFICATE: Table = SQLModel.metadata.tables["observation_certificate"]
OBSERVATION_ALT_CERTIFICATE: Table = SQLModel.metadata.tables["observation_alt_certificate"]
FINDING: Table = SQLModel.metadata.tables["finding"]
HOOK_RUN: Table = SQLModel.metadata.tables["hook_run"]
RENEWAL_ENDPOINT: Table = SQLModel.metadata.tables["renewal_endpoint"]
ARI_WINDOW: Table = SQLModel.metadata.tables["ari_window"]
SCAN_SHARD: Table = SQLModel.metadata.tables["scan_shard"]
INGESTED_BATCH: Table = SQLModel.metadata.tables["ingested_batch"]
ENDPOINT_OWNER: Table = SQLModel.metadata.tables["endpoint_owner"]
SCAN_PLAN: Table = SQLModel.metadata.tables["scan_plan"]
NOTIFY_DIGEST: Table = SQLModel.metadata.tables["notify_digest"]
#: Every certscan table, parents before children.
ALL_TABLES = (
    META,
    SCAN_RUN,
    ENDPOINT,
    CERTIFICATE,
    OBSERVATION,
    OBSERVATION_CERTIFICATE,
    OBSERVATION_ALT_CERTIFICATE,
    FINDING,
    HOOK_RUN,
    SCAN_SHARD,
    INGESTED_BATCH,
    ENDPOINT_OWNER,
    RENEWAL_ENDPOINT,
    ARI_WINDOW,
    SCAN_PLAN,
    NOTIFY_DIGEST,
)

# Expression and partial indexes are declared on the Core table (both backends support them).
Index(
    "uq_finding_open",
    FINDING.c.endpoint_id,
    FINDING.c.kind,
    func.coalesce(FINDING.c.sha256, ""),
    unique=True,
    sqlite_where=FINDING.c.resolved_at.is_(None),
    postgresql_where=FINDING.c.resolved_at.is_(None),
)
Index("ix_finding_endpoint", FINDING.c.endpoint_id)
Index("ix_hook_run_identity", HOOK_RUN.c.hook, HOOK_RUN.c.sha256)


# --- Row building (pure): dataclass values -> column values, and back ---------------------------

_INFO_HINTS = typing.get_type_hints(CertInfo)
#: CertInfo fields kept in ``certificate.info`` (``der`` and ``sha256`` have their own columns).
_INFO_FIELDS = tuple(
    f.name for f in dataclasses.fields(CertInfo) if f.name not in {"der", "sha256"}
)
_TIME_FIELDS = frozenset(
    n
    for n in _INFO_FIELDS
    if _INFO_HINTS[n] is datetime or datetime in typing.get_args(_INFO_HINTS[n])
)
_TUPLE_FIELDS = frozenset(n for n in _INFO_FIELDS if typing.get_origin(_INFO_HINTS[n]) is tuple)
_INT32_MAX = 2**31 - 1


def clean_text(text: str | None) -> str | None:
    """``text`` storable in any text column: NUL and lone surrogates become U+FFFD."""
    if text is None or (text.isascii() and "\x00" not in text):
        return text
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Pairs of surrogates join up; lone ones become U+FFFD.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def encode_cert_info(info: CertInfo) -> str:
    """Every CertInfo field but ``der``/``sha256`` as JSON text that any backend stores exactly."""
    out: dict[str, object] = {}
    for name in _INFO_FIELDS:
        value = getattr(info, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return json.dumps(out, ensure_ascii=True, separators=(",", ":"))


def decode_cert_info(der: bytes, sha256: str, info: str) -> CertInfo:
    """The CertInfo :func:`encode_cert_info` stored; fields unknown to this version are ignored."""
    raw = json.loads(info)
    kwargs: dict[str, Any] = {}
    for name in _INFO_FIELDS:
        if name not in raw:
            continue  # written by an older certscan: keep the dataclass default
        value = raw[name]
        if value is not None and name in _TIME_FIELDS:
            value = datetime.fromisoformat(value)
        elif name in _TUPLE_FIELDS:
            value = tuple(value)
        kwargs[name] = value
    return CertInfo(der=der, sha256=sha256, **kwargs)


def certificate_row(info: CertInfo, first_seen: datetime) -> dict[str, object]:
    """The ``certificate`` row for ``info`` (already validated by the parser)."""
    key_bits = info.key_bits if info.key_bits is None or info.key_bits <= _INT32_MAX else None
    return {
        "sha256": info.sha256,
        "der": info.der,
        "error": clean_text(info.error),
        "subject": clean_text(info.subject),
        "subject_cn": clean_text(info.subject_cn),
        "subject_o": clean_text(info.subject_o),
        "issuer": clean_text(info.issuer),
        "issuer_cn": clean_text(info.issuer_cn),
        "issuer_o": clean_text(info.issuer_o),
        "serial": clean_text(info.serial),
        "not_before": info.not_before,
        "not_after": info.not_after,
        "san_dns": clean_text("\n".join(info.san_dns)) if info.san_dns else None,
        "key_type": clean_text(info.key_type),
        "key_bits": key_bits,
        "key_curve": clean_text(info.key_curve),
        "signature_algorithm": clean_text(info.signature_algorithm),
        "signature_hash": clean_text(info.signature_hash),
        "is_ca": info.is_ca,
        "self_issued": info.self_issued,
        "spki_sha256": clean_text(info.spki_sha256),
        "info": encode_cert_info(info),
        "first_seen": first_seen,
    }


def endpoint_key(address: str, port: int, sni: str | None) -> tuple[str, int, str]:
    """An endpoint as the ``endpoint`` table keys it: storable text, ``''`` for no SNI."""
    return clean_text(address) or "", port, clean_text(sni) or ""


def encode_versions(versions: tuple[str, ...] | None) -> str | None:
    """``observation.legacy_versions``: None (not probed) stays NULL, ``()`` becomes ``''``."""
    if versions is None:
        return None
    for name in versions:
        if not name or "," in name:
            raise ValueError(f"unstorable protocol version name {name!r}")
    return clean_text(",".join(versions))


def decode_versions(text: str | None) -> tuple[str, ...] | None:
    """The inverse of :func:`encode_versions`."""
    if text is None:
        return None
    return tuple(text.split(",")) if text else ()


def observation_row(outcome: Outcome, endpoint_id: int, scan_id: int) -> dict[str, object]:
    """The ``observation`` row for one outcome (``target_index`` is added by the caller)."""
    common = {"scan_id": scan_id, "endpoint_id": endpoint_id, "observed_at": outcome.started_at}
    match outcome:
        case Handshake():
            return common | {
                "status": outcome.status,
                "error": None,
                "tls_version": clean_text(outcome.tls_version),
                "cipher": clean_text(outcome.cipher),
                "alpn": clean_text(outcome.alpn),
                "ocsp_staple": outcome.ocsp_staple,
                "ocsp_next_update": next_update_for(outcome.ocsp_staple, outcome.chain),
                "connect_seconds": outcome.connect_seconds,
                "handshake_seconds": outcome.handshake_seconds,
                "elapsed_seconds": outcome.connect_seconds + outcome.handshake_seconds,
                "legacy_versions": encode_versions(outcome.legacy_versions),
                "connected": True,
                "protocol": clean_text(outcome.protocol),
                "legacy_capture": outcome.legacy_capture,
                "tls_group": clean_text(outcome.group),
                "signature_scheme": clean_text(outcome.signature_scheme),
                "key_unproven": True if not outcome.key_proven else None,
            }
        case ScanFailure():
            return common | {
                "status": outcome.status,
                "error": clean_text(outcome.detail),
                "tls_version": None,
                "cipher": None,
                "alpn": None,
                "ocsp_staple": None,
                "ocsp_next_update": None,
                "connect_seconds": None,
                "handshake_seconds": None,
                "elapsed_seconds": outcome.elapsed_seconds,
                "legacy_versions": None,
                "connected": outcome.connected,
                "protocol": None,
                "legacy_capture": None,
                "tls_group": None,
                "signature_scheme": None,
                "key_unproven": None,
            }
        case _:
            assert_never(outcome)


def _spec_default(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(value, key=lambda v: json.dumps(v, sort_keys=True, default=_spec_default))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot store {type(value).__name__} in a scan spec")


def normalise_spec(spec: Mapping[str, object]) -> str:
    """Canonical JSON for a scan's spec: equal specs give equal text (and ``spec_hash``)."""
    return json.dumps(
        spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_spec_default
    )
