"""Fleet intelligence: table endpoint_owner (the owner, environment and tags of each endpoint).

Adds the table ``endpoint_owner``: one row per owned endpoint, the ``[owners]`` rule that
matched it and when that assignment began.

Revision ID: 0008_fleet
Revises: 0002

Frozen history: the table is spelled out here, never taken from ``scanner.inventory.tables``.

Additive: a new table only, so a certscan at revision 0002 keeps working on the upgraded
database. The upgrade skips the table when it exists (a half-done earlier upgrade).

Downgrade drops the table and its rows; owners are recomputed from the config at the next
evaluation after upgrading again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_fleet"
down_revision = "0006_sni"
branch_labels = None
depends_on = None

#: A certscan at 0002 keeps working after this revision.
additive = True

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    if "endpoint_owner" in set(sa.inspect(op.get_bind()).get_table_names()):
        return
    op.create_table(
        "endpoint_owner",
        sa.Column(
            "endpoint_id",
            BIG,
            sa.ForeignKey("endpoint.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("endpoint_owner")
