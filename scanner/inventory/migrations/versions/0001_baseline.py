"""Baseline: the inventory as schema version 4 left it; adopts databases made before Alembic.

Revision ID: 0001
Revises: (none)

Frozen history: the tables are spelled out here, never taken from ``scanner.inventory.tables``.

The upgrade also adopts a database written before Alembic (``schema_version`` 1 to 4, no
``alembic_version``): it creates only the tables and indexes that are missing, adds the nullable
columns that later versions added (``observation.legacy_versions``, ``connected``, ``protocol``),
runs schema 2's data step on a database older than 2, and records ``schema_version`` 4 (which
certscans older than Alembic still read to decide whether they understand the database). On an
empty database it simply creates everything.

Downgrade drops every table, and so every row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: A certscan without Alembic (schema 4) keeps working after this revision.
additive = True

#: What ``certscan_meta.schema_version`` says once this revision is applied.
SCHEMA_VERSION = 4
#: 64-bit ids and counters; INTEGER on SQLite (its rowid is 64-bit already).
BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", BIG, primary_key=True, autoincrement=True)


def _big(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, BIG, nullable=nullable)


def _int(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _text(name: str, *, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, TIME, nullable=nullable)


def _key(name: str, parent: str, *, cascade: bool = False) -> sa.Column[int]:
    """A BIGINT part of a composite primary key that references ``parent``."""
    fk = sa.ForeignKey(parent, ondelete="CASCADE" if cascade else None)
    return sa.Column(name, BIG, fk, primary_key=True, autoincrement=False)


def _tables() -> dict[str, list[SchemaItem]]:
    """Every table of schema 4, parents before children (fresh objects on each call)."""
    return {
        "certscan_meta": [
            sa.Column("key", sa.Text(), primary_key=True),
            _text("value", nullable=False),
        ],
        "scan_run": [
            _id(),
            _time("started_at"),
            _time("finished_at", nullable=True),
            _text("status", nullable=False),
            _text("spec", nullable=False),
            _text("spec_hash", nullable=False),
            _big("total"),
            _big("watermark"),
            _big("done"),
            _big("ok"),
            _big("failed"),
            _text("version", nullable=False),
        ],
        "endpoint": [
            _id(),
            _text("address", nullable=False),
            _int("port"),
            _text("sni", nullable=False),
            _time("first_seen"),
            _time("last_seen"),
            sa.UniqueConstraint("address", "port", "sni", name="uq_endpoint"),
        ],
        "certificate": [
            sa.Column("sha256", sa.Text(), primary_key=True),
            sa.Column("der", sa.LargeBinary(), nullable=False),
            *(
                _text(name)
                for name in (
                    "error",
                    "subject",
                    "subject_cn",
                    "subject_o",
                    "issuer",
                    "issuer_cn",
                    "issuer_o",
                    "serial",
                )
            ),
            _time("not_before", nullable=True),
            _time("not_after", nullable=True),
            _text("san_dns"),
            _text("key_type"),
            _int("key_bits", nullable=True),
            _text("key_curve"),
            _text("signature_algorithm"),
            _text("signature_hash"),
            sa.Column("is_ca", sa.Boolean(), nullable=True),
            sa.Column("self_issued", sa.Boolean(), nullable=False),
            _text("spki_sha256"),
            _text("info", nullable=False),
            _time("first_seen"),
        ],
        "observation": [
            _id(),
            sa.Column("scan_id", BIG, sa.ForeignKey("scan_run.id"), nullable=False),
            sa.Column("endpoint_id", BIG, sa.ForeignKey("endpoint.id"), nullable=False),
            _big("target_index", nullable=True),
            _time("observed_at"),
            _text("status", nullable=False),
            _text("error"),
            _text("tls_version"),
            _text("cipher"),
            _text("alpn"),
            sa.Column("ocsp_staple", sa.LargeBinary(), nullable=True),
            sa.Column("connect_seconds", sa.Float(), nullable=True),
            sa.Column("handshake_seconds", sa.Float(), nullable=True),
            sa.Column("elapsed_seconds", sa.Float(), nullable=True),
            _text("legacy_versions"),  # schema 2
            sa.Column("connected", sa.Boolean(), nullable=True),  # schema 2
            _text("protocol"),  # schema 3
            sa.UniqueConstraint("scan_id", "endpoint_id", name="uq_observation_scan_endpoint"),
        ],
        "observation_certificate": [
            _key("observation_id", "observation.id", cascade=True),
            sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column("sha256", sa.Text(), sa.ForeignKey("certificate.sha256"), nullable=False),
        ],
        "observation_alt_certificate": [  # schema 3
            _key("observation_id", "observation.id", cascade=True),
            sa.Column("variant", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column("sha256", sa.Text(), sa.ForeignKey("certificate.sha256"), nullable=False),
        ],
        "finding": [  # schema 2
            _id(),
            sa.Column("endpoint_id", BIG, sa.ForeignKey("endpoint.id"), nullable=False),
            _text("sha256"),
            _text("kind", nullable=False),
            _text("severity", nullable=False),
            _text("message", nullable=False),
            _time("first_seen"),
            _time("last_seen"),
            _time("resolved_at", nullable=True),
            sa.Column("first_scan_id", BIG, sa.ForeignKey("scan_run.id"), nullable=False),
            sa.Column("last_scan_id", BIG, sa.ForeignKey("scan_run.id"), nullable=False),
        ],
        "hook_run": [  # schema 4
            _id(),
            _text("hook", nullable=False),
            _text("sha256", nullable=False),
            _text("address", nullable=False),
            _int("port"),
            _text("sni", nullable=False),
            _text("kind", nullable=False),
            _text("status", nullable=False),
            _time("started_at", nullable=True),
            _time("finished_at", nullable=True),
            _int("exit_status", nullable=True),
            _text("output_tail"),
            _text("new_sha256"),
            _int("attempts"),
            _time("next_attempt_at", nullable=True),
            _text("decided_by"),
            _time("decided_at", nullable=True),
            _time("created_at"),
        ],
    }


#: (name, table, columns, unique) of every index of schema 4.
_INDEXES: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("ix_scan_run_spec_hash", "scan_run", ("spec_hash",), False),
    ("ix_certificate_not_after", "certificate", ("not_after",), False),
    ("ix_certificate_spki_sha256", "certificate", ("spki_sha256",), False),
    ("ix_observation_endpoint_time", "observation", ("endpoint_id", "observed_at", "id"), False),
    ("ix_observation_scan_target", "observation", ("scan_id", "target_index"), False),
    ("ix_observation_certificate_sha256", "observation_certificate", ("sha256",), False),
    ("ix_observation_alt_certificate_sha256", "observation_alt_certificate", ("sha256",), False),
    ("ix_finding_endpoint", "finding", ("endpoint_id",), False),
    ("ix_hook_run_identity", "hook_run", ("hook", "sha256"), False),
)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    present = set(inspector.get_table_names())
    legacy = _legacy_version(bind) if "certscan_meta" in present else None
    for name, items in _tables().items():
        if name not in present:
            op.create_table(name, *items)
            continue
        have = {column["name"] for column in inspector.get_columns(name)}
        for item in items:
            if isinstance(item, sa.Column) and item.name not in have:
                if not item.nullable:
                    raise RuntimeError(f"{name} lacks NOT NULL column {item.name}: not certscan's")
                op.add_column(name, item)
    for index, table, columns, unique in _INDEXES:
        op.create_index(index, table, list(columns), unique=unique, if_not_exists=True)
    # At most one open row per finding identity; sha256 is NULL for endpoint-wide findings.
    open_only = sa.text("resolved_at IS NULL")
    op.create_index(
        "uq_finding_open",
        "finding",
        ["endpoint_id", "kind", sa.text("coalesce(sha256, '')")],
        unique=True,
        sqlite_where=open_only,
        postgresql_where=open_only,
        if_not_exists=True,
    )
    if legacy is not None and legacy < 2:
        # Schema 2 records whether the TCP connection was accepted: every handshake was.
        op.execute(
            "UPDATE observation SET connected = true WHERE connected IS NULL"
            " AND status IN ('ok', 'client_cert_required')"
        )
    _record_schema_version(bind, legacy)


def _legacy_version(bind: sa.Connection) -> int | None:
    """``schema_version`` of a database written before Alembic (None: no row)."""
    text = bind.execute(
        sa.text("SELECT value FROM certscan_meta WHERE \"key\" = 'schema_version'")
    ).scalar_one_or_none()
    if text is None:
        return None
    if not str(text).isdigit() or int(text) > SCHEMA_VERSION:
        raise RuntimeError(f"schema_version {text!r} is not one the baseline can adopt")
    return int(text)


def _record_schema_version(bind: sa.Connection, legacy: int | None) -> None:
    values = {"value": str(SCHEMA_VERSION)}
    if legacy is None:
        bind.execute(
            sa.text("INSERT INTO certscan_meta (\"key\", value) VALUES ('schema_version', :value)"),
            values,
        )
    else:
        bind.execute(
            sa.text("UPDATE certscan_meta SET value = :value WHERE \"key\" = 'schema_version'"),
            values,
        )


def downgrade() -> None:
    for name in reversed(list(_tables())):  # children first
        op.drop_table(name)
