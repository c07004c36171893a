"""Sharded and distributed scans: tables scan_shard and ingested_batch, two shard columns.

Adds the tables ``scan_shard`` and ``ingested_batch`` and the columns ``scan_run.shards`` and
``observation.shard``.

Revision ID: 0002
Revises: 0001

Frozen history: the tables are spelled out here, never taken from ``scanner.inventory.tables``.

Additive: new tables and nullable columns only, so a certscan at revision 0001 (or one older
than Alembic, at schema 4) keeps working on the upgraded database. The upgrade skips what
already exists, so it also completes a database that an earlier upgrade left half done.

Downgrade drops the two tables (and their rows) and the two columns. SQLite drops a column in
place (``ALTER TABLE .. DROP COLUMN``, SQLite 3.35+): the batch is told never to copy the table,
because copying means dropping the old table while other tables reference it, which with
foreign keys on (as certscan connects) fails, or for ``observation`` cascade-deletes every
chain in ``observation_certificate``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: A certscan at 0001 keeps working after this revision.
additive = True

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

#: (table, column) pairs this revision adds; both nullable (NULL: the scan is not sharded).
_COLUMNS = (("scan_run", "shards"), ("observation", "shard"))


def _scan_key() -> sa.Column[int]:
    return sa.Column(
        "scan_id", BIG, sa.ForeignKey("scan_run.id"), primary_key=True, autoincrement=False
    )


def _shard_key() -> sa.Column[int]:
    return sa.Column("shard", sa.Integer(), primary_key=True, autoincrement=False)


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, BIG, nullable=False)


def _text(name: str, *, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, TIME, nullable=nullable)


def _tables() -> dict[str, list[SchemaItem]]:
    return {
        "scan_shard": [
            _scan_key(),
            _shard_key(),
            _text("status", nullable=False),
            _text("zone"),
            *(_counter(name) for name in ("total", "watermark", "done", "ok", "failed")),
            sa.Column("attempts", sa.Integer(), nullable=False),
            _text("attempt"),
            _time("attempt_started_at", nullable=True),
            _text("agent"),
            _text("error"),
            _time("queued_at"),
            _time("started_at", nullable=True),
            _time("finished_at", nullable=True),
            _time("updated_at"),
        ],
        "ingested_batch": [
            _scan_key(),
            _shard_key(),
            sa.Column("attempt", sa.Text(), primary_key=True),
            sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column("items", sa.Integer(), nullable=False),
            _time("ingested_at"),
        ],
    }


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = set(inspector.get_table_names())
    for table, column in _COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, sa.Column(column, sa.Integer(), nullable=True))
    for name, items in _tables().items():
        if name not in present:
            op.create_table(name, *items)


def downgrade() -> None:
    for name in reversed(list(_tables())):
        op.drop_table(name)
    for table, column in _COLUMNS:
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.drop_column(column)
