"""Renewal you can trust: proof of possession, renewal verification, ARI windows.

Adds the column ``observation.key_unproven`` (a chain presented without proof that the server
holds its key), the columns ``hook_run.verify_until``, ``hook_run.endpoints_total`` and
``hook_run.endpoints_deployed``, and the tables ``renewal_endpoint`` (each endpoint a renewal
must reach) and ``ari_window`` (the renewal window a CA suggests, RFC 9773).

Revision ID: 0004_renewal
Revises: 0002

Frozen history: the tables are spelled out here, never taken from ``scanner.inventory.tables``.

Additive: new tables and nullable columns only, so a certscan at revision 0002 keeps working on
the upgraded database. The upgrade skips what already exists. Downgrade drops the tables and the
columns (SQLite in place, never copying a table, as in 0002).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision = "0004_renewal"
down_revision = "0003_tls_details"
branch_labels = None
depends_on = None

#: A certscan at 0002 keeps working after this revision.
additive = True

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

#: (table, column, type) this revision adds; all nullable.
_COLUMNS: tuple[tuple[str, str, sa.types.TypeEngine[Any]], ...] = (
    ("observation", "key_unproven", sa.Boolean()),
    ("hook_run", "verify_until", TIME),
    ("hook_run", "endpoints_total", sa.Integer()),
    ("hook_run", "endpoints_deployed", sa.Integer()),
)


def _tables() -> dict[str, list[SchemaItem]]:
    return {
        "renewal_endpoint": [
            sa.Column(
                "hook_run_id",
                BIG,
                sa.ForeignKey("hook_run.id"),
                primary_key=True,
                autoincrement=False,
            ),
            sa.Column("address", sa.Text(), primary_key=True),
            sa.Column("port", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column("sni", sa.Text(), primary_key=True),
            sa.Column("status", sa.Text(), nullable=False),
            sa.Column("served_sha256", sa.Text(), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("checked_at", TIME, nullable=True),
        ],
        "ari_window": [
            sa.Column("sha256", sa.Text(), primary_key=True),
            sa.Column("directory", sa.Text(), nullable=False),
            sa.Column("cert_id", sa.Text(), nullable=False),
            sa.Column("window_start", TIME, nullable=False),
            sa.Column("window_end", TIME, nullable=False),
            sa.Column("explanation_url", sa.Text(), nullable=True),
            sa.Column("fetched_at", TIME, nullable=False),
            sa.Column("next_fetch_at", TIME, nullable=False),
        ],
    }


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = set(inspector.get_table_names())
    for table, column, kind in _COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, sa.Column(column, kind, nullable=True))
    for name, items in _tables().items():
        if name not in present:
            op.create_table(name, *items)


def downgrade() -> None:
    for name in reversed(list(_tables())):
        op.drop_table(name)
    for table in dict.fromkeys(table for table, _, _ in _COLUMNS):
        with op.batch_alter_table(table, recreate="never") as batch:
            for column in [c for t, c, _ in _COLUMNS if t == table]:
                batch.drop_column(column)
