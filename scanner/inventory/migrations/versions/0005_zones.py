"""Zone scans that cannot be poisoned and always settle: table scan_plan, four shard columns.

Adds the table ``scan_plan`` (each scan's plan digest and, for a dispatched scan, its shard task
template) and the columns ``scan_shard.rejected``, ``announced``, ``pending`` and
``dead_letters``.

Revision ID: 0005_zones
Revises: 0002

Frozen history: the table is spelled out here, never taken from ``scanner.inventory.tables``.

Additive: a new table and nullable columns only, so a certscan at revision 0002 keeps working
on the upgraded database (it never reads them). The upgrade skips what already exists.

Downgrade drops the table and the columns (in place on SQLite, as revision 0002 does).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_zones"
down_revision = "0004_renewal"
branch_labels = None
depends_on = None

#: A certscan at 0002 keeps working after this revision.
additive = True

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

#: The scan_shard columns this revision adds, all nullable.
_COLUMNS = (
    ("rejected", BIG),
    ("announced", sa.Integer()),
    ("pending", sa.Text()),
    ("dead_letters", sa.Integer()),
)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = {c["name"] for c in inspector.get_columns("scan_shard")}
    for name, kind in _COLUMNS:
        if name not in present:
            op.add_column("scan_shard", sa.Column(name, kind, nullable=True))
    if "scan_plan" not in set(inspector.get_table_names()):
        op.create_table(
            "scan_plan",
            sa.Column(
                "scan_id", BIG, sa.ForeignKey("scan_run.id"), primary_key=True, autoincrement=False
            ),
            sa.Column("digest", sa.Text(), nullable=False),
            sa.Column("task", sa.Text(), nullable=True),
            sa.Column("created_at", TIME, nullable=False),
        )


def downgrade() -> None:
    op.drop_table("scan_plan")
    with op.batch_alter_table("scan_shard", recreate="never") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
